"""The whole-config check before any heavy work: each group is checked by the code that owns it; this only
dispatches (and checks the train group, which the loop owns, and what spans groups)."""

from __future__ import annotations

from omegaconf import DictConfig

import genlab.data
import genlab.models  # noqa: F401  (fills MODELS and LOSSES)
from genlab.core import device, distributed, optim, ranks, tiles
from genlab.core.config import check_choice, check_float, check_int, get
from genlab.core.errors import GenlabError
from genlab.core.registry import DATASETS, LOSSES, MODELS
from genlab.data.base import check_data
from genlab.models import losses
from genlab.train import loggers
from genlab.train.schedules import schedule_from


def validate(cfg: DictConfig) -> None:
    """Everything that can be checked without building data or models. Raises GenlabError."""
    model = MODELS[get(cfg, "model.name")]
    dataset = DATASETS[get(cfg, "data.name")]
    if dataset.kind not in model.accepts:
        raise GenlabError(f"model={get(cfg, 'model.name')} trains on {' or '.join(model.accepts)} data, and "
                          f"data={get(cfg, 'data.name')} gives {dataset.kind}: pick a matching pair (`genlab list`)")
    _check_loss_group(cfg, model)
    loggers.validate(cfg)
    if model.adversarial:
        losses.check_keys(cfg)
    check_train(cfg, model)
    optim.check(cfg)
    schedule_from(cfg, model)  # one line for a bad schedule, before any folder
    optim.check_nesterov(cfg)
    device.check(cfg)
    check_parallel(cfg)
    tiles.settings(cfg)  # eval.tile, eval.tile_overlap
    check_data(cfg, dataset)
    model.check_config(cfg)  # the model's own keys, and what it needs of the data (e.g. its size)


def _check_loss_group(cfg: DictConfig, model) -> None:
    """An adversarial model has the loss group its YAML composes, of a loss genlab has. (Another model reads no
    loss: a loss group left in its config, e.g. by `model.name=` over the default GAN's config, is ignored.)"""
    name = get(cfg, "model.name")
    if model.adversarial and "loss" not in cfg:
        raise GenlabError(f"model={name} trains adversarially but its config has no loss: its model YAML composes "
                          "one (`/loss: NAME` in its defaults), or pass loss=NAME")
    if model.adversarial:
        LOSSES[get(cfg, "loss.name")]  # an unknown loss: one line listing the ones genlab has


def _check_counts(cfg: DictConfig) -> None:
    check_int(cfg, "train.epochs", minimum=1)
    check_int(cfg, "train.steps", minimum=1, optional=True)
    check_int(cfg, "train.batch_size", minimum=1)
    seed = check_int(cfg, "train.seed")
    if not -2**63 <= seed < 2**63:
        raise GenlabError(f"train.seed must fit in 64 bits (from -2**63 to 2**63 - 1), got {seed}")
    for key in ("log_every", "sample_every", "checkpoint_every", "n_samples"):
        check_int(cfg, f"train.{key}", minimum=1)
    check_int(cfg, "train.keep_every", minimum=0)
    check_choice(cfg, "train.progress", ("auto", "bar", "log", "none"))
    check_choice(cfg, "train.on_nan", ("stop", "skip"))


def _check_starts(cfg: DictConfig) -> None:
    init_from = get(cfg, "train.init_from", None)
    if init_from is not None and not isinstance(init_from, str):
        raise GenlabError(f"train.init_from must be a run folder or a checkpoint file; got {init_from!r}")
    if init_from is not None and get(cfg, "train.resume", None) is not None:
        raise GenlabError("train.init_from starts a new run from another's weights and train.resume continues a "
                          "run: pass one of them")
    resume = get(cfg, "train.resume", None)
    if resume is not None and not isinstance(resume, str):
        raise GenlabError(f"train.resume must be a run folder, a checkpoint file or 'auto'; got {resume!r}")


def check_train(cfg: DictConfig, model) -> None:
    """train.*: counts, EMA, the sweep objective, where the run starts from."""
    _check_counts(cfg)
    ema = check_float(cfg, "train.ema", optional=True)
    if ema is not None and not 0 < ema < 1:
        raise GenlabError(f"train.ema must be a decay in (0, 1), e.g. train.ema=0.999; got {ema}")
    if ema is not None and not model.ema_networks:
        raise GenlabError(f"train.ema: model {get(cfg, 'model.name')} names no network to average; drop train.ema")
    objective = get(cfg, "train.objective", None)
    if objective is not None and not isinstance(objective, str):
        raise GenlabError(f"train.objective must be the name of a logged scalar or an eval metric, e.g. test_nelbo "
                          f"or fd_domain; got {objective!r}")
    if get(cfg, "train.objective_direction", None) is not None:
        check_choice(cfg, "train.objective_direction", ("min", "max"))
    check_int(cfg, "train.objective_n", minimum=10, optional=True)
    _check_starts(cfg)


def check_parallel(cfg: DictConfig) -> None:
    """What a data-parallel run needs (`--nproc`, torchrun): a batch that splits, a GPU each, no double backward
    through BatchNorm."""
    distributed.check_batch(int(get(cfg, "train.batch_size")))
    if max(ranks.world_size(), distributed.PLANNED) <= 1:  # before `--nproc` starts its ranks
        return
    if device.uses_cuda(cfg):
        distributed.check_gpus(get(cfg, "device.ids", None))
    if get(cfg, "loss.name", None) == "wgan_gp" and get(cfg, "model.d_norm", None) == "batch":
        raise GenlabError("loss=wgan_gp with model.d_norm=batch cannot run data-parallel: the gradient penalty "
                          "differentiates twice through BatchNorm over the global batch, which genlab's "
                          "cross-process statistics do not support; keep model.d_norm=auto (layer norm)")
