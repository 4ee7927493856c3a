"""Checkpoints: atomic writes, weights_only loads, RNG state as plain tensors and ints."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from genlab.core.errors import GenlabError

# the one writer (genlab/core/files.py); kept here under its old name for the writers that import it from here
from genlab.core.files import atomic_write


def save_checkpoint(state: dict, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def find_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a run folder (-> its checkpoints/last.pt, which must be a file of the folder's own,
    not a link: a run folder is read as untrusted input)."""
    path = Path(path).expanduser()
    if path.is_dir():
        candidate = path / "checkpoints" / "last.pt"
        for link in (path / "checkpoints", candidate):
            if link.is_symlink():
                raise GenlabError(f"{link} is a link: genlab reads a run folder's checkpoint only as a file of its "
                                  f"own; pass the checkpoint file itself if you trust it")
        if not candidate.is_file():
            raise GenlabError(f"{path} has no checkpoints/last.pt: is it a genlab run folder that saved a checkpoint?")
        return candidate
    if not path.is_file():
        raise GenlabError(f"no run folder or checkpoint at {path}")
    return path


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """A checkpoint as data: read with weights_only (no Python object is built), its zip checked first (no member
    larger than the file: no zip bomb), and every field genlab reads type-checked (check_state)."""
    path = find_checkpoint(path)
    _check_archive(path)
    with open(path, "rb") as f:
        head = f.read(4)
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # torch's zip format, or its legacy pickle
        raise GenlabError(f"{path} is not a readable genlab checkpoint (not a PyTorch checkpoint file, or a truncated "
                          "one)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001  (a third party's error of any type becomes one line)
        text = str(err)
        if "Weights only load failed" in text or "weights_only" in text:
            # never repeat torch's advice to load with weights_only=False: that runs whatever code the file holds
            reason = "it holds Python objects, which genlab refuses to unpickle because they can run code"
        elif "zip" in text.lower() or "magic number" in text.lower() or isinstance(err, EOFError):
            reason = "not a PyTorch checkpoint file, or a truncated one"
        else:
            reason = text.splitlines()[0] if text else type(err).__name__
        raise GenlabError(f"{path} is not a readable genlab checkpoint ({reason})") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise GenlabError(f"{path} is not a genlab checkpoint (no model state or config inside)")
    check_state(state, path)
    return state


def _check_archive(path: Path) -> None:
    """torch's zip format stores its members uncompressed: a member that inflates beyond the file's own size is a
    crafted file (a zip bomb), refused before torch reads it."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return  # not a zip (torch's legacy format, or not a checkpoint at all): torch.load says which
    size = path.stat().st_size
    declared = sum(info.file_size for info in infos)
    if declared > size + (1 << 20) or len(infos) > 1_000_000:
        raise GenlabError(f"{path} is not a readable genlab checkpoint (its members declare {declared:,} bytes in a "
                          f"file of {size:,}: a compressed archive genlab did not write)")


# ---- what a checkpoint must hold ----------------------------------------------------------------------------
_SPEC_FIELDS = {"name": str, "channels": int, "size": int, "n_classes": int, "kind": str, "n_train": int,
                "n_test": int, "class_names": list, "shapes": dict}
_COUNT = 2**62


def _describe(value) -> str:
    text = repr(value) if isinstance(value, (str, int, float, bool, type(None))) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def check_state(state: dict, path) -> None:
    """Every field genlab reads from a checkpoint has the type genlab wrote, or one line names the field. A
    checkpoint's config says how to rebuild the model; it holds no interpolation (genlab saves resolved values)."""

    def bad(field: str, want: str, value) -> GenlabError:
        return GenlabError(f"{path}: the checkpoint's {field} must be {want}, got {_describe(value)}; it was not "
                           "written by genlab, or it is damaged")

    def count(field: str, value, minimum: int = 0) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value < _COUNT:
            raise bad(field, f"a whole number of {minimum} or more", value)

    _check_config(state["config"], bad)
    model = state["model"]
    if not isinstance(model, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in model.items()):
        raise bad("model", "a mapping of tensor names to tensors", model)
    _check_counters(state, bad, count)
    for field in ("optimizers", "scalers", "extra", "rng"):
        if field in state and not isinstance(state[field], dict):
            raise bad(field, "a mapping", state[field])
    if "genlab_version" in state and not isinstance(state["genlab_version"], str):
        raise bad("genlab_version", "a version string", state["genlab_version"])
    if "spec" in state:
        _check_spec(state["spec"], bad)
    if "ema" in state and state["ema"] is not None:
        _check_ema(state["ema"], bad, count)


def _check_config(config, bad) -> None:
    """The checkpoint's config: a plain mapping with model, data and train sections, the model and data named."""
    if not isinstance(config, dict):
        raise bad("config", "a mapping", config)
    _check_plain(config, "config", bad)
    for section in ("model", "data", "train"):
        if not isinstance(config.get(section), dict):
            raise bad(f"config.{section}", "a mapping", config.get(section))
    for key in ("model.name", "data.name"):
        section, name = key.split(".")
        if not isinstance(config[section].get(name), str):
            raise bad(f"config.{key}", "a name", config[section].get(name))
    if "loss" in config and not (isinstance(config["loss"], dict) and isinstance(config["loss"].get("name"), str)):
        raise bad("config.loss", "a mapping with a name", config["loss"])


def _check_counters(state: dict, bad, count) -> None:
    """The step counters are whole numbers, and a distributed run's world size matches its ranks' RNG states."""
    for field in ("epoch", "batch", "step", "batches_per_epoch"):
        if field in state:
            count(field, state[field])
    if "world_size" in state:
        count("world_size", state["world_size"], 1)
        ranks = state.get("rng_ranks")
        if not isinstance(ranks, list) or len(ranks) != state["world_size"] or \
                not all(isinstance(r, dict) for r in ranks):
            raise bad("rng_ranks", f"a list of {state['world_size']} RNG states", ranks)


def _check_ema(ema, bad, count) -> None:
    """The EMA weights: a mapping with a decay between 0 and 1, an update count, and tensors by network name."""
    if not isinstance(ema, dict):
        raise bad("ema", "a mapping", ema)
    decay = ema.get("decay")
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay < 1:
        raise bad("ema.decay", "a decay between 0 and 1", decay)
    count("ema.updates", ema.get("updates"))
    shadow = ema.get("shadow")
    if not isinstance(shadow, dict) or not all(
            isinstance(n, str) and isinstance(t, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                               for k, v in t.items()) for n, t in shadow.items()):
        raise bad("ema.shadow", "a mapping of network names to tensors", shadow)


def _check_plain(node, where: str, bad, depth: int = 0, seen: list | None = None) -> None:
    """A config as genlab saves it: mappings, lists, strings, numbers, booleans and nulls, with no interpolation."""
    seen = seen if seen is not None else [0]
    seen[0] += 1
    if seen[0] > 20_000 or depth > 24:
        raise bad(where, "a config of ordinary size", node)
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                raise bad(f"{where} key", "a string", key)
            _check_plain(value, f"{where}.{key}", bad, depth + 1, seen)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _check_plain(value, f"{where}[{i}]", bad, depth + 1, seen)
    elif isinstance(node, str):
        if "${" in node:
            raise bad(where, "a plain value (genlab saves configs resolved; an interpolation would be evaluated)",
                      node)
    elif not isinstance(node, (int, float, bool, type(None))):
        raise bad(where, "a plain value", node)


def _check_spec(spec, bad) -> None:
    if not isinstance(spec, dict):
        raise bad("spec", "a mapping", spec)
    _check_spec_fields(spec, bad)
    for key in ("name", "channels", "size"):
        if key not in spec:
            raise bad(f"spec.{key}", "present", None)
    limits = {"channels": 64, "size": 1 << 15, "n_classes": 1 << 20, "n_train": _COUNT, "n_test": _COUNT}
    for key, most in limits.items():
        if key in spec and not 0 <= spec[key] <= most:
            raise bad(f"spec.{key}", f"between 0 and {most:,}", spec[key])
    if not all(isinstance(n, str) for n in spec.get("class_names", [])) or len(spec.get("class_names", [])) > 1 << 20:
        raise bad("spec.class_names", "a list of names", spec.get("class_names"))
    _check_spec_shapes(spec, bad)


def _check_spec_fields(spec: dict, bad) -> None:
    """Each field of the spec is one genlab writes (_SPEC_FIELDS), of its type."""
    for key, value in spec.items():
        if key not in _SPEC_FIELDS:
            raise bad(f"spec.{key}", f"one of the fields {', '.join(_SPEC_FIELDS)} (an unknown field)", value)
        want = _SPEC_FIELDS[key]
        if (want is int and (isinstance(value, bool) or not isinstance(value, int))) or not isinstance(value, want):
            raise bad(f"spec.{key}", {int: "a whole number", str: "a string", list: "a list",
                                      dict: "a mapping"}[want], value)


def _check_spec_shapes(spec: dict, bad) -> None:
    """Each of the spec's shapes is a list of 1 to 4 sizes, under a name."""
    for name, shape in spec.get("shapes", {}).items():
        if not isinstance(name, str) or not isinstance(shape, list) or not 1 <= len(shape) <= 4 or not all(
                isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 1 << 15 for d in shape):
            raise bad(f"spec.shapes.{name}", "a list of 1 to 4 sizes", shape)


def rng_state() -> dict:
    _kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
