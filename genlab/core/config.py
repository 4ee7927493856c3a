"""Checks of a composed config that turn every mistake into one line, before any heavy work starts."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from genlab.core.errors import GenlabError
from genlab.core.paths import config_groups

_MISSING = object()


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


def did_you_mean(word: str, choices) -> str:
    """' (did you mean X?)' for the nearest of `choices`, or ''."""


    choices = list(choices)
    close = []
    if "." in word:  # first the last part within its own section: train.epoch -> train.epochs
        head, _, tail = word.rpartition(".")
        tails = {c.rpartition(".")[2]: c for c in choices if c.rpartition(".")[0] == head}
        close = [tails[t] for t in difflib.get_close_matches(tail, list(tails), n=1, cutoff=0.6)]
    if not close:  # then whole paths: trian.epochs -> train.epochs
        choices = [c for c in choices if not word.startswith(f"{c}.")]  # `train` is no answer for train.foo
        close = difflib.get_close_matches(word, choices, n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def check_types(cfg: DictConfig, defaults: DictConfig, overrides: list[str]) -> None:
    """A value set on the command line must have the type of the default it replaces (ints stay ints)."""
    for override in overrides:
        key, sep, _ = override.partition("=")
        if not sep or key.startswith(("~", "+", "hydra.")) or key in config_groups():
            continue
        old = OmegaConf.select(defaults, key, default=None, throw_on_missing=False)
        new = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if old is None or new is None or OmegaConf.is_config(old):
            continue
        if isinstance(old, bool):
            ok = isinstance(new, bool)
            hint = f"{key}=true"
        elif isinstance(old, int):
            ok = isinstance(new, int) and not isinstance(new, bool)
            hint = f"{key}={old}"
        elif isinstance(old, float):
            ok = isinstance(new, (int, float)) and not isinstance(new, bool)
            hint = f"{key}={old}"
        elif isinstance(old, str):
            ok = isinstance(new, str)
            hint = f"{key}={old}"
        else:
            continue
        if not ok:
            kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[type(old)]
            raise GenlabError(f"{key} must be {kind}, got {new!r}: pass e.g. {hint}")


