"""The @hydra.main entry that `genlab train` calls. Keeping it a real Hydra app keeps -m, sweepers and launchers."""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from genlab.app import compose, objective, summary
from genlab.core import distributed, ranks
from genlab.core.checkpoint import seed_everything
from genlab.core.device import resolve as resolve_device
from genlab.core.errors import GenlabError, handled, interrupt_exit_code, raise_if_stopped, raise_interrupted
from genlab.core.paths import config_dir
from genlab.core.records import final_scalars, read_metrics
from genlab.core.registry import DATASETS
from genlab.data import build_data
from genlab.eval.places import place_settings
from genlab.models import build_model
from genlab.train import rundir
from genlab.train.loggers import selected, sweep_overrides
from genlab.train.loop import Trainer
from genlab.train.validate import validate

log = logging.getLogger("genlab")


def report_user_errors(func):
    """A GenlabError becomes `genlab: <message>` on stderr and exit code 2, never a traceback.

    A run that fails before it saved a checkpoint or logged a step (a bad image, Ctrl-C or SIGTERM while
    loading) removes what it made (rundir.remove_failed_start), so failed starts leave no empty runs behind for
    `train.resume=auto` or a report to trip over. A run stopped by Ctrl-C or SIGTERM after saving says how to continue it.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        if ranks.rank() > 0:  # a data-parallel rank > 0: rank 0 holds, writes and cleans the folder
            return _other_rank(func, *args, **kwargs)
        held = os.environ.get(ranks.HELD_ENV)  # `genlab train --nproc` holds the folder for its ranks
        if held is None or Path(held).resolve() != run_dir.resolve():
            rundir.lock(run_dir)  # outside the try: a run refused this folder must not clean up another's files
        previous = _stop_signals()
        try:
            rundir.adopt(run_dir, sweep_job=HydraConfig.get().mode == RunMode.MULTIRUN,
                         log_name=f"{HydraConfig.get().job.name}.log")
            raise_if_stopped()  # a stop that came while Hydra started, and was dropped on its way
            return func(*args, **kwargs)
        except BaseException as err:
            _failed(run_dir, err)
            raise
        finally:
            rundir.release(run_dir)
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    return wrapper


def _stop_signals() -> dict:
    """SIGTERM and SIGHUP (unless nohup ignores it) raise a stop, as Ctrl-C does; the previous handlers."""
    previous = {}
    if _main_thread():
        previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, raise_interrupted)
        if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # nohup's choice stays
            previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, raise_interrupted)
    return previous


def _failed(run_dir: Path, err: BaseException) -> None:
    """A run that raised: one line and an exit code for a mistake, a stop or a lost peer (sys.exit); what the run
    made removed where it never trained; a bug returns, and the caller re-raises it for Hydra's traceback."""
    if isinstance(err, GenlabError):  # a TrainingStopped (NaN) too: a run with a checkpoint keeps its folder
        print(f"genlab: {err}", file=sys.stderr)
        rundir.remove_failed_start(run_dir)
        sys.exit(err.exit_code)
    if isinstance(err, KeyboardInterrupt):
        handled()
        if (run_dir / "checkpoints" / "last.pt").is_file():
            log.info(f"Continue with: {continue_command(run_dir)}")
        elif not rundir.trained(run_dir):
            log.info(f"stopped before the first step; removed what this run had written in {run_dir}")
        rundir.remove_failed_start(run_dir)
        sys.exit(interrupt_exit_code(err))
    if isinstance(err, Exception) and distributed.peer_lost(err):
        # another rank died (its own message is above): one line here, not gloo's or nccl's traceback
        last = run_dir / "checkpoints" / "last.pt"
        where = f"; its last checkpoint is {last}: continue with {continue_command(run_dir)}" if last.is_file() \
            else ""
        print(f"genlab: another process of this data-parallel run stopped, so this one stopped too{where}",
              file=sys.stderr)
        rundir.remove_failed_start(run_dir)
        sys.exit(1)
    rundir.remove_failed_start(run_dir)  # a bug (or CUDA out of memory): Hydra shows the traceback


