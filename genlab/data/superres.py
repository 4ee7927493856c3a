"""Super-resolution data: folders of HR images (DIV2K's layout), the benchmark sets published numbers are
measured on (Set5, Set14, BSD100), and an offline demo made of the photos scikit-image and scikit-learn ship.

Only HR images are read; the LR side is made on the fly, by MATLAB's bicubic (data.resize=matlab, see
data/bicubic.py) down-scaling by data.scale. Training batches are random data.size x data.size HR crops; the
held-out split and the benchmark sets are scored on whole images (`genlab eval`). Greyscale and RGBA files are
made RGB (alpha composited over white); data.channels=1 trains on greyscale instead.

Layouts:
    sr_folder   <data.root>/<data.train>/*.png (and <data.test>/ held out): any folder of HR images
    div2k       <data.root>/DIV2K_train_HR/0001.png ... 0800.png, DIV2K_valid_HR/0801.png ... 0900.png
    benchmarks  <data.benchmark_root>/Set5/HR/*.png (EDSR's benchmark.tar), Set5/*.png, or
                Set5/image_SRF_4/*_HR.png (Huang et al.'s SelfExSR release); the same for Set14 and BSD100 (B100)
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from genlab.core.errors import GenlabError
from genlab.core.registry import DATASETS
from genlab.data.base import Data, DataSpec, check_batches, spread
from genlab.data.folders import IMAGE_SUFFIXES, list_images, open_image
from genlab.data.kinds import SuperResolutionBatches

DIV2K_HOW = ("get DIV2K_train_HR.zip and DIV2K_valid_HR.zip from https://data.vision.ee.ethz.ch/cvl/DIV2K/ and unzip "
             "them into data.root (DIV2K_train_HR/0001.png ..., DIV2K_valid_HR/0801.png ...)")
BENCHMARK_HOW = ("get benchmark.tar from https://cv.snu.ac.kr/research/EDSR/benchmark.tar (Set5, Set14, B100, "
                 "Urban100 with HR/ folders) and point data.benchmark_root (or GENLAB_SR_BENCHMARKS) at its "
                 "benchmark/ folder")
BENCHMARKS = {  # name -> the folder names it is published under
    "set5": ("Set5",),
    "set14": ("Set14",),
    "bsd100": ("BSD100", "B100", "bsd100"),
    "urban100": ("Urban100",),
}


def read_hr(path: Path, channels: int, max_pixels: int | None = None, why: str = "pixels") -> torch.Tensor:
    """One HR file -> uint8 CHW with `channels` (3: greyscale replicated; alpha composited over white)."""
    image = open_image(path, "RGBA" if channels == 3 else "LA", max_pixels=max_pixels, why=why)
    white = Image.new(image.mode, image.size, (255,) * len(image.mode))
    image = Image.alpha_composite(white, image) if image.mode == "RGBA" else \
        Image.composite(image, white, image.getchannel("A"))
    array = np.asarray(image.convert("RGB" if channels == 3 else "L"), dtype=np.uint8)
    return torch.from_numpy((array[None] if array.ndim == 2 else array.transpose(2, 0, 1)).copy())


def _folder(cfg: DictConfig, key: str) -> Path:
    folder = Path(str(cfg[key])).expanduser()
    return folder if folder.is_absolute() else Path(str(cfg.root)).expanduser() / folder


def _files(folder: Path, what: str, how: str) -> list[Path]:
    if not folder.is_dir():
        raise GenlabError(f"no folder {folder} ({what}): {how}")
    files = list_images(folder)
    if not files:
        raise GenlabError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}): {how}")
    return files


def _limit(files: list, limit) -> list:
    return files if limit is None else [files[i] for i in spread(len(files), int(limit)).tolist()]


def _whole(value, minimum: int = 1) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= minimum


def check_settings(cfg: DictConfig) -> None:
    """The data.* keys of the superres datasets, one line for a bad one."""
    if not _whole(cfg.scale, 2):
        raise GenlabError(f"data.scale must be a whole number of 2 or more (4 for the papers), got {cfg.scale!r}")
    if _whole(cfg.size) and cfg.size % cfg.scale:
        raise GenlabError(f"data.size={cfg.size} (the HR crop) is not a multiple of data.scale={cfg.scale}: pass "
                          f"e.g. data.size={cfg.size - cfg.size % cfg.scale or cfg.scale}")
    if cfg.resize not in ("matlab", "torch"):
        raise GenlabError(f"data.resize must be matlab or torch, got {cfg.resize!r}")
    if cfg.channels not in (1, 3):
        raise GenlabError(f"data.channels must be 3 (RGB) or 1 (greyscale), got {cfg.channels!r}")
    for key in ("repeat", "test_limit"):
        value = cfg.get(key)
        if value is not None and not _whole(value):
            raise GenlabError(f"data.{key} must be a whole number of 1 or more" +
                              (" (null = all)" if key == "test_limit" else "") + f", got {value!r}")


def sr_data(cfg: DictConfig, train: list[torch.Tensor], train_names: list[str], test: list[torch.Tensor],
            test_names: list[str], batch_size: int, seed: int, device: torch.device) -> Data:
    """Training crops and whole held-out images as the superres kind's batch sources."""
    scale, size = int(cfg.scale), int(cfg.size)
    source = SuperResolutionBatches(train, batch_size, seed, device, scale, size, flip=bool(cfg.flip),
                                    names=train_names, resize=str(cfg.resize), repeat=int(cfg.get("repeat") or 1))
    check_batches(source, batch_size, cfg.name)
    held = None
    if test:
        # the held-out crops (visuals, per-epoch scores) are at most the smallest held-out image
        smallest = min(min(im.shape[-2:]) for im in test)
        crop = min(size, smallest - smallest % scale)
        if crop < scale:
            raise GenlabError(f"a held-out image is {smallest} pixels on a side, less than data.scale={scale}: "
                              "remove it")
        held = SuperResolutionBatches(test, batch_size, seed, device, scale, crop, names=test_names,
                                      resize=str(cfg.resize))
    spec = DataSpec(str(cfg.name), int(train[0].shape[0]), size, kind="superres", n_train=len(train),
                    n_test=len(test))
    return Data(spec, source, held)


