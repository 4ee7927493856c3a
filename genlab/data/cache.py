"""data.cache=true for folder datasets: every image decoded, cropped and resized once into one memory-mapped uint8
file, so later epochs (and later runs) read pixels instead of decoding JPEGs.

The file sits in `data.cache_dir` (null: a `.genlab_cache` folder beside the images). Its name holds a digest of
what it was made from (the file list with sizes and modification times, the size, channels and crop), so a
changed folder or another size makes a new file and never reads a stale one. It is written under a temporary
name and renamed when whole, so a build that was interrupted leaves nothing half-written behind; the next run
builds it again. Batches are gathered from the map by index on the host and copied to the device, so the data
need not fit in device memory (the page cache keeps what is used in RAM).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import torch

from genlab.core import distributed, files, ranks
from genlab.core.errors import GenlabError
from genlab.core.progress import bar
from genlab.data.base import loader_batches

log = logging.getLogger("genlab")


def cache_folder(cfg, images_folder: Path) -> Path:
    folder = cfg.get("cache_dir")
    return Path(str(folder)).expanduser() if folder else Path(images_folder) / ".genlab_cache"


def digest(files: list[Path], size: int, channels: int, crop) -> str:
    h = hashlib.sha256(f"{size}|{channels}|{crop}|{len(files)}".encode())
    for f in files:
        stat = f.stat()
        h.update(f"{f.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def cached_images(dataset, folder: Path, name: str, num_workers: int) -> torch.Tensor:
    """The dataset's images (an ImageFiles) as one uint8 N x C x H x W tensor backed by a memory-mapped file,
    built now if it is not there yet."""
    n, c, size = len(dataset), dataset.channels, dataset.size
    key = digest(dataset.files, size, c, dataset.crop)
    path = folder / f"{name}-{size}px-{c}ch-{n}-{key}.u8"
    shape = (n, c, size, size)

    # a data-parallel job: the first process of each machine builds it, the others wait and then read it
    if ranks.local_rank() == 0 or not distributed.active():
        if not path.is_file() or path.stat().st_size != int(np.prod(shape)):
            _build(dataset, path, shape, num_workers)
        else:
            log.info(f"data.cache: reading {n:,} decoded images from {path}")
    distributed.barrier(hours=24)  # (a build of a million images takes longer than a collective's timeout)
    array = np.memmap(path, dtype=np.uint8, mode="r", shape=shape)
    # torch warns that the map is read-only; batches are gathered (copied) from it, never written
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


def _build(dataset, path: Path, shape: tuple[int, ...], num_workers: int) -> None:
    size = int(np.prod(shape))
    try:
        # the default .genlab_cache beside the images is checked from the images' folder: a .genlab_cache that is a
        # link (shipped inside a downloaded dataset) is not written through
        root = path.parent.parent if path.parent.name == ".genlab_cache" else path.parent
        files.declare(root, replace=True, what="the data cache folder")
        partial = files.mkstemp_in(path.parent, prefix=f".{path.name}.", suffix=".part")
    except (OSError, GenlabError) as err:
        raise GenlabError(f"data.cache: cannot write the cache in {path.parent} "
                          f"({getattr(err, 'strerror', None) or err}); pass "
                          "data.cache_dir=SOME/WRITABLE/FOLDER, or data.cache=false") from None
    try:
        # the whole file's blocks first: a memory map written on a full disk dies of SIGBUS, this says ENOSPC
        fd = os.open(partial, os.O_RDWR)
        try:
            if hasattr(os, "posix_fallocate"):  # (not on macOS)
                os.posix_fallocate(fd, 0, max(size, 1))
        finally:
            os.close(fd)
        out = np.memmap(partial, dtype=np.uint8, mode="r+", shape=shape)  # a raw file: the name says the shape
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise GenlabError(f"data.cache: cannot write the {size / 2**30:.2f} GiB cache in {path.parent} "
                          f"({err.strerror or err}); free some space, pass data.cache_dir=ANOTHER/FOLDER, or "
                          "data.cache=false") from None

    loader = torch.utils.data.DataLoader(dataset, batch_size=256, shuffle=False, num_workers=num_workers)
    log.info(f"data.cache: decoding {shape[0]:,} images once into {path} ({size / 2**30:.2f} GiB)")
    done = 0
    try:
        with bar(f"data.cache: decoding {path.parent.name}", total=shape[0], unit="images") as advance:
            for images, _ in loader_batches(loader):
                out[done : done + len(images)] = images.numpy()
                done += len(images)
                advance(len(images))
        out.flush()
        del out
        files.publish(partial, path)  # whole, or not there at all
    except BaseException as err:
        partial.unlink(missing_ok=True)
        if isinstance(err, GenlabError) or not isinstance(err, Exception):
            raise
        if isinstance(err, OSError):
            raise GenlabError(f"data.cache: writing {path} failed ({err.strerror or err}); free some space or pass "
                              "data.cache_dir=ANOTHER/FOLDER") from None
        raise
