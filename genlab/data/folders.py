"""Image datasets read from folders of files by a DataLoader: CelebA, any image folder, several joined."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image

from genlab.core.errors import GenlabError
from genlab.core.registry import DATASETS
from genlab.data.base import Data, DataSpec, LoaderBatches, TensorBatches, check_batches
from genlab.data.cache import cache_folder, cached_images

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def open_image(path, mode: str, max_pixels: int | None = None, why: str = "pixels", label=None) -> Image.Image:
    """Decode one image file, or one line saying why not: unreadable, or so large that decoding it would
    exhaust memory (a decompression bomb: a few kB on disk, gigapixels inside), or larger than `max_pixels`
    (what a command can put through a network at once), checked from the header before decoding. `path` may be
    an open file, named in messages by `label`."""
    label = path if label is None else label
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if max_pixels is not None and width * height > max_pixels:
                    side = int(max_pixels ** 0.5)
                    raise GenlabError(f"{label} is {width} x {height}: more than the {max_pixels:,} {why} genlab "
                                      f"takes ({side} x {side}); shrink or crop it first")
                return img.convert(mode)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise GenlabError(f"refused image {label}: it declares more than {Image.MAX_IMAGE_PIXELS:,} pixels, too many "
                          "to decode safely (a decompression bomb?); shrink or remove it") from None
    except GenlabError:
        raise
    except Exception as err:  # noqa: BLE001  (a decoder meeting hostile bytes: OSError, SyntaxError, zlib.error...)
        raise GenlabError(f"cannot read image {label} ({type(err).__name__}: "
                          f"{' '.join(str(err).split())[:120]}); remove or replace it") from None


class ImageFiles(torch.utils.data.Dataset):
    """Files -> uint8 CHW tensors: optional centre crop, resize the short side, centre crop to a square."""

    def __init__(self, files: list[Path], labels: list[int], size: int, channels: int, crop: int | None = None):
        self.files, self.labels = files, labels
        self.size, self.channels, self.crop = size, channels, crop

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        img = open_image(self.files[i], "RGB" if self.channels == 3 else "L")
        if self.crop:
            img = _centre_crop(img, self.crop)
        w, h = img.size
        scale = self.size / min(w, h)
        img = img.resize((max(self.size, round(w * scale)), max(self.size, round(h * scale))), Image.BICUBIC)
        img = _centre_crop(img, self.size)
        array = np.asarray(img, dtype=np.uint8)
        array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
        return torch.from_numpy(array.copy()), self.labels[i]


def _centre_crop(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    size = min(size, w, h)
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


@DATASETS.register("celeba")
class CelebA:
    """CelebA aligned-and-cropped faces in torchvision's layout, split by list_eval_partition.txt if present."""
    kind = "images"  # batches of {"image", "label"} (data.Batch)

    @staticmethod
    def folders(cfg: DictConfig) -> list[Path]:
        root = Path(cfg.root).expanduser()
        return [root / "celeba" / "img_align_celeba", root / "img_align_celeba"]

    @classmethod
    def locate(cls, cfg: DictConfig) -> Path | None:
        for folder in cls.folders(cfg):
            if folder.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir()):
                return folder
        if cfg.download:
            return None
        raise GenlabError(
            f"CelebA not found (looked for images in {cls.folders(cfg)[0]}): download img_align_celeba.zip "
            "from the CelebA site (mmlab.ie.cuhk.edu.hk/projects/CelebA.html) and unzip it there, "
            "or set data.root; data.download=true tries torchvision's Google-Drive copy, which often fails on quota"
        )

    @classmethod
    def build(cls, cfg: DictConfig, batch_size: int, seed: int, device: torch.device) -> Data:
        folder = cls.locate(cfg)
        if folder is None:
            import torchvision.datasets

            try:
                torchvision.datasets.CelebA(root=cfg.root, split="all", download=True)
            except Exception as err:  # noqa: BLE001  (a third party's error of any type becomes one line)
                raise GenlabError(
                    f"downloading CelebA failed ({str(err).splitlines()[0] if str(err) else type(err).__name__}); "
                    f"unzip img_align_celeba.zip into {cls.folders(cfg)[0].parent} by hand"
                ) from None
            folder = cls.locate(cfg)
        files = list_images(folder)
        train_files, test_files = files, []
        partition = folder.parent / "list_eval_partition.txt"
        if partition.is_file():
            split = dict(line.split() for line in partition.read_text().splitlines() if line.strip())
            train_files = [f for f in files if split.get(f.name, "0") == "0"]
            test_files = [f for f in files if split.get(f.name) == "2"]
        if cfg.limit is not None:
            train_files = train_files[: cfg.limit]
        make = lambda fs: ImageFiles(fs, [0] * len(fs), cfg.size, 3, crop=cfg.crop)
        train = batches_of(make(train_files), cfg, folder, "celeba-train", batch_size, seed, device, cfg.num_workers)
        check_batches(train, batch_size, "celeba")
        test = batches_of(make(test_files), cfg, folder, "celeba-test", batch_size, seed, device, 0) if test_files \
            else None
        spec = DataSpec("celeba", 3, cfg.size, 0, n_train=len(train_files), n_test=len(test_files))
        return Data(spec, train, test)


