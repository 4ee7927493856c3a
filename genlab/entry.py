"""The @hydra.main entry that `genlab train` calls. Keeping it a real Hydra app keeps -m, sweepers and launchers."""

from __future__ import annotations

import functools
import logging
import shutil
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

    A run folder that holds nothing but Hydra's record (the error came before training) is removed, so
    failed starts leave no empty runs behind for `train.resume=auto` or a report to trip over.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except GenlabError as err:
            print(f"genlab: {err}", file=sys.stderr)
            _remove_if_empty(Path(HydraConfig.get().runtime.output_dir))
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            sys.exit(130)

    return wrapper


def _remove_if_empty(run_dir: Path) -> None:
    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {".hydra", "train.log"}:
        logging.shutdown()  # close train.log before deleting it
        shutil.rmtree(run_dir, ignore_errors=True)


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
    last = run_training(cfg, run_dir)
    if hydra_cfg.mode == RunMode.MULTIRUN:  # a sweep job: its overrides and final numbers for TensorBoard's HParams
        from genlab.tracking import log_hparams, read_metrics

        final: dict[str, float] = {}
        for record in read_metrics(run_dir / "metrics.jsonl"):
            final.update({k: v for k, v in record.items() if k not in ("step", "epoch", "time", "img_per_s")})
        step = max((r.get("step", 0) for r in read_metrics(run_dir / "metrics.jsonl")), default=0)
        log_hparams(run_dir, list(hydra_cfg.overrides.task), final, step)
    # A number for sweepers that optimise (e.g. Optuna): the last logged value of the model's first loss.
    losses = [v for k, v in last.items() if "loss" in k]
    return losses[0] if losses else None
