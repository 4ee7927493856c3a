"""The `device` group: its check, and the one place that turns it into a torch.device (with the CUDA checks)."""

from __future__ import annotations

import os

import torch
from omegaconf import DictConfig, OmegaConf

from genlab.core import ranks
from genlab.core.config import check_bool, check_choice, check_int, get
from genlab.core.errors import GenlabError

THREADS_MAX = 1024  # torch.set_num_threads with tens of thousands ends in a segmentation fault
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _check_gpus(ids, flag: str = "device=cuda", instead: str = "device=cpu or device=auto") -> None:
    """The one CUDA check: a GPU is there, and every id in device.ids names a visible one."""
    if not torch.cuda.is_available():
        raise GenlabError(f"{flag} but PyTorch sees no CUDA GPU: use {instead}")
    if ids and max(ids) >= torch.cuda.device_count():
        raise GenlabError(f"device.ids={list(ids)} but only {torch.cuda.device_count()} CUDA GPU(s) are visible")


def _check_compile(cfg: DictConfig) -> None:
    device = get(cfg, "device")  # a device option of the user's own may leave out the newer keys
    if "compile" in device:
        check_bool(cfg, "device.compile")
    if "compile_backend" in device:
        check_choice(cfg, "device.compile_backend", ("inductor", "aot_eager", "eager"))
    mode = get(cfg, "device.compile_mode", None)
    if mode is not None and mode not in COMPILE_MODES:
        raise GenlabError(f"device.compile_mode must be null or one of {', '.join(COMPILE_MODES)}; got {mode!r}")
    if mode is not None and get(cfg, "device.compile_backend", "inductor") != "inductor":
        raise GenlabError("device.compile_mode is inductor's: drop it, or use device.compile_backend=inductor")


def check(cfg: DictConfig) -> None:
    """device.*: one line for each mistake, the CUDA ones included, before anything is built."""
    check_choice(cfg, "device.name", ("auto", "cpu", "cuda"))
    check_choice(cfg, "device.amp", ("none", "bf16", "fp16"))
    check_bool(cfg, "device.channels_last")
    _check_compile(cfg)
    threads = check_int(cfg, "device.threads", minimum=1, optional=True)
    if threads is not None and threads > THREADS_MAX:
        raise GenlabError(f"device.threads={threads}: at most {THREADS_MAX} (this machine has {os.cpu_count()} CPU "
                          "cores; more threads than cores only slow a run down)")
    ids = get(cfg, "device.ids", None)
    if ids is not None and not (OmegaConf.is_list(ids) and len(ids) > 0 and all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids)):
        raise GenlabError(f"device.ids must be a list of GPU numbers such as [0] or [0,1]; got {ids!r}")
    if get(cfg, "device.name") == "cuda":
        _check_gpus(ids)


def uses_cuda(cfg: DictConfig) -> bool:
    return get(cfg, "device.name") == "cuda" or (get(cfg, "device.name") == "auto" and torch.cuda.is_available())


def resolve(device_cfg: DictConfig) -> torch.device:
    """The torch.device a run (or a command) uses: the CPU, or its CUDA GPU (a data-parallel rank's own)."""
    if device_cfg.name == "cpu" or (device_cfg.name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if ranks.world_size() > 1:  # one process per GPU (validate checked there are enough)
        _check_gpus(None)
        return torch.device("cuda", ranks.local_rank())
    index = int(device_cfg.ids[0]) if device_cfg.ids else 0
    _check_gpus([index])  # one process uses the first id
    return torch.device("cuda", index)


def for_command(name: str) -> str:
    """A command's --device cpu|cuda|auto -> "cpu" or "cuda", or one line saying why not."""
    if name not in ("cpu", "cuda", "auto"):
        raise GenlabError(f"--device must be cpu, cuda or auto, got {name!r}")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        _check_gpus(None, flag="--device cuda", instead="--device cpu")
    return name
