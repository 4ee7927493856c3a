"""Checkpoints: atomic writes, weights_only loads, RNG state as plain tensors and ints."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from genlab.errors import GenlabError

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), then rename over `path`: a crash mid-write never leaves a damaged file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(state: dict, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def find_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a run folder (-> its checkpoints/last.pt)."""
    path = Path(path).expanduser()
    if path.is_dir():
        candidate = path / "checkpoints" / "last.pt"
        if not candidate.is_file():
            raise GenlabError(f"{path} has no checkpoints/last.pt: is it a genlab run folder that saved a checkpoint?")
        return candidate
    if not path.is_file():
        raise GenlabError(f"no run folder or checkpoint at {path}")
    return path


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    path = find_checkpoint(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
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
    return state


def rng_state() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
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
