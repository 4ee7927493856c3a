"""Optimisers from the optim/ config group, with per-network overrides and each model's own defaults."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from omegaconf import DictConfig, OmegaConf

from genlab.core.config import check_betas, check_choice, check_float, get
from genlab.core.errors import GenlabError

# Keys of optim.<net> that override the shared values for that network.
_PER_NET = ("lr", "betas", "weight_decay", "momentum")


def optimizer_settings(optim_cfg: DictConfig, net: str, model_defaults: dict) -> dict:
    """Effective settings for one network: optim.<net>.* > optim.* > the model's paper defaults for that
    network > the model's paper defaults."""
    shared = {k: v for k, v in OmegaConf.to_container(optim_cfg, resolve=True).items() if not isinstance(v, dict)}
    per_net = optim_cfg.get(net)
    per_net = OmegaConf.to_container(per_net, resolve=True) if isinstance(per_net, DictConfig) else {}
    settings = dict(shared)
    # the model's defaults for every network, then its defaults for this one (e.g. CGAN's G learns faster)
    defaults = {k: v for k, v in model_defaults.items() if not isinstance(v, dict)}
    defaults.update(model_defaults.get(net, {}))
    for key, value in defaults.items():
        if key == "betas" and settings["name"] not in ("adam", "adamw"):
            continue
        if settings.get(key) is None:
            settings[key] = value
    for key in _PER_NET:
        if per_net.get(key) is not None:
            settings[key] = per_net[key]
    return settings


def build_optimizer(settings: dict, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    name, lr = settings["name"], float(settings["lr"])
    wd = float(settings.get("weight_decay") or 0.0)
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        betas = tuple(settings.get("betas") or (0.9, 0.999))
        return cls(params, lr=lr, betas=betas, eps=float(settings.get("eps", 1e-8)), weight_decay=wd)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=float(settings.get("alpha", 0.99)),
                                   eps=float(settings.get("eps", 1e-8)),
                                   momentum=float(settings.get("momentum") or 0.0), weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(settings.get("momentum") or 0.0),
                               nesterov=bool(settings.get("nesterov", False)), weight_decay=wd)
    raise ValueError(f"unknown optimiser {name}")


def describe(settings: dict) -> str:
    keys = [k for k in ("lr", "betas", "momentum", "weight_decay") if settings.get(k) not in (None, 0, 0.0)]
    return f"{settings['name']}(" + ", ".join(f"{k}={settings[k]}" for k in keys) + ")"


def check(cfg: DictConfig) -> None:
    """optim.*: the optimiser class and every network's settings (optim.<net>.lr, ...), one line a mistake."""
    check_choice(cfg, "optim.name", ("adam", "adamw", "rmsprop", "sgd"))  # the optimiser class, not the option
    check_float(cfg, "optim.eps", positive=True, optional=True)
    check_float(cfg, "optim.alpha", positive=True, optional=True)
    for prefix in ["optim", *(f"optim.{net}" for net, sub in get(cfg, "optim").items() if isinstance(sub, DictConfig))]:
        check_float(cfg, f"{prefix}.lr", positive=True, optional=True)
        check_float(cfg, f"{prefix}.weight_decay", minimum=0.0, optional=True)
        check_float(cfg, f"{prefix}.momentum", minimum=0.0, optional=True)
        check_betas(cfg, f"{prefix}.betas")


def check_nesterov(cfg: DictConfig) -> None:
    """SGD's Nesterov momentum needs a momentum (checked after the schedule, as it always was)."""
    if get(cfg, "optim.name") == "sgd" and get(cfg, "optim.nesterov", False) and not get(cfg, "optim.momentum", 0):
        raise GenlabError("optim.nesterov=true needs optim.momentum > 0")
