"""Image datasets read from folders of files by a DataLoader: CelebA and any image folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image

from genlab.data.base import Data, DataSpec, LoaderBatches, check_batches
from genlab.errors import GenlabError
from genlab.registry import DATASETS

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


class ImageFiles(torch.utils.data.Dataset):
    """Files -> uint8 CHW tensors: optional centre crop, resize the short side, centre crop to a square."""

    def __init__(self, files: list[Path], labels: list[int], size: int, channels: int, crop: int | None = None):
        self.files, self.labels = files, labels
        self.size, self.channels, self.crop = size, channels, crop

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        try:
            with Image.open(self.files[i]) as img:
                img = img.convert("RGB" if self.channels == 3 else "L")
        except (OSError, ValueError) as err:
            raise GenlabError(f"cannot read image {self.files[i]} ({err}); remove or replace it") from None
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
            except Exception as err:
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
        make = lambda fs: ImageFiles(fs, [0] * len(fs), cfg.size, 3, crop=cfg.crop)  # noqa: E731
        train = LoaderBatches(make(train_files), batch_size, seed, device, cfg.num_workers)
        check_batches(train, batch_size, "celeba")
        test = LoaderBatches(make(test_files), batch_size, seed, device, 0) if test_files else None
        spec = DataSpec("celeba", 3, cfg.size, 0, n_train=len(train_files), n_test=len(test_files))
        return Data(spec, train, test)


@DATASETS.register("image_folder")
class ImageFolder:
    """Any folder of images. Subfolders with images become classes (labels in sorted order)."""

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
        if cfg.channels not in (1, 3):
            raise GenlabError(f"data.channels must be 1 or 3, got {cfg.channels}")
        files, labels, classes = cls.scan(cls.locate(cfg))
        if cfg.limit is not None:
            keep = np.linspace(0, len(files) - 1, min(cfg.limit, len(files))).round().astype(int)
            files, labels = [files[i] for i in keep], [labels[i] for i in keep]
        dataset = ImageFiles(files, labels, cfg.size, cfg.channels)
        train = LoaderBatches(dataset, batch_size, seed, device, cfg.num_workers)
        check_batches(train, batch_size, "image_folder")
        spec = DataSpec("image_folder", cfg.channels, cfg.size, len(classes), n_train=len(files),
                        class_names=classes)
        return Data(spec, train, None)
