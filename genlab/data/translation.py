"""Image-to-image translation data: paired (pix2pix) and unpaired (CycleGAN) folders, their named presets, and
two offline demos made from Fashion-MNIST.

Layouts (the pix2pix/CycleGAN repository's, so its downloads work as they unpack):
    paired, side by side   <root>/<dataset>/train/*.jpg and val/ (or test/): each image holds A | B
    paired, two folders    <root>/<dataset>/A/train, B/train, A/val (or A/test), B/val: the same file names
    unpaired               <root>/<dataset>/trainA, trainB, testA, testB

Images are read once, resized to data.load_size x data.load_size (bicubic, aspect not kept, as pix2pix does)
and held as uint8; each batch takes a random data.size crop and a flip (data.flip), the same for A and B of a
pair. The held-out split is read at data.size itself (no crop). data.direction=BtoA swaps the two sides.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from PIL import Image

from genlab.core.errors import GenlabError
from genlab.core.registry import DATASETS
from genlab.data.base import Data, DataSpec, check_batches, resize_uint8, spread
from genlab.data.folders import IMAGE_SUFFIXES, open_image
from genlab.data.kinds import PairedBatches, UnpairedBatches
from genlab.data.tensors import FashionMNIST, read_idx


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _to_uint8(img: Image.Image, size: int) -> torch.Tensor:
    img = img.resize((size, size), Image.BICUBIC)
    array = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy((array[None] if array.ndim == 2 else array.transpose(2, 0, 1)).copy())


def _mode(cfg) -> str:
    return "RGB" if int(cfg.channels) == 3 else "L"


def _limit(files: list, limit) -> list:
    return files if limit is None else [files[i] for i in spread(len(files), int(limit)).tolist()]


def _dataset_dir(cfg: DictConfig) -> Path:
    from omegaconf import OmegaConf

    if OmegaConf.is_missing(cfg, "dataset"):
        raise GenlabError(f"data={cfg.name} needs data.dataset=NAME, the folder under data.root={cfg.root} that "
                          "holds the images (e.g. maps)")
    folder = Path(str(cfg.root)).expanduser() / str(cfg.dataset)
    if not folder.is_dir():
        raise GenlabError(f"data={cfg.name}: no folder {folder}. {HOW_TO_GET.get(str(cfg.dataset), HOW_TO_GET[''])}")
    return folder


HOW_TO_GET = {
    "maps": "Get maps.tar.gz from http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/ and unpack it into data.root "
            "(maps/train, maps/val: 1096 + 1098 aerial photo | map pairs)",
    "facades": "Get facades.tar.gz from http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/ and unpack it into "
               "data.root (facades/train, val, test)",
    "horse2zebra": "Get horse2zebra.zip from http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/ and unzip it into "
                   "data.root (horse2zebra/trainA, trainB, testA, testB)",
    "apple2orange": "Get apple2orange.zip from http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/ and unzip it "
                    "into data.root (apple2orange/trainA, trainB, testA, testB)",
    "": "Point data.root at the folder holding it and data.dataset at its name",
}


# ---- paired ---------------------------------------------------------------------------------------------------

def _paired_layout(folder: Path) -> str:
    if (folder / "A").is_dir() and (folder / "B").is_dir():
        for side in ("A", "B"):
            if not (folder / side / "train").is_dir():
                raise GenlabError(f"no folder {folder / side / 'train'}: a paired set in A/ and B/ folders holds "
                                  "A/train and B/train (and A/val, B/val) with the same file names")
        held = _held_out(folder / "A")
        if held is not None and not (folder / "B" / held.name).is_dir():
            raise GenlabError(f"{held} has no partner {folder / 'B' / held.name}: add it, or remove {held}")
        return "folders"
    if (folder / "train").is_dir():
        return "side_by_side"
    raise GenlabError(f"{folder} holds neither train/ (side-by-side A|B images) nor A/ and B/ folders: see "
                      "`genlab list data` and the README's paired layout")


def _held_out(base: Path) -> Path | None:
    for name in ("val", "test"):
        if (base / name).is_dir():
            return base / name
    return None


def _read_side_by_side(folder: Path, cfg, size: int, limit=None) -> tuple[torch.Tensor, torch.Tensor]:
    files = _limit(_images(folder), limit)
    if not files:
        raise GenlabError(f"{folder} holds no images")
    a, b = [], []
    for path in files:
        img = open_image(path, _mode(cfg))
        w, h = img.size
        if w < 2 or w % 2:
            raise GenlabError(f"{path} is {w}x{h}: a side-by-side pair needs an even width (A left, B right)")
        a.append(_to_uint8(img.crop((0, 0, w // 2, h)), size))
        b.append(_to_uint8(img.crop((w // 2, 0, w, h)), size))
    return torch.stack(a), torch.stack(b)


def _read_folders(folder_a: Path, folder_b: Path, cfg, size: int, limit=None) -> tuple[torch.Tensor, torch.Tensor]:
    names_a = {p.name: p for p in _images(folder_a)}
    names_b = {p.name: p for p in _images(folder_b)}
    if set(names_a) != set(names_b):
        only = sorted(set(names_a) ^ set(names_b))
        side = folder_a if only[0] in names_a else folder_b
        raise GenlabError(f"paired folders must hold the same file names: {only[0]} is only in {side} "
                          f"({len(only)} unmatched); remove the unmatched files")
    if not names_a:
        raise GenlabError(f"{folder_a} holds no images")
    names = _limit(sorted(names_a), limit)
    a = torch.stack([_to_uint8(open_image(names_a[n], _mode(cfg)), size) for n in names])
    b = torch.stack([_to_uint8(open_image(names_b[n], _mode(cfg)), size) for n in names])
    return a, b


def _check_sizes(cfg) -> None:
    limit = cfg.get("test_limit", 1)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise GenlabError(f"data.test_limit must be a number of held-out images, 1 or more (null = all), got {limit!r}")
    if int(cfg.load_size) < int(cfg.size):
        raise GenlabError(f"data.load_size={cfg.load_size} is smaller than the crop data.size={cfg.size}: make "
                          "load_size at least size (pix2pix: 286 and 256)")


def _direction(cfg, a, b):
    if cfg.direction not in ("AtoB", "BtoA"):
        raise GenlabError(f"data.direction must be AtoB or BtoA, got {cfg.direction!r}")
    return (a, b) if cfg.direction == "AtoB" else (b, a)


class PairedFolder:
    """Aligned pairs from a folder (side-by-side A|B images, or A/ and B/ with the same file names)."""
    kind = "paired"

    @staticmethod
    def locate(cfg: DictConfig) -> None:
        _check_sizes(cfg)
        _paired_layout(_dataset_dir(cfg))

    @staticmethod
    def build(cfg: DictConfig, batch_size: int, seed: int, device: torch.device) -> Data:
        folder = _dataset_dir(cfg)
        _check_sizes(cfg)
        size, load = int(cfg.size), int(cfg.load_size)
        if _paired_layout(folder) == "side_by_side":
            train = _read_side_by_side(folder / "train", cfg, load, cfg.limit)
            held = _held_out(folder)
            test = _read_side_by_side(held, cfg, size) if held else None
        else:
            train = _read_folders(folder / "A" / "train", folder / "B" / "train", cfg, load, cfg.limit)
            held = _held_out(folder / "A")
            test = _read_folders(held, folder / "B" / held.name, cfg, size) if held else None
        return paired_data(cfg, train, test, batch_size, seed, device)


def paired_data(cfg, train, test, batch_size, seed, device) -> Data:
    a, b = _direction(cfg, *train)
    source = PairedBatches(a, b, batch_size, seed, device, crop=int(cfg.size), flip=bool(cfg.flip))
    check_batches(source, batch_size, cfg.name)
    held = None
    if test is not None:
        held = PairedBatches(*_direction(cfg, *test), batch_size, seed, device, crop=int(cfg.size))
    spec = DataSpec(str(cfg.name), int(a.shape[1]), int(cfg.size), kind="paired", n_train=len(a),
                    n_test=held.n_images if held else 0)
    return Data(spec, source, held)


for _name in ("paired", "maps", "facades"):
    DATASETS.register(_name)(PairedFolder)


# ---- unpaired -------------------------------------------------------------------------------------------------

def _read_domain(folder: Path, cfg, size: int, limit=None) -> torch.Tensor:
    if not folder.is_dir():
        raise GenlabError(f"no folder {folder}: an unpaired dataset holds trainA, trainB, testA and testB")
    files = _limit(_images(folder), limit)
    if not files:
        raise GenlabError(f"{folder} holds no images: each domain needs some")
    return torch.stack([_to_uint8(open_image(p, _mode(cfg)), size) for p in files])


class UnpairedFolder:
    """Two domains with no correspondence: trainA/ trainB/ (and testA/ testB/ held out)."""
    kind = "unpaired"

    @staticmethod
    def locate(cfg: DictConfig) -> None:
        _check_sizes(cfg)
        folder = _dataset_dir(cfg)
        for side in ("trainA", "trainB"):
            if not (folder / side).is_dir():
                raise GenlabError(f"no folder {folder / side}: an unpaired dataset holds trainA, trainB, testA and "
                                  "testB")

    @staticmethod
    def build(cfg: DictConfig, batch_size: int, seed: int, device: torch.device) -> Data:
        folder = _dataset_dir(cfg)
        _check_sizes(cfg)
        load, size = int(cfg.load_size), int(cfg.size)
        train = [_read_domain(folder / f"train{s}", cfg, load, cfg.limit) for s in "AB"]
        test = None
        if (folder / "testA").is_dir() and (folder / "testB").is_dir():
            test = [_read_domain(folder / f"test{s}", cfg, size) for s in "AB"]
        return unpaired_data(cfg, train, test, batch_size, seed, device)


def unpaired_data(cfg, train, test, batch_size, seed, device) -> Data:
    a, b = _direction(cfg, *train)
    source = UnpairedBatches(a, b, batch_size, seed, device, crop=int(cfg.size), flip=bool(cfg.flip))
    check_batches(source, batch_size, cfg.name)
    held = UnpairedBatches(*_direction(cfg, *test), batch_size, seed, device, crop=int(cfg.size)) if test else None
    spec = DataSpec(str(cfg.name), int(a.shape[1]), int(cfg.size), kind="unpaired", n_train=source.n_images,
                    n_test=held.n_images if held else 0)
    return Data(spec, source, held)


for _name in ("unpaired", "horse2zebra", "apple2orange"):
    DATASETS.register(_name)(UnpairedFolder)


# ---- offline demos from Fashion-MNIST ----------------------------------------------------------------------------

def _fashion(cfg) -> dict[str, torch.Tensor]:
    """Fashion-MNIST at its own 28 px: the demos pick their images first and resize only those (`_at`)."""

    found = FashionMNIST.locate(cfg)
    if found is None:
        raise GenlabError(f"data={cfg.name} is made from Fashion-MNIST: {FashionMNIST.how_to_get}")
    arrays = {key: torch.from_numpy(read_idx(path, 3 if key.endswith("images") else 1).copy())
              for key, path in found.items()}
    return {"train": arrays["train_images"].unsqueeze(1), "train_labels": arrays["train_labels"],
            "test": arrays["test_images"].unsqueeze(1), "test_labels": arrays["test_labels"]}


def _at(images: torch.Tensor, cfg) -> torch.Tensor:
    """Images at data.load_size (each image is resized on its own: a subset resized equals the subset of all)."""

    return resize_uint8(images, int(cfg.load_size))


def edge_map(images: torch.Tensor, threshold: float = 0.25) -> torch.Tensor:
    """uint8 [N, 1, H, W] -> uint8 edge drawings: black lines (Sobel gradient magnitude above `threshold` of
    each image's largest) on white, like the HED edges of pix2pix's edges2shoes."""
    x = images.float() / 255.0
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]).view(1, 1, 3, 3)
    gx = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kx)
    gy = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kx.transpose(2, 3))
    magnitude = (gx.pow(2) + gy.pow(2)).sqrt()
    peak = magnitude.flatten(1).amax(1).clamp_min(1e-6).view(-1, 1, 1, 1)
    return torch.where(magnitude > threshold * peak, 0, 255).to(torch.uint8)


class EdgesToFashion:
    """Paired demo: A = an edge drawing of a Fashion-MNIST item, B = the item (pix2pix's edges2shoes task)."""
    kind = "paired"

    @staticmethod
    def locate(cfg: DictConfig) -> None:
        _check_sizes(cfg)
        if FashionMNIST.locate(cfg) is None:
            raise GenlabError(f"data={cfg.name} is made from Fashion-MNIST: {FashionMNIST.how_to_get}")

    @staticmethod
    def build(cfg: DictConfig, batch_size: int, seed: int, device: torch.device) -> Data:
        _check_sizes(cfg)
        fashion = _fashion(cfg)
        train = _at(fashion["train"] if cfg.limit is None else fashion["train"][spread(60000, int(cfg.limit))], cfg)
        test = _at(fashion["test"][spread(10000, cfg.test_limit)], cfg)
        # held-out pairs at data.size: the centre crop of the load-size images, edges drawn at the same scale as
        # the training ones (at load size, then cropped)
        edges = edge_map(test)
        top = (int(cfg.load_size) - int(cfg.size)) // 2
        crop = (..., slice(top, top + int(cfg.size)), slice(top, top + int(cfg.size)))
        return paired_data(cfg, (edge_map(train), train), (edges[crop], test[crop]), batch_size, seed, device)


class SandalsToSneakers:
    """Unpaired demo: A = Fashion-MNIST sandals, B = sneakers (no pair shows the same shoe, as horses and
    zebras): a model must learn to close a sandal's straps into a sneaker and to open a sneaker up."""
    kind = "unpaired"
    locate = EdgesToFashion.locate

    @staticmethod
    def build(cfg: DictConfig, batch_size: int, seed: int, device: torch.device) -> Data:
        _check_sizes(cfg)
        fashion = _fashion(cfg)
        sandal, sneaker = 5, 7
        a, b = fashion["train"][fashion["train_labels"] == sandal], fashion["train"][fashion["train_labels"] == sneaker]
        if cfg.limit is not None:
            a, b = a[spread(len(a), int(cfg.limit))], b[spread(len(b), int(cfg.limit))]
        a, b = _at(a, cfg), _at(b, cfg)
        size = int(cfg.size)

        top = (int(cfg.load_size) - size) // 2

        def held(label):  # the centre crop of the load-size images: the training images' scale
            images = _at(fashion["test"][fashion["test_labels"] == label][: cfg.test_limit], cfg)
            return images[..., top : top + size, top : top + size]

        return unpaired_data(cfg, (a, b), (held(sandal), held(sneaker)), batch_size, seed, device)


DATASETS.register("edges2fashion")(EdgesToFashion)
DATASETS.register("sandal2sneaker")(SandalsToSneakers)
