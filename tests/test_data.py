"""Loaders on small files written here in the real on-disk formats (IDX, CIFAR pickles, CelebA, folders)."""

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from genlab.core.errors import GenlabError
from genlab.data import build_data
from genlab.data.base import TensorBatches
from genlab.data.tensors import read_idx
from tests.conftest import FASHION_SYSTEM

CPU = torch.device("cpu")


def data_cfg(name, root, **extra):
    base = {"name": name, "size": 28, "root": str(root), "download": False, "num_workers": 0, "limit": None}
    base.update(extra)
    return OmegaConf.create(base)


def write_idx(path, array, gz):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", s) for s in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def write_mnist_like(folder, n_train=40, n_test=12, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    for name, array in arrays.items():
        write_idx(folder / name, array, gz)
    return arrays


def as_uint8(x):
    return ((x + 1) * 127.5).round().to(torch.uint8)


@pytest.mark.parametrize("name,sub,gz", [("mnist", "MNIST", True), ("fashion_mnist", "FashionMNIST", False)])
def test_idx_datasets_read_torchvision_layout(tmp_path, name, sub, gz):
    arrays = write_mnist_like(tmp_path / sub / "raw", gz=gz)
    data = build_data(data_cfg(name, tmp_path), batch_size=8, seed=0, device=CPU)
    assert (data.spec.channels, data.spec.size, data.spec.n_classes) == (1, 28, 10)
    assert (data.spec.n_train, data.spec.n_test) == (40, 12)
    images, labels = data.fixed_batch(12).values()  # the first test images in file order
    assert torch.equal(as_uint8(images)[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"].astype(np.uint8)))
    assert labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    batches = list(data.train.epoch(0))
    assert len(batches) == 5 and all(b["image"].shape == (8, 1, 28, 28) for b in batches)
    seen = torch.cat([as_uint8(b["image"]) for b in batches])[:, 0]
    train = torch.from_numpy(arrays["train-images-idx3-ubyte"].astype(np.uint8))
    assert sorted(map(bytes, seen.numpy())) == sorted(map(bytes, train.numpy()))  # a permutation of the data


def test_idx_resized_and_limited(tmp_path):
    write_mnist_like(tmp_path / "MNIST" / "raw")
    data = build_data(data_cfg("mnist", tmp_path, size=32, limit=16), batch_size=8, seed=0, device=CPU)
    assert data.spec.n_train == 16 and next(data.train.epoch(0))["image"].shape == (8, 1, 32, 32)


def test_truncated_idx_is_one_clear_error(tmp_path):
    write_idx(tmp_path / "x", np.zeros((4, 28, 28)), gz=False)
    (tmp_path / "y").write_bytes((tmp_path / "x").read_bytes()[:-10])
    assert read_idx(tmp_path / "x").shape == (4, 28, 28)
    with pytest.raises(GenlabError, match="truncated"):
        read_idx(tmp_path / "y")


@pytest.mark.parametrize("name,hint", [("mnist", "data.download=true"), ("cifar10", "cifar-10-python"),
                                       ("celeba", "img_align_celeba")])
def test_missing_dataset_says_where_it_looked_and_how_to_get_it(tmp_path, name, hint):
    from genlab.core.registry import DATASETS

    with pytest.raises(GenlabError) as err:
        DATASETS[name].locate(data_cfg(name, tmp_path / "nothing"))
    assert hint in str(err.value) and str(tmp_path / "nothing") in str(err.value)
    assert "\n" not in str(err.value)


def test_cifar10_python_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    written = {}
    for name, n in [*((f"data_batch_{i}", 6) for i in range(1, 6)), ("test_batch", 5)]:
        entry = {"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8), "labels": rng.integers(0, 10, n).tolist(),
                 "batch_label": name}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
        written[name] = entry
    data = build_data(data_cfg("cifar10", tmp_path, size=32), batch_size=10, seed=0, device=CPU)
    assert (data.spec.channels, data.spec.n_train, data.spec.n_test, data.spec.n_classes) == (3, 30, 5, 10)
    images, labels = data.fixed_batch(5).values()
    expected = torch.from_numpy(written["test_batch"]["data"].reshape(5, 3, 32, 32))
    assert torch.equal(as_uint8(images), expected)
    assert labels.tolist() == written["test_batch"]["labels"]
    assert data.spec.class_names[0] == "airplane"


def write_image(path, size, colour):
    Image.new("RGB", size, colour).save(path)


def test_celeba_folder_layout_with_partition(tmp_path):
    folder = tmp_path / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    lines = []
    for i in range(1, 13):
        # 178x218 like CelebA; a red square in the centre, blue border: the centre crop keeps only red
        img = Image.new("RGB", (178, 218), (0, 0, 255))
        img.paste((255, 0, 0), (20, 40, 158, 178))
        img.save(folder / f"{i:06d}.jpg", quality=95)
        lines.append(f"{i:06d}.jpg {0 if i <= 8 else 2}")
    (tmp_path / "celeba" / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    cfg = data_cfg("celeba", tmp_path, size=16, crop=130)
    data = build_data(cfg, batch_size=4, seed=0, device=CPU)
    assert (data.spec.n_train, data.spec.n_test, data.spec.channels) == (8, 4, 3)
    batch = next(data.train.epoch(0))["image"]
    assert batch.shape == (4, 3, 16, 16)
    red = batch[:, 0].mean().item(), batch[:, 2].mean().item()
    assert red[0] > 0.9 and red[1] < -0.9


def test_image_folder_with_class_subfolders_and_flat(tmp_path):
    for cls, colour in (("anime", (255, 0, 0)), ("cartoon", (0, 255, 0))):
        (tmp_path / "two" / cls).mkdir(parents=True)
        for i in range(4):
            write_image(tmp_path / "two" / cls / f"{i}.png", (40, 30), colour)
    data = build_data(data_cfg("image_folder", tmp_path / "two", size=16, channels=3), batch_size=4, seed=0,
                      device=CPU)
    assert data.spec.n_classes == 2 and data.spec.class_names == ["anime", "cartoon"]
    images, labels = data.fixed_batch(8).values()
    assert images.shape == (8, 3, 16, 16)
    assert labels.tolist() == [0] * 4 + [1] * 4
    assert (images[:4, 0] > 0.9).all() and (images[4:, 1] > 0.9).all()

    (tmp_path / "flat").mkdir()
    for i in range(5):
        write_image(tmp_path / "flat" / f"{i}.jpg", (20, 20), (9, 9, 9))
    flat = build_data(data_cfg("image_folder", tmp_path / "flat", size=8, channels=1), 2, 0, CPU)
    assert flat.spec.n_classes == 0 and flat.spec.channels == 1 and len(flat.train) == 2


def test_empty_image_folder_is_one_clear_error(tmp_path):
    with pytest.raises(GenlabError, match="no images"):
        build_data(data_cfg("image_folder", tmp_path, channels=3), 2, 0, CPU)


def test_digits_is_embedded_and_split():
    data = build_data(data_cfg("digits", None, size=32), batch_size=64, seed=0, device=CPU)
    assert (data.spec.n_train, data.spec.n_test, data.spec.n_classes) == (1438, 359, 10)
    x, y = next(data.train.epoch(0)).values()
    assert x.shape == (64, 1, 32, 32) and -1 <= x.min() < x.max() <= 1 and y.max() < 10


def test_batch_order_is_a_function_of_seed_and_epoch():
    images = torch.arange(20, dtype=torch.uint8).view(20, 1, 1, 1).expand(20, 1, 2, 2).contiguous()
    source = TensorBatches(images, torch.arange(20), batch_size=4, seed=3, device=CPU)
    first = [b["label"].tolist() for b in source.epoch(0)]
    assert first == [b["label"].tolist() for b in source.epoch(0)]
    assert first != [b["label"].tolist() for b in source.epoch(1)]
    assert [b["label"].tolist() for b in source.epoch(0, start_batch=2)] == first[2:]


@pytest.mark.skipif(not FASHION_SYSTEM.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist_from_the_debian_package(tmp_path):
    data = build_data(data_cfg("fashion_mnist", tmp_path, size=32), batch_size=64, seed=0, device=CPU)
    assert (data.spec.n_train, data.spec.n_test) == (60_000, 10_000)
    assert data.spec.class_names[9] == "Ankle boot"
    x, y = next(data.test.ordered(batch_size=4)).values()
    assert x.shape == (4, 1, 32, 32) and y.tolist() == [9, 2, 1, 1]  # the first t10k labels


def _noise_folder(root, n=20, size=(24, 20)):
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n // 2):
            Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(root / cls / f"{i}.png")


def test_data_cache_gives_the_decoded_images_the_loader_gives(tmp_path):
    """data.cache=true: one memory-mapped file of decoded images beside the data, built once; batches, their
    order and labels are those of the DataLoader path; a changed folder makes a new file, never a stale read."""
    _noise_folder(tmp_path / "faces")
    plain = build_data(data_cfg("image_folder", tmp_path / "faces", size=16, channels=3, test_fraction=0.2),
                       batch_size=4, seed=3, device=CPU)
    cfg = data_cfg("image_folder", tmp_path / "faces", size=16, channels=3, test_fraction=0.2, cache=True)
    cached = build_data(cfg, batch_size=4, seed=3, device=CPU)
    files = sorted((tmp_path / "faces" / ".genlab_cache").iterdir())
    assert [f.suffix for f in files] == [".u8", ".u8"]  # train and test, nothing half-written beside them
    assert sum(f.stat().st_size for f in files) == 20 * 3 * 16 * 16
    for a, b in zip(plain.train.epoch(1), cached.train.epoch(1)):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert torch.equal(plain.fixed_batch(4)["image"], cached.fixed_batch(4)["image"])
    assert len(list(cached.test.ordered())) == len(list(plain.test.ordered()))
    stamp = files[0].stat().st_mtime_ns
    build_data(cfg, batch_size=4, seed=3, device=CPU)  # read back, not rebuilt
    assert files[0].stat().st_mtime_ns == stamp
    write_image(tmp_path / "faces" / "a" / "new.png", (24, 20), (1, 2, 3))
    build_data(cfg, batch_size=4, seed=3, device=CPU)
    assert len(list((tmp_path / "faces" / ".genlab_cache").glob("*.u8"))) == 4  # a new folder, a new file


def test_data_cache_mistakes_are_one_line_and_leave_no_partial_file(tmp_path):
    _noise_folder(tmp_path / "faces", n=8)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(GenlabError, match="data.cache: cannot write the cache in .*pass data.cache_dir="):
        build_data(data_cfg("image_folder", tmp_path / "faces", size=8, channels=3, cache=True,
                            cache_dir=str(blocker / "cache")), 4, 0, CPU)
    (tmp_path / "faces" / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(GenlabError, match="cannot read image .*broken.png"):
        build_data(data_cfg("image_folder", tmp_path / "faces", size=8, channels=3, cache=True), 4, 0, CPU)
    assert list((tmp_path / "faces" / ".genlab_cache").iterdir()) == []  # the interrupted build left nothing