@DATASETS.register("image_folder")
class ImageFolder:
    """Any folder of images. Subfolders with images become classes (labels in sorted order)."""
    kind = "images"  # batches of {"image", "label"} (data.Batch)

    @staticmethod
    def scan(root: Path) -> tuple[list[Path], list[int], list[str]]:
        classes = sorted(d for d in root.iterdir() if d.is_dir() and list_images(d))
        if classes:
            files, labels = [], []
            for label, folder in enumerate(classes):
                images = list_images(folder)
                files += images
                labels += [label] * len(images)
            return files, labels, [d.name for d in classes]
        files = list_images(root)
        return files, [0] * len(files), []

    @classmethod
    def locate(cls, cfg: DictConfig) -> Path:
        root = Path(cfg.root).expanduser()
        if not root.is_dir():
            raise GenlabError(f"data.root={cfg.root} is not a folder: point data.root at a folder of images")
        if not cls.scan(root)[0]:
            raise GenlabError(
                f"no images in {root} or its subfolders ({', '.join(sorted(IMAGE_SUFFIXES))}): "
                "point data.root at a folder of images"
            )
        return root

    @classmethod
    def build(cls, cfg: DictConfig, batch_size: int, seed: int, device: torch.device) -> Data:
        files, labels, classes = cls.scan(cls.locate(cfg))
        return folder_data("image_folder", cfg, files, labels, classes, batch_size, seed, device)


@DATASETS.register("image_folders")
class ImageFolders:
    """Several folders of images joined into one labelled set: folder i is class i (e.g. anime faces = 0,
    cartoon faces = 1, as report 003 trains one CVAE on both)."""
    kind = "images"  # batches of {"image", "label"} (data.Batch)

    @staticmethod
    def roots(cfg: DictConfig) -> list[Path]:
        folders = cfg.get("folders")
        if isinstance(folders, str) or not folders or len(folders) < 2:
            raise GenlabError(
                f"data.folders must list at least two folders, one per class, got {folders!r}: "
                "pass e.g. 'data.folders=[data/anime,data/cartoon]'"
            )
        return [Path(str(f)).expanduser() for f in folders]

    @classmethod
    def locate(cls, cfg: DictConfig) -> list[Path]:
        roots = cls.roots(cfg)
        for root in roots:
            if not root.is_dir():
                raise GenlabError(f"{root} (in data.folders) is not a folder: every entry must be a folder of images")
            if not list_images(root):
                raise GenlabError(f"no images in {root} (in data.folders); accepted: {', '.join(sorted(IMAGE_SUFFIXES))}")
        return roots

    @classmethod
    def build(cls, cfg: DictConfig, batch_size: int, seed: int, device: torch.device) -> Data:
        roots = cls.locate(cfg)
        names = [str(c) for c in (cfg.get("classes") or [r.name for r in roots])]
        if len(names) != len(roots):
            raise GenlabError(f"data.classes names {len(names)} classes but data.folders lists {len(roots)} folders")
        files, labels = [], []
        for label, root in enumerate(roots):
            images = list_images(root)
            files += images
            labels += [label] * len(images)
        return folder_data("image_folders", cfg, files, labels, names, batch_size, seed, device)


def batches_of(files: ImageFiles, cfg: DictConfig, folder: Path, name: str, batch_size: int, seed: int,
               device: torch.device, num_workers: int):
    """The batch source of a folder split: DataLoader workers decoding files every epoch, or with data.cache=true
    the decoded images read from a memory-mapped file (genlab/data/cache.py), built once with a progress bar."""
    if not cfg.get("cache", False):
        return LoaderBatches(files, batch_size, seed, device, num_workers)

    images = cached_images(files, cache_folder(cfg, folder), name, max(num_workers, 0))
    return TensorBatches(images, torch.tensor(files.labels, dtype=torch.long), batch_size, seed, device,
                         resident=False)


def _beside(files: list[Path]) -> Path:
    """The folder the images share (data.cache goes beside them)."""
    parents = sorted({str(f.parent.resolve()) for f in files})
    return Path(os.path.commonpath(parents)) if parents else Path.cwd()


def holdout(n: int, fraction: float) -> np.ndarray:
    """A boolean mask of evenly spaced test items, so every class keeps its share in both splits."""
    test = np.zeros(n, dtype=bool)
    k = round(n * fraction)
    if k:
        test[np.linspace(0, n - 1, k).round().astype(int)] = True
    return test


def folder_data(name: str, cfg: DictConfig, files: list[Path], labels: list[int], classes: list[str],
                batch_size: int, seed: int, device: torch.device) -> Data:
    """Split off data.test_fraction, apply data.limit (spread over the set), and wrap both splits."""
    if cfg.channels not in (1, 3):
        raise GenlabError(f"data.channels must be 1 or 3, got {cfg.channels}")
    fraction = float(cfg.get("test_fraction", 0.0) or 0.0)
    if not 0.0 <= fraction < 1.0:
        raise GenlabError(f"data.test_fraction must be in [0, 1), got {fraction}")
    is_test = holdout(len(files), fraction)
    train_files = [f for f, t in zip(files, is_test) if not t]
    train_labels = [y for y, t in zip(labels, is_test) if not t]
    test_files = [f for f, t in zip(files, is_test) if t]
    test_labels = [y for y, t in zip(labels, is_test) if t]
    if cfg.limit is not None:
        keep = np.linspace(0, len(train_files) - 1, min(cfg.limit, len(train_files))).round().astype(int)
        train_files, train_labels = [train_files[i] for i in keep], [train_labels[i] for i in keep]
    where = _beside(files) if cfg.get("cache", False) else None
    train = batches_of(ImageFiles(train_files, train_labels, cfg.size, cfg.channels), cfg, where, f"{name}-train",
                       batch_size, seed, device, cfg.num_workers)
    check_batches(train, batch_size, name)
    test = None
    if test_files:
        test = batches_of(ImageFiles(test_files, test_labels, cfg.size, cfg.channels), cfg, where, f"{name}-test",
                          batch_size, seed, device, 0)
    spec = DataSpec(name, cfg.channels, cfg.size, len(classes), n_train=len(train_files), n_test=len(test_files),
                    class_names=list(classes))
    return Data(spec, train, test)