class SRFolder:
    """HR images in a folder (and a held-out folder): DIV2K, Flickr2K, or your own photos."""

    kind = "superres"
    how_to_get = "point data.root and data.train (and data.test) at folders of HR images"

    @classmethod
    def locate(cls, cfg: DictConfig) -> None:
        check_settings(cfg)
        if OmegaConf.is_missing(cfg, "train"):
            raise GenlabError(f"data={cfg.name} needs data.train=FOLDER, a folder of HR images (under data.root or "
                              "absolute)")
        _files(_folder(cfg, "train"), "the HR training images", cls.how_to_get)
        if cfg.get("test") is not None:
            _files(_folder(cfg, "test"), "the held-out HR images", cls.how_to_get)

    @classmethod
    def build(cls, cfg: DictConfig, batch_size: int, seed: int, device: torch.device) -> Data:
        cls.locate(cfg)
        channels = int(cfg.channels)
        train_files = _limit(_files(_folder(cfg, "train"), "the HR training images", cls.how_to_get), cfg.limit)
        test_files = [] if cfg.get("test") is None else \
            _limit(_files(_folder(cfg, "test"), "the held-out HR images", cls.how_to_get), cfg.get("test_limit"))
        train = [read_hr(p, channels) for p in train_files]
        test = [read_hr(p, channels) for p in test_files]
        return sr_data(cfg, train, [p.name for p in train_files], test, [p.name for p in test_files],
                       batch_size, seed, device)


    @classmethod
    def held_out(cls, cfg: DictConfig, device: torch.device) -> SuperResolutionBatches | None:
        """The held-out images alone (for `genlab eval`, which need not read the training set)."""
        if cfg.get("test") is None:
            return None
        files = _limit(_files(_folder(cfg, "test"), "the held-out HR images", cls.how_to_get), cfg.get("test_limit"))
        return whole_images(cfg, [read_hr(p, int(cfg.channels)) for p in files], [p.name for p in files], device)


class DIV2K(SRFolder):
    how_to_get = DIV2K_HOW


DATASETS.register("sr_folder")(SRFolder)
DATASETS.register("div2k")(DIV2K)


# ---- the offline demo -----------------------------------------------------------------------------------------

DEMO_TRAIN = [("skimage", "astronaut.png"), ("skimage", "rocket.jpg"), ("skimage", "motorcycle_left.png"),
              ("sklearn", "china.jpg"), ("skimage", "ihc.png"), ("skimage", "hubble_deep_field.jpg"),
              ("skimage", "retina.jpg")]
DEMO_HELD_OUT = [("skimage", "chelsea.png"), ("skimage", "coffee.png"), ("sklearn", "flower.jpg")]


