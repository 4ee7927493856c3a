"""The @hydra.main entry that `genlab train` calls. Keeping it a real Hydra app keeps -m, sweepers and launchers."""

from __future__ import annotations

import functools
import logging
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from genlab.errors import GenlabError
from genlab.paths import config_dir

log = logging.getLogger("genlab")


def report_user_errors(func):
    """A GenlabError becomes `genlab: <message>` on stderr and exit code 2, never a traceback.

    A run that fails before it saved a checkpoint or logged a step (a bad image, Ctrl-C or SIGTERM while
    loading) removes what it made (rundir.remove_failed_start), so failed starts leave no empty runs behind for
    `train.resume=auto` or a report to trip over. A run stopped by Ctrl-C or SIGTERM after saving says how to continue it.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from genlab import rundir
        from genlab.errors import interrupt_exit_code, raise_interrupted

        run_dir = Path(HydraConfig.get().runtime.output_dir)
        rundir.lock(run_dir)  # outside the try: a run refused this folder must not clean up another's files
        previous = signal.signal(signal.SIGTERM, raise_interrupted) if _main_thread() else None
        try:
            return func(*args, **kwargs)
        except GenlabError as err:  # a TrainingStopped (NaN) too: a run with a checkpoint keeps its folder
            print(f"genlab: {err}", file=sys.stderr)
            rundir.remove_failed_start(run_dir)
            sys.exit(err.exit_code)
        except KeyboardInterrupt as err:
            if (run_dir / "checkpoints" / "last.pt").is_file():
                log.info(f"Continue with: {continue_command(run_dir)}")
            elif not rundir.trained(run_dir):
                log.info(f"stopped before the first step; removed what this run had written in {run_dir}")
            rundir.remove_failed_start(run_dir)
            sys.exit(interrupt_exit_code(err))
        except BaseException:  # a bug (or CUDA out of memory): Hydra shows the traceback; nothing empty stays
            rundir.remove_failed_start(run_dir)
            raise
        finally:
            rundir.release(run_dir)
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return wrapper


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def continue_command(run_dir: Path) -> str:
    """The command that continues this run: its own overrides (a sweep job's values) and config flags, with
    train.resume pointing at it."""
    import shlex

    from genlab import compose

    hydra_cfg = HydraConfig.get()
    overrides = [o for o in hydra_cfg.overrides.task if not o.startswith(("train.resume=", "train.init_from="))]
    flags = []
    line = compose.LAUNCHED
    if line is not None:
        flags = [f for f in line.flags if f not in ("-m", "--multirun", "-r", "--run")]
    words = ["genlab", "train", *flags, *overrides, f"train.resume={run_dir}"]
    return " ".join(shlex.quote(w) for w in words)


def run_training(cfg: DictConfig, run_dir: Path) -> dict:
    """Validate, seed, build data and model, fit. Also the in-process API the tests use."""
    from genlab.checkpoint import seed_everything
    from genlab.config import validate
    from genlab.data import build_data
    from genlab.models import build_model
    from genlab.registry import DATASETS
    from genlab.trainer import Trainer, resolve_device

    validate(cfg)
    DATASETS[cfg.data.name].locate(cfg.data)
    device = resolve_device(cfg.device)
    seed_everything(cfg.train.seed)
    data = build_data(cfg.data, cfg.train.batch_size, cfg.train.seed, device)
    model = build_model(cfg, data.spec)
    return Trainer(cfg, run_dir, device).fit(model, data)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
@report_user_errors
def train(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    run_training(cfg, run_dir)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    # a sweep job: its overrides and final numbers for TensorBoard's HParams, and its objective for the sweeper
    from genlab.runwriter import RunWriter
    from genlab.tracking import read_metrics

    records = read_metrics(run_dir / "metrics.jsonl")
    final: dict[str, float] = {}
    for record in records:
        final.update({k: v for k, v in record.items() if k not in ("step", "epoch", "time", "img_per_s")})
    step = max((r.get("step", 0) for r in records), default=0)
    RunWriter(run_dir).hparams(list(hydra_cfg.overrides.task), final, step)
    return objective(cfg, final)


def objective(cfg: DictConfig, final: dict[str, float]) -> float | None:
    """The number a sweeper that optimises (Optuna, Ax) gets: the final value of train.objective, or of the
    model's own `objective` (name, direction); its direction is logged, for the sweeper's `direction`."""
    from genlab.registry import MODELS, load_all

    load_all()
    name, direction = cfg.train.get("objective"), None
    if name is None:
        name, direction = getattr(MODELS[cfg.model.name], "objective", (None, None))
    if name is None:
        log.info(f"objective: {cfg.model.name} states none (its training scalars do not rank runs; "
                 "`genlab eval` does); pass train.objective=NAME to give sweepers a number")
        return None
    value = final.get(name)
    if value is None:
        log.info(f"objective: this run logged no {name}; it logged {', '.join(sorted(final))}")
        return None
    log.info(f"objective: {name} = {value:.6g}" + (" (lower is better)" if direction == "min" else
                                                    " (higher is better)" if direction == "max" else ""))
    return float(value)