def _other_rank(func, *args, **kwargs):
    """A rank > 0 of a data-parallel job: rank 0 holds and cleans up the folder; this one says its error (marked
    with its rank) and exits with the same code."""

    try:
        return func(*args, **kwargs)
    except GenlabError as err:  # most are rank 0's too; some are this rank's own (a broken image in its share)
        print(f"genlab: [rank {ranks.rank()}] {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt as err:
        sys.exit(interrupt_exit_code(err))
    except Exception as err:
        if not distributed.peer_lost(err):
            raise
        print(f"genlab: [rank {ranks.rank()}] another process of this data-parallel run stopped, so this one "
              "stopped too", file=sys.stderr)
        sys.exit(1)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def continue_command(run_dir: Path) -> str:
    """The command that continues this run: its own overrides (a sweep job's values) and config flags, with
    train.resume pointing at it."""
    import shlex

    hydra_cfg = HydraConfig.get()
    overrides = [o for o in hydra_cfg.overrides.task if not o.startswith(("train.resume=", "train.init_from="))]
    flags = []
    line = compose.LAUNCHED
    if line is not None:
        flags = [f for f in line.flags if f not in ("-m", "--multirun", "-r", "--run")]
    if ranks.world_size() > 1 and not os.environ.get(ranks.HELD_ENV):  # a torchrun job
        return f"the same torchrun command, with {shlex.quote(f'train.resume={run_dir}')} added"
    nproc = ["--nproc", str(ranks.world_size())] if ranks.world_size() > 1 else []
    words = ["genlab", "train", *nproc, *flags, *overrides, f"train.resume={run_dir}"]
    return " ".join(shlex.quote(w) for w in words)


def run_training(cfg: DictConfig, run_dir: Path) -> dict:
    """Validate, seed, build data and model, fit. Also the in-process API the tests use."""

    distributed.init()  # a data-parallel rank joins its job (a no-op in one process)
    validate(cfg)
    DATASETS[cfg.data.name].locate(cfg.data)
    set_threads(cfg)
    device = resolve_device(cfg.device)
    seed_everything(cfg.train.seed)
    raise_if_stopped()
    data = build_data(cfg.data, cfg.train.batch_size, cfg.train.seed, device)
    raise_if_stopped()
    model = build_model(cfg, data.spec)
    raise_if_stopped()
    distributed.seed_offset(cfg.train.seed)  # after the model: every rank builds the same weights
    last = Trainer(cfg, run_dir, device).fit(model, data)
    if ranks.rank() == 0 and sweep_overrides() is None and not summary.quiet():
        log.info("next:\n" + "\n".join(f"  {line}" for line in summary.next_commands(
            run_dir, model, data.spec.kind, list(selected(cfg)), place_settings(cfg))))
    return last


def set_threads(cfg: DictConfig) -> None:
    """device.threads, or where it is null and jobs share the machine (hydra/launcher=local: joblib's n_jobs
    jobs at once), the cores divided among them, so parallel jobs do not fight over every core."""
    import torch

    threads = cfg.device.get("threads")
    if threads is None:
        jobs = _parallel_jobs()
        if jobs > 1:
            threads = max(1, (os.cpu_count() or 1) // jobs)
    if threads:
        torch.set_num_threads(int(threads))
        log.info(f"torch uses {threads} CPU thread(s)")


def _parallel_jobs() -> int:
    """How many jobs run at once on this machine: joblib's n_jobs under its launcher, else 1."""
    if not HydraConfig.initialized():
        return 1
    launcher = HydraConfig.get().launcher
    if "Joblib" not in str(launcher.get("_target_", "")):
        return 1
    n_jobs = int(launcher.get("n_jobs", -1) or -1)
    cores = os.cpu_count() or 1
    return n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)  # joblib: -1 = every core, -2 all but one


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
@report_user_errors
def train(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode == RunMode.MULTIRUN and cfg.train.resume is None and (run_dir / "checkpoints" / "last.pt").is_file():
        # `genlab train` never starts a sweep in a folder that holds runs: this is the same job run again, a job
        # the launcher requeued (submitit, after SLURM's pre-emption or time-limit warning): it goes on
        log.info(f"this sweep job's folder holds its own checkpoint (a requeued job): resuming from {run_dir}")
        with open_dict(cfg):
            cfg.train.resume = str(run_dir)
            cfg.train.init_from = None  # its weights are in that checkpoint already
    run_training(cfg, run_dir)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    # a sweep job (its hparams went to the loggers at its end): its objective, for a sweeper that optimises

    return objective.value(cfg, run_dir, final_scalars(read_metrics(run_dir / "metrics.jsonl")))