def _package_images(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip = {"skimage": "scikit-image", "sklearn": "scikit-learn"}[package]
        raise GenlabError(f"data=sr_photos reads the photos {pip} ships, and {pip} is not installed: "
                          f"pip install {pip}")
    base = Path(next(iter(spec.submodule_search_locations)))
    return base / "data" if package == "skimage" else base / "datasets" / "images"


class SRPhotos:
    """Offline demo: the 7 colour photos to train on (astronaut, rocket, motorcycle, a Chinese temple, an IHC
    slide, the Hubble deep field, a retina) and 3 held out (a cat, a cup of coffee, a flower), from
    scikit-image's and scikit-learn's data folders."""

    kind = "superres"

    @staticmethod
    def files(which) -> list[Path]:
        paths = [_package_images(package) / name for package, name in which]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise GenlabError(f"{missing[0]} is missing from its package: reinstall scikit-image and scikit-learn")
        return paths

    @classmethod
    def locate(cls, cfg: DictConfig) -> None:
        check_settings(cfg)
        cls.files(DEMO_TRAIN + DEMO_HELD_OUT)

    @classmethod
    def build(cls, cfg: DictConfig, batch_size: int, seed: int, device: torch.device) -> Data:
        cls.locate(cfg)
        train_files = _limit(cls.files(DEMO_TRAIN), cfg.limit)
        test_files = _limit(cls.files(DEMO_HELD_OUT), cfg.get("test_limit"))
        channels = int(cfg.channels)
        return sr_data(cfg, [read_hr(p, channels) for p in train_files], [p.name for p in train_files],
                       [read_hr(p, channels) for p in test_files], [p.name for p in test_files],
                       batch_size, seed, device)


    @classmethod
    def held_out(cls, cfg: DictConfig, device: torch.device) -> SuperResolutionBatches:
        files = _limit(cls.files(DEMO_HELD_OUT), cfg.get("test_limit"))
        return whole_images(cfg, [read_hr(p, int(cfg.channels)) for p in files], [p.name for p in files], device)


DATASETS.register("sr_photos")(SRPhotos)


# ---- benchmark sets (evaluation only) ---------------------------------------------------------------------------

class MissingBenchmark(GenlabError):
    """A benchmark set that is not on disk (its name, where genlab looked, how to get it)."""


def benchmark_root(cfg: DictConfig) -> Path:
    import os

    override = os.environ.get("GENLAB_SR_BENCHMARKS")
    root = override or cfg.get("benchmark_root") or cfg.get("root") or "data"
    return Path(str(root)).expanduser()


def benchmark_files(root: Path, name: str, scale: int) -> list[Path]:
    """The HR files of benchmark `name` under `root`, in any of the layouts it is published in; one line
    saying where it looked and how to get it when it is not there."""
    if name not in BENCHMARKS:
        raise GenlabError(f"unknown benchmark {name!r}: data.benchmarks takes {', '.join(BENCHMARKS)}")
    for folder_name in BENCHMARKS[name]:
        folder = root / folder_name
        if not folder.is_dir():
            continue
        for candidate in (folder / "HR", folder / "GTmod12", folder / "original", folder):
            if candidate.is_dir() and list_images(candidate):
                return list_images(candidate)
        srf = folder / f"image_SRF_{scale}"
        if srf.is_dir():
            hr = [p for p in list_images(srf) if p.stem.endswith("_HR")]
            if hr:
                return hr
    raise MissingBenchmark(f"{name}: no {' or '.join(BENCHMARKS[name])} folder of HR images under {root}; "
                           f"{BENCHMARK_HOW}")


def whole_images(cfg: DictConfig, images: list[torch.Tensor], names: list[str],
                 device: torch.device) -> SuperResolutionBatches:
    """Images of any sizes as a superres source whose `whole()` gives each one (what `genlab eval` scores)."""
    scale = int(cfg.scale)
    smallest = min(min(im.shape[-2:]) for im in images)
    if smallest < scale:
        raise GenlabError(f"an evaluation image is {smallest} pixels on a side, less than data.scale={scale}: "
                          "remove it")
    return SuperResolutionBatches(images, 1, 0, device, scale, smallest - smallest % scale, names=names,
                                  resize=str(cfg.resize))


def benchmark_source(cfg: DictConfig, name: str, device: torch.device) -> SuperResolutionBatches:
    """A benchmark set's whole images as a superres source."""
    files = benchmark_files(benchmark_root(cfg), name, int(cfg.scale))
    return whole_images(cfg, [read_hr(p, int(cfg.channels)) for p in files], [p.name for p in files], device)
