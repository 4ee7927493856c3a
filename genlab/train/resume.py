"""Where a run starts: fresh, resumed from a checkpoint (train.resume), or from another run's weights
(train.init_from); and what a checkpoint holds. The trainer asks; RunWriter writes.

A checkpoint is a dict of tensors and plain types, loaded with weights_only=True: the resolved config, the
DataSpec, model state, optimiser and GradScaler states, the model's extra state, the EMA, the RNG states and
the position (epoch in progress, batches done within it, step).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

import genlab
from genlab.core import ranks
from genlab.core.checkpoint import find_checkpoint, load_checkpoint, rng_state, seed_everything, set_rng_state
from genlab.core.errors import GenlabError
from genlab.train.rundir import is_plain_folder

log = logging.getLogger("genlab")


@dataclass
class Position:
    """Where the loop is: the epoch in progress, batches of it done, optimisation steps done."""

    epoch: int = 0
    batch: int = 0
    step: int = 0

    def advance(self) -> None:
        self.step += 1
        self.batch += 1


def resolve_resume(resume: str | None, run_dir: Path) -> Path | None:
    """train.resume -> a checkpoint path. `auto` = newest sibling run folder with a last.pt, if any."""
    if resume is None:
        return None
    if resume == "auto":
        candidates = [  # sibling run folders of their own (a link to a folder elsewhere is no sibling)
            p / "checkpoints" / "last.pt"
            for p in run_dir.parent.iterdir()
            if is_plain_folder(p) and p.resolve() != run_dir.resolve() and (p / "checkpoints" / "last.pt").is_file()
            and not (p / "checkpoints" / "last.pt").is_symlink()
        ]
        if not candidates:
            log.info("train.resume=auto: no earlier run of this model and data; starting fresh")
            return None
        return max(candidates, key=lambda p: p.stat().st_mtime)
    return find_checkpoint(resume)


def checkpoint_state(cfg: DictConfig, spec, model, engine, ema, batches_per_epoch: int, position: Position) -> dict:
    """Everything a later run needs to continue exactly, and `genlab sample` needs to draw."""
    return {
        "genlab_version": genlab.__version__,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "spec": dataclasses.asdict(spec),  # what the model was built for: a run loads without its data
        "model": model.state_dict(),
        "optimizers": {n: o.state_dict() for n, o in model.optimizers.items()},
        "scalers": {n: s.state_dict() for n, s in engine.scalers.items()},
        "extra": model.extra_state(),
        "rng": rng_state(),
        "batches_per_epoch": batches_per_epoch,
        "epoch": position.epoch,  # the epoch in progress (== epochs done when batch == 0)
        "batch": position.batch,  # batches of that epoch already trained on
        "step": position.step,
        **({"ema": ema.state_dict()} if ema is not None else {}),
    }


def _check_same_choices(path: Path, old: dict, new: dict) -> None:
    """A resume continues the same model, data, optimiser and (an adversarial model's) loss."""
    for key in ("model", "data", "optim", "loss"):
        if key == "loss" and key not in new:  # a model that trains no adversarial loss (an older run saved one)
            continue
        if old.get(key, {}).get("name") != new[key]["name"]:
            raise GenlabError(f"cannot resume {path}: it trained with {key}={old[key]['name']}, this run asks for "
                              f"{key}={new[key]['name']}")


def restore(path: Path, cfg: DictConfig, model, engine, batches_per_epoch: int) -> dict:
    """Load a checkpoint of the same model, data, optimiser and loss into the model, its optimisers (this run's
    optim.* settings win over the saved hyper-parameters; the schedule rewrites lr each step) and scalers, and
    the RNG states. Returns the checkpoint dict."""
    state = load_checkpoint(path, map_location="cpu")  # RNG states must stay CPU tensors
    _check_same_choices(path, state["config"], OmegaConf.to_container(cfg, resolve=True))
    if state.get("batches_per_epoch", batches_per_epoch) != batches_per_epoch:
        raise GenlabError(f"cannot resume {path}: it had {state['batches_per_epoch']} batches per epoch, this run "
                          f"has {batches_per_epoch}; resume with the same train.batch_size and data.limit")
    _load_weights(model, state, f"cannot resume {path}", "resume with the same model.* settings")
    for name, opt in model.optimizers.items():
        opt.load_state_dict(state["optimizers"][name])
        for group in opt.param_groups:
            for key, value in model.optimizer_settings[name].items():
                if key in group and key != "params" and value is not None:
                    group[key] = tuple(value) if key == "betas" else value
    for name, scaler in engine.scalers.items():
        if name in state.get("scalers", {}):
            scaler.load_state_dict(state["scalers"][name])
    model.load_extra_state(state.get("extra", {}))
    set_rng_state(_own_rng(state, path, cfg))
    return state


def _own_rng(state: dict, path: Path, cfg: DictConfig) -> dict:
    """This process's RNG state: a data-parallel checkpoint keeps every rank's. On another number of
    processes the ranks beyond rank 0 draw fresh noise, and the run goes on, but not exactly."""

    saved, world, rank = state.get("world_size", 1), ranks.world_size(), ranks.rank()
    if saved == world:
        return state["rng_ranks"][rank] if world > 1 else state["rng"]
    if rank == 0:
        log.info(f"{path} was saved by {saved} process(es) and this run has {world}: it goes on from the same "
                 f"weights and data position, but the ranks' noise differs from a run on {saved} (not an exact resume)")
    if rank > 0:  # fresh noise of its own (torch, CUDA, numpy, python), a function of seed, rank and step

        seed_everything((int(cfg.train.seed) * 1_000_003 + rank * 7_919 + int(state["step"]) * 104_729) % 2**62)
        return rng_state()
    return state["rng"]


def _load_weights(model, state: dict, what: str, fix: str) -> None:
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise GenlabError(f"{what}: its weights do not fit this model ({str(err).splitlines()[0]}); {fix}") from None


def position_of(state: dict) -> Position:
    return Position(state["epoch"], state["batch"], state["step"])


def init_from(source: str, cfg: DictConfig, model) -> str:
    """train.init_from: another run's weights through the model's init_weights hook (a run of the same model
    is taken whole); the optimisers, the step and the history start fresh. Returns the record for
    init_from.txt."""
    path = find_checkpoint(source)
    state = load_checkpoint(path, map_location="cpu")
    source_model, own = state["config"]["model"]["name"], cfg.model.name
    taken = model.init_weights(source_model, state["model"])
    if taken is None:
        if source_model != own:
            raise GenlabError(f"train.init_from={source}: a {own} run cannot start from a {source_model} run "
                              f"(the {own} model maps no weights from it); pass a {own} run")
        _load_weights(model, state, f"train.init_from={source}", "use the same model.* settings")
        taken = "all weights"
    log.info(f"started from {path} ({source_model}, step {state.get('step', 0)}): {taken}")
    return f"{path.resolve()}\nmodel {source_model}, step {state.get('step', 0)}\n{taken}\n"
