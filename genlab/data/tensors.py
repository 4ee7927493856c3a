"""Small image datasets read whole into one uint8 tensor: digits, MNIST, Fashion-MNIST, CIFAR-10."""

from __future__ import annotations

import gzip
import importlib.util
import pickle
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from genlab.core.errors import GenlabError
from genlab.core.registry import DATASETS
from genlab.core.safety import safe_pickle_load
from genlab.data.base import Data, DataSpec, TensorBatches, check_batches, resize_uint8


def _finish(name, cfg, train_x, train_y, test_x, test_y, batch_size, seed, device, n_classes, class_names) -> Data:
    normal = cfg.get("normal_classes")
    if normal is not None:  # anomaly detection: both splits keep the normal classes only (genlab eval --anomaly
        #                     builds the test split whole and calls the other classes anomalous)
        keep = torch.tensor(list(normal))  # a list of classes (config.check_normal_classes)
        train_keep, test_keep = torch.isin(train_y, keep), torch.isin(test_y, keep)
        train_x, train_y, test_x, test_y = train_x[train_keep], train_y[train_keep], test_x[test_keep], test_y[test_keep]
    if cfg.limit is not None:
        train_x, train_y = train_x[: cfg.limit], train_y[: cfg.limit]
    train_x, test_x = resize_uint8(train_x, cfg.size), resize_uint8(test_x, cfg.size)
    spec = DataSpec(
        name=name,
        channels=train_x.shape[1],
        size=cfg.size,
        n_classes=n_classes,
        n_train=len(train_x),
        n_test=len(test_x),
        class_names=list(class_names),
    )
    train = TensorBatches(train_x, train_y, batch_size, seed, device)
    check_batches(train, batch_size, name)
    test = TensorBatches(test_x, test_y, batch_size, seed, device)
    return Data(spec, train, test)


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits (pixels 0-16 [1797, 64], labels [1797]), read from the file scikit-learn ships
    (datasets/data/digits.csv.gz) without importing scikit-learn, whose import takes a second or two: what
    sklearn.datasets.load_digits returns, read the same way. Where the file is not found, load_digits itself."""
    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if path is not None and path.is_file():
        table = np.loadtxt(path, delimiter=",")
        return table[:, :-1], table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.data, digits.target


@DATASETS.register("digits")
class Digits:
    """scikit-learn's 1,797 8x8 digits (UCI). Every fifth image is held out as the test split."""
    kind = "images"  # batches of {"image", "label"} (data.Batch)
    n_classes = 10

    @staticmethod
    def locate(cfg: DictConfig) -> None:
        return None  # ships inside scikit-learn

    @staticmethod
    def build(cfg: DictConfig, batch_size: int, seed: int, device: torch.device) -> Data:
        pixels, target = _digits_arrays()
        images = torch.from_numpy(np.round(pixels.reshape(-1, 8, 8) * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
        labels = torch.from_numpy(target.astype(np.int64))
        test = torch.arange(len(images)) % 5 == 4
        return _finish(
            "digits", cfg, images[~test], labels[~test], images[test], labels[test],
            batch_size, seed, device, 10, [str(i) for i in range(10)],
        )


# ---- IDX files (MNIST, Fashion-MNIST) -------------------------------------------------------------

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


IDX_MAX_BYTES = 1 << 30  # MNIST's largest file holds 47 MB; a header that declares more is not an IDX file of it


def read_idx(path: Path, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (optionally gzipped): magic 0x0000 <dtype=0x08> <ndim>, big-endian sizes, uint8 data. The
    header is checked first (the dimensions expected: 3 for images, 1 for labels; at most IDX_MAX_BYTES of data),
    then exactly the declared bytes are read, so a gzip file that inflates to gigabytes is never held whole."""
    opener = gzip.open if path.suffix == ".gz" else open
    how = "delete it and fetch it again"
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] != 0x08:
                raise GenlabError(f"{path} is not an IDX file of unsigned bytes; {how}")
            dims = head[3]
            if dims not in (1, 2, 3) or (ndim is not None and dims != ndim):
                want = f"{ndim}" if ndim is not None else "1 to 3"
                raise GenlabError(f"{path} declares {dims} dimensions, not {want}: it is not the IDX file genlab "
                                  f"expects here; {how}")
            sizes = f.read(4 * dims)
            if len(sizes) < 4 * dims:
                raise GenlabError(f"{path} is truncated (its header is cut short); {how}")
            shape = tuple(int.from_bytes(sizes[4 * i : 4 * i + 4], "big") for i in range(dims))
            total = int(np.prod(shape, dtype=np.int64))
            if total > IDX_MAX_BYTES:
                raise GenlabError(f"{path} declares {' x '.join(map(str, shape))} = {total:,} bytes, more than the "
                                  f"{IDX_MAX_BYTES:,} of any dataset genlab reads as IDX; {how}")
            data = f.read(total)
            extra = f.read(1)
    except (OSError, EOFError, ValueError) as err:  # gzip's BadGzipFile is an OSError; zlib errors surface too
        raise GenlabError(f"cannot read {path} ({err}); {how}") from None
    except Exception as err:  # noqa: BLE001  (zlib.error: a damaged gzip stream)
        raise GenlabError(f"cannot read {path} ({type(err).__name__}: {err}); {how}") from None
    if len(data) != total:
        raise GenlabError(f"{path} is truncated ({len(data)} of {total} bytes); fetch it again")
    if extra:
        raise GenlabError(f"{path} holds more data than its header declares; {how}")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def find_idx(folders: list[Path]) -> dict[str, Path] | None:
    for folder in folders:
        found = {}
        for key, stem in IDX_FILES.items():
            for candidate in (folder / stem, folder / f"{stem}.gz"):
                if candidate.is_file():
                    found[key] = candidate
                    break
        if len(found) == len(IDX_FILES):
            return found
    return None


class _IdxDataset:
    kind = "images"  # batches of {"image", "label"} (data.Batch)
    n_classes = 10
    name = ""
    torchvision_class = ""
    raw_folder = ""  # torchvision's layout: <root>/<raw_folder>/raw
    system_folders: tuple[str, ...] = ()
    how_to_get = ""
    class_names: tuple[str, ...] = ()

    @classmethod
    def folders(cls, cfg: DictConfig) -> list[Path]:
        root = Path(cfg.root).expanduser()
        return [root / cls.raw_folder / "raw", root, *(Path(p) for p in cls.system_folders)]

    @classmethod
    def locate(cls, cfg: DictConfig) -> dict[str, Path] | None:
        found = find_idx(cls.folders(cfg))
        if found is None and not cfg.download:
            where = ", ".join(str(p) for p in cls.folders(cfg))
            raise GenlabError(f"{cls.name} not found (looked in {where}): {cls.how_to_get}")
        return found

    @classmethod
    def build(cls, cfg: DictConfig, batch_size: int, seed: int, device: torch.device) -> Data:
        found = cls.locate(cfg)
        if found is None:
            _torchvision_download(cls.torchvision_class, cfg.root, cls.name)
            found = find_idx(cls.folders(cfg))
            if found is None:
                raise GenlabError(f"{cls.name}: the download finished but the IDX files are not in {cfg.root}")
        arrays = {key: torch.from_numpy(read_idx(path, 3 if key.endswith("images") else 1).copy())
                  for key, path in found.items()}
        return _finish(
            cls.name, cfg,
            arrays["train_images"].unsqueeze(1), arrays["train_labels"].long(),
            arrays["test_images"].unsqueeze(1), arrays["test_labels"].long(),
            batch_size, seed, device, 10, cls.class_names,
        )


def _torchvision_download(class_name: str, root: str, name: str) -> None:
    import torchvision.datasets

    try:
        getattr(torchvision.datasets, class_name)(root=root, train=True, download=True)
        getattr(torchvision.datasets, class_name)(root=root, train=False, download=True)
    except Exception as err:  # noqa: BLE001  (network errors come in many types; the message is what matters)
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise GenlabError(f"downloading {name} into {root} failed ({first}); put the files there by hand") from None


@DATASETS.register("mnist")
class MNIST(_IdxDataset):
    name = "mnist"
    torchvision_class = "MNIST"
    raw_folder = "MNIST"
    how_to_get = "pass data.download=true (needs network) or put the four IDX files in <data.root>/MNIST/raw"
    class_names = tuple(str(i) for i in range(10))


@DATASETS.register("fashion_mnist")
class FashionMNIST(_IdxDataset):
    name = "fashion_mnist"
    torchvision_class = "FashionMNIST"
    raw_folder = "FashionMNIST"
    system_folders = ("/usr/share/datasets/fashion-mnist",)
    how_to_get = (
        "install it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), "
        "or pass data.download=true (needs network)"
    )
    class_names = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


# ---- CIFAR-10 python pickles ------------------------------------------------------------------------

CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_TEST = ["test_batch"]


@DATASETS.register("cifar10")
class CIFAR10:
    kind = "images"  # batches of {"image", "label"} (data.Batch)
    n_classes = 10
    class_names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

    @staticmethod
    def folder(cfg: DictConfig) -> Path:
        return Path(cfg.root).expanduser() / "cifar-10-batches-py"

    @classmethod
    def locate(cls, cfg: DictConfig) -> Path | None:
        folder = cls.folder(cfg)
        if all((folder / f).is_file() for f in CIFAR_TRAIN + CIFAR_TEST):
            return folder
        if cfg.download:
            return None
        raise GenlabError(
            f"cifar10 not found in {folder}: pass data.download=true (needs network) or unpack "
            "cifar-10-python.tar.gz into data.root"
        )

    @classmethod
    def build(cls, cfg: DictConfig, batch_size: int, seed: int, device: torch.device) -> Data:
        folder = cls.locate(cfg)
        if folder is None:
            _torchvision_download("CIFAR10", cfg.root, "cifar10")
            folder = cls.folder(cfg)

        def read(names):
            xs, ys = [], []
            for name in names:
                try:
                    with open(folder / name, "rb") as f:  # dicts, lists, bytes and arrays only: never code
                        entry = safe_pickle_load(f, encoding="latin1")
                    xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                    ys.append(np.asarray(entry["labels"], dtype=np.int64))
                except pickle.UnpicklingError as err:
                    raise GenlabError(f"refused {folder / name}: it is not a CIFAR-10 batch ({err}); genlab runs no "
                                      "code from data files. Unpack cifar-10-python.tar.gz again") from None
                except Exception as err:  # noqa: BLE001  (truncated, not a pickle, or not CIFAR's dict)
                    raise GenlabError(f"cannot read {folder / name} as a CIFAR-10 batch ({type(err).__name__}); "
                                      "unpack cifar-10-python.tar.gz again") from None
            return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))

        train_x, train_y = read(CIFAR_TRAIN)
        test_x, test_y = read(CIFAR_TEST)
        return _finish("cifar10", cfg, train_x, train_y, test_x, test_y, batch_size, seed, device, 10,
                       cls.class_names)
