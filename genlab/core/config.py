"""Checks of a composed config that turn every mistake into one line, before any heavy work starts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from genlab.core.errors import GenlabError

_MISSING = object()
THREADS_MAX = 1024  # torch.set_num_threads with tens of thousands ends in a segmentation fault


def get(cfg: DictConfig, key: str, default: Any = _MISSING) -> Any:
    """cfg[key] by dotted path, with a one-line error for a missing or unresolvable value."""
    try:
        value = OmegaConf.select(cfg, key, throw_on_missing=True, default=_MISSING)
    except MissingMandatoryValue:
        raise GenlabError(f"{key} is required: pass {key}=VALUE") from None
    except InterpolationResolutionError as err:
        raise GenlabError(f"{key} could not be resolved: {str(err).splitlines()[0]}") from None
    if value is _MISSING:
        if default is not _MISSING:
            return default
        raise GenlabError(f"{key} is missing from the config")
    return value


def check_int(cfg: DictConfig, key: str, *, minimum: int | None = None, maximum: int | None = None,
              optional: bool = False) -> int | None:
    value = get(cfg, key, None if optional else _MISSING)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise GenlabError(f"{key} must be an integer, got {value!r}: pass e.g. {key}=10")
    if minimum is not None and value < minimum:
        raise GenlabError(f"{key} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise GenlabError(f"{key} must be at most {maximum:,}, got {value:,}")
    return value


def check_float(cfg: DictConfig, key: str, *, positive: bool = False, minimum: float | None = None,
                optional: bool = False) -> float | None:
    value = get(cfg, key, None if optional else _MISSING)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GenlabError(f"{key} must be a number, got {value!r}: pass e.g. {key}=1e-3")
    if positive and value <= 0:
        raise GenlabError(f"{key} must be positive, got {value}")
    if minimum is not None and value < minimum:
        raise GenlabError(f"{key} must be at least {minimum}, got {value}")
    return float(value)


def check_choice(cfg: DictConfig, key: str, choices: tuple[str, ...]) -> str:
    value = get(cfg, key)
    if value not in choices:
        raise GenlabError(f"{key} must be one of {', '.join(choices)}; got {value!r}")
    return value


def check_bool(cfg: DictConfig, key: str) -> bool:
    value = get(cfg, key)
    if not isinstance(value, bool):
        raise GenlabError(f"{key} must be true or false, got {value!r}")
    return value


def check_betas(cfg: DictConfig, key: str) -> None:
    value = get(cfg, key, None)
    if value is None:
        return
    ok = OmegaConf.is_list(value) and len(value) == 2 and all(
        isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in value
    )
    if not ok:
        raise GenlabError(f"{key} must be two numbers in [0, 1), e.g. {key}=[0.5,0.999]; got {value!r}")


def validate(cfg: DictConfig) -> None:  # noqa: C901  (to be split: issue 24)
    """Everything that can be checked without building data or models. Raises GenlabError."""
    from genlab.core.registry import DATASETS, LOSSES, MODELS, load_all
    from genlab.train.schedules import schedule_from

    load_all()
    model = MODELS[get(cfg, "model.name")]
    dataset = DATASETS[get(cfg, "data.name")]
    kind = dataset.kind
    if kind not in model.accepts:
        raise GenlabError(f"model={get(cfg, 'model.name')} trains on {' or '.join(model.accepts)} data, and "
                          f"data={get(cfg, 'data.name')} gives {kind}: pick a matching pair (`genlab list`)")
    LOSSES[get(cfg, "loss.name")]
    from genlab.train import loggers

    loggers.validate(cfg)

    loss_keys = get(cfg, "loss")
    if "n_critic" in loss_keys:
        check_int(cfg, "loss.n_critic", minimum=1)
    if "clip" in loss_keys:
        check_float(cfg, "loss.clip", positive=True)
    if "gp_weight" in loss_keys:
        check_float(cfg, "loss.gp_weight", minimum=0.0)

    check_int(cfg, "train.epochs", minimum=1)
    check_int(cfg, "train.steps", minimum=1, optional=True)
    check_int(cfg, "train.batch_size", minimum=1)
    seed = check_int(cfg, "train.seed")
    if not -2**63 <= seed < 2**63:
        raise GenlabError(f"train.seed must fit in 64 bits (from -2**63 to 2**63 - 1), got {seed}")
    check_int(cfg, "train.log_every", minimum=1)
    check_int(cfg, "train.sample_every", minimum=1)
    check_int(cfg, "train.checkpoint_every", minimum=1)
    check_int(cfg, "train.keep_every", minimum=0)
    check_int(cfg, "train.n_samples", minimum=1)
    check_choice(cfg, "train.progress", ("auto", "bar", "log", "none"))
    check_choice(cfg, "train.on_nan", ("stop", "skip"))
    ema = check_float(cfg, "train.ema", optional=True)
    if ema is not None and not 0 < ema < 1:
        raise GenlabError(f"train.ema must be a decay in (0, 1), e.g. train.ema=0.999; got {ema}")
    if ema is not None and not getattr(model, "ema_networks", ()):
        raise GenlabError(f"train.ema: model {get(cfg, 'model.name')} names no network to average; drop train.ema")
    objective = get(cfg, "train.objective", None)
    if objective is not None and not isinstance(objective, str):
        raise GenlabError(f"train.objective must be the name of a logged scalar or an eval metric, e.g. test_nelbo "
                          f"or fd_domain; got {objective!r}")
    if get(cfg, "train.objective_direction", None) is not None:
        check_choice(cfg, "train.objective_direction", ("min", "max"))
    check_int(cfg, "train.objective_n", minimum=10, optional=True)
    init_from = get(cfg, "train.init_from", None)
    if init_from is not None and not isinstance(init_from, str):
        raise GenlabError(f"train.init_from must be a run folder or a checkpoint file; got {init_from!r}")
    if init_from is not None and get(cfg, "train.resume", None) is not None:
        raise GenlabError("train.init_from starts a new run from another's weights and train.resume continues a "
                          "run: pass one of them")
    resume = get(cfg, "train.resume", None)
    if resume is not None and not isinstance(resume, str):
        raise GenlabError(f"train.resume must be a run folder, a checkpoint file or 'auto'; got {resume!r}")

    name = check_choice(cfg, "optim.name", ("adam", "adamw", "rmsprop", "sgd"))  # the optimiser class, not the option
    check_float(cfg, "optim.eps", positive=True, optional=True)
    check_float(cfg, "optim.alpha", positive=True, optional=True)
    for prefix in ["optim", *(f"optim.{net}" for net, sub in get(cfg, "optim").items() if isinstance(sub, DictConfig))]:
        check_float(cfg, f"{prefix}.lr", positive=True, optional=True)
        check_float(cfg, f"{prefix}.weight_decay", minimum=0.0, optional=True)
        check_float(cfg, f"{prefix}.momentum", minimum=0.0, optional=True)
        check_betas(cfg, f"{prefix}.betas")
    schedule_from(cfg, model)  # one line for a bad schedule, before any folder
    if name == "sgd" and get(cfg, "optim.nesterov", False) and not get(cfg, "optim.momentum", 0):
        raise GenlabError("optim.nesterov=true needs optim.momentum > 0")

    check_choice(cfg, "device.name", ("auto", "cpu", "cuda"))
    check_choice(cfg, "device.amp", ("none", "bf16", "fp16"))
    check_bool(cfg, "device.channels_last")
    device = get(cfg, "device")  # a device option of the user's own may leave out the newer keys
    if "compile" in device:
        check_bool(cfg, "device.compile")
    if "compile_backend" in device:
        check_choice(cfg, "device.compile_backend", ("inductor", "aot_eager", "eager"))
    mode = get(cfg, "device.compile_mode", None)
    modes = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
    if mode is not None and mode not in modes:
        raise GenlabError(f"device.compile_mode must be null or one of {', '.join(modes)}; got {mode!r}")
    if mode is not None and get(cfg, "device.compile_backend", "inductor") != "inductor":
        raise GenlabError("device.compile_mode is inductor's: drop it, or use device.compile_backend=inductor")
    threads = check_int(cfg, "device.threads", minimum=1, optional=True)
    if threads is not None and threads > THREADS_MAX:
        raise GenlabError(f"device.threads={threads}: at most {THREADS_MAX} (this machine has {os.cpu_count()} CPU "
                          "cores; more threads than cores only slow a run down)")
    ids = get(cfg, "device.ids", None)
    if ids is not None and not (OmegaConf.is_list(ids) and len(ids) > 0 and all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids)):
        raise GenlabError(f"device.ids must be a list of GPU numbers such as [0] or [0,1]; got {ids!r}")
    if get(cfg, "device.name") == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise GenlabError("device=cuda but PyTorch sees no CUDA GPU: use device=cpu or device=auto")
        if ids is not None and max(ids) >= torch.cuda.device_count():
            raise GenlabError(f"device.ids={list(ids)} but only {torch.cuda.device_count()} CUDA GPU(s) are visible")
    from genlab.core import distributed

    distributed.check_batch(int(get(cfg, "train.batch_size")))
    if max(distributed.world_size(), distributed.PLANNED) > 1:  # before `--nproc` starts its ranks
        import torch

        if get(cfg, "device.name") == "cuda" or (get(cfg, "device.name") == "auto" and torch.cuda.is_available()):
            distributed.check_gpus(ids)
        if get(cfg, "loss.name", None) == "wgan_gp" and get(cfg, "model.d_norm", None) == "batch":
            raise GenlabError("loss=wgan_gp with model.d_norm=batch cannot run data-parallel: the gradient penalty "
                              "differentiates twice through BatchNorm over the global batch, which genlab's "
                              "cross-process statistics do not support; keep model.d_norm=auto (layer norm)")

    from genlab.core.tiles import settings as tile_settings

    tile_settings(cfg)  # eval.tile, eval.tile_overlap
    data = get(cfg, "data")
    if "size" in data or dataset.kind != "vectors":  # points (toy2d) have no image size
        check_int(cfg, "data.size", minimum=8)
    check_int(cfg, "data.limit", minimum=1, optional=True)
    if "num_workers" in data or dataset.kind != "vectors":
        check_int(cfg, "data.num_workers", minimum=0)
    if "download" in data or dataset.kind != "vectors":
        check_bool(cfg, "data.download")
    get(cfg, "data.root", None)  # surfaces a missing mandatory root (image_folder) as one line
    if "cache" in data:
        check_bool(cfg, "data.cache")
        cache_dir = get(cfg, "data.cache_dir", None)
        if cache_dir is not None and not isinstance(cache_dir, str):
            raise GenlabError(f"data.cache_dir must be a folder path or null; got {cache_dir!r}")
    check_normal_classes(cfg, dataset)
    if hasattr(dataset, "check_config"):
        dataset.check_config(cfg)  # the dataset's own keys (toy2d: data.shape)
    if hasattr(model, "check_config"):
        model.check_config(cfg)  # the model's own keys, and what it needs of the data (e.g. its size)


def check_normal_classes(cfg: DictConfig, dataset) -> None:
    """data.normal_classes (anomaly detection: train on these classes only; the others are the anomalies of the
    test split): distinct class numbers of a labelled dataset that leave at least one class out."""
    normal = get(cfg, "data.normal_classes", None)
    if normal is None:
        return
    name = get(cfg, "data.name")
    n_classes = int(getattr(dataset, "n_classes", 0))
    if not n_classes:
        raise GenlabError(f"data.normal_classes: data={name} has no class labels to pick normal classes from")
    if not OmegaConf.is_list(normal) or not all(
            isinstance(k, int) and not isinstance(k, bool) for k in normal):
        raise GenlabError(f"data.normal_classes must be a list of class numbers, e.g. data.normal_classes=[0]; "
                          f"got {normal!r}")
    normal = list(normal)
    if not normal:
        raise GenlabError("data.normal_classes=[] leaves no normal images to train on: list one class or more, "
                          "e.g. data.normal_classes=[0]")
    bad = [k for k in normal if not 0 <= k < n_classes]
    if bad:
        raise GenlabError(f"data.normal_classes: {name} has classes 0 to {n_classes - 1}, got {bad[0]}; no "
                          "training image would have it")
    if len(set(normal)) != len(normal):
        raise GenlabError(f"data.normal_classes lists a class twice: {normal}")
    if len(normal) == n_classes:
        raise GenlabError(f"data.normal_classes lists all {n_classes} classes of {name}, which leaves no anomalous "
                          "test images: leave some out, or drop data.normal_classes to train on everything")


def check_writable(folder: str | os.PathLike) -> None:
    """The run folder (or its nearest existing parent) must be writable before anything starts."""
    path = Path(folder).absolute()
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise GenlabError(f"cannot write the run folder {path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise GenlabError(
            f"cannot write the run folder {path}: {probe} is not writable; "
            "run from a writable folder or pass hydra.run.dir=SOME/WRITABLE/PATH"
        )
