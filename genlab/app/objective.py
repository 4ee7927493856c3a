"""The number a sweep job returns to a sweeper that optimises (hydra/sweeper=optuna), and its direction.

train.objective names it:
- null: the model's own (`objective = (name, "min"|"max")` on its class: VAE test_nelbo, flows test_nll,
  SRResNet test_psnr_y); a GAN states none, since its training losses do not rank runs;
- a scalar the run logs (its final value in metrics.jsonl), e.g. test_bits_per_dim;
- a `genlab eval` metric whose number has its name (fd_domain, ms_ssim, fid, kid, is): scored at the end of the
  job on train.objective_n generated images, and merged into the job's metrics.json with its protocol.
train.objective_direction (min | max) overrides the direction; otherwise it is the model's or the metric's
(`better=`), and min for a scalar neither states.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from genlab.core.device import resolve as resolve_device
from genlab.core.errors import GenlabError
from genlab.core.metrics import MetricUnavailable, ordered
from genlab.core.registry import DATASETS, METRICS, MODELS
from genlab.eval.inception import inception_weights
from genlab.eval.places import place_settings
from genlab.eval.store import evaluate_run, merge_metrics, run_header
from genlab.train.runs import load_run

log = logging.getLogger("genlab")


def spec(cfg: DictConfig) -> tuple[str | None, str]:
    """(name, "min" | "max") of the run's objective; name None where neither train.objective nor the model
    names one."""
    name, direction, _ = spec_known(cfg)
    return name, direction


def spec_known(cfg: DictConfig) -> tuple[str | None, str, bool]:
    """spec, and whether the direction is known (stated by train.objective_direction, the model or the metric)
    rather than min for want of anything better."""

    name = cfg.train.get("objective")
    own, own_direction = getattr(MODELS[cfg.model.name], "objective", (None, None))
    direction = cfg.train.get("objective_direction")
    if name is None:
        name = own
    if direction is None:
        if name is not None and name == own:
            direction = own_direction
        elif name in METRICS and getattr(METRICS[name], "better", None):
            direction = METRICS[name].better
        else:  # a scalar another model states (SRGAN logs SRResNet's test_psnr_y): that model's direction
            stated = {getattr(MODELS[m], "objective", (None, None)) for m in MODELS.names()}
            directions = {d for n, d in stated if n == name and d}
            direction = directions.pop() if len(directions) == 1 else None
    if direction not in (None, "min", "max"):
        raise GenlabError(f"train.objective_direction must be min or max, got {direction!r}")
    return name, direction or "min", direction is not None


def check(cfg: DictConfig) -> None:
    """Before a sweep that optimises: the objective a metric names must be scorable for every trial (its
    number has its name, it applies to this data, its weights are here), so no trial trains in vain."""

    name, _ = spec(cfg)
    if name is None or name not in METRICS:
        return
    metric = METRICS[name]
    if getattr(metric, "better", None) is None:
        usable = ", ".join(m for m in ordered() if getattr(METRICS[m], "better", None))
        raise GenlabError(f"train.objective={name}: that metric's numbers have other names, so none ranks the "
                          f"trials; name a metric whose number has its name ({usable}) or a logged scalar")
    kind = DATASETS[cfg.data.name].kind
    if metric.kinds is not None and kind not in metric.kinds:
        raise GenlabError(f"train.objective={name} scores {' or '.join(metric.kinds)} data and data={cfg.data.name} "
                          f"gives {kind}: pick another objective")
    if name in ("fid", "kid", "is"):
        try:
            inception_weights()
            import torch_fidelity  # noqa: F401
        except MetricUnavailable as why:
            raise GenlabError(f"train.objective={name}: {why}") from None
        except ImportError:
            raise GenlabError(f"train.objective={name} needs torch-fidelity: pip install 'genlab[fid]'") from None


def optuna_direction(direction: str) -> str:
    return {"min": "minimize", "max": "maximize"}[direction]


def value(cfg: DictConfig, run_dir: Path, final: dict[str, float]) -> float | None:
    """The objective's value for this finished job, logged with its direction. None where the run has none
    and the sweeper does not optimise; for one that does (Optuna), a missing number is a GenlabError."""

    name, direction = spec(cfg)
    optimising = _optimising()
    if name is None:
        if not optimising:  # Hydra's basic sweeper only runs the jobs: no number is missed
            return None
        log.info(f"objective: {cfg.model.name} states none (its training scalars do not rank runs; "
                 "`genlab eval` does); pass train.objective=NAME (a logged scalar, or an eval metric such as "
                 "fd_domain) to give sweepers a number")
        return None
    number = final.get(name)
    if number is None and name in METRICS:
        number = _score(cfg, run_dir, name)
    if number is None:
        why = f"this run logged no {name}; it logged {', '.join(sorted(final)) or 'nothing'}"
        if optimising:  # the sweeper would count a failed trial and then end in a traceback: one line instead
            raise GenlabError(f"train.objective={name}: {why}; pass train.objective=ONE_OF_THOSE (the trial's run "
                              f"is kept in {run_dir})")
        log.info(f"objective: {why}")
        return None
    better = "lower" if direction == "min" else "higher"
    log.info(f"objective: {name} = {number:.6g} ({better} is better)")
    return float(number)


def _optimising() -> bool:
    """Whether this job's sweeper uses the returned number (Optuna, Nevergrad, Ax), not Hydra's basic one."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():  # not a Hydra job: no sweeper waits for the number
            return False
        target = str(HydraConfig.get().sweeper.get("_target_", ""))
    except Exception:  # noqa: BLE001
        return False
    return "BasicSweeper" not in target


def _score(cfg: DictConfig, run_dir: Path, name: str) -> float | None:
    """train.objective=<metric>: `genlab eval RUN --metrics <metric> -n train.objective_n` on the finished job."""
    import torch

    n = int(cfg.train.get("objective_n") or 1000)
    device = resolve_device(cfg.device)
    target = load_run(run_dir, str(device))
    log.info(f"objective: scoring {name} on {n} generated images")
    # the job's own data places (its config is the command line's): eval reads none from the checkpoint
    result = evaluate_run(target, [name], n, 0, torch.device(device), log=log.info, data=place_settings(cfg))
    result.pop("figures", None)
    merge_metrics(run_dir / "metrics.json", run_header(target), result)
    entry = result["metrics"].get(name)
    return None if entry is None else entry["value"]
