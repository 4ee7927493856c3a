"""What every dataset hands the trainer: a DataSpec and batch sources that yield named batches.

The data order is a pure function of (seed, epoch), so a run resumed from any checkpoint sees exactly the
batches the uninterrupted run would have seen, with no sampler state to save.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from genlab.core.config import check_bool, check_int, get
from genlab.core.distributed import part
from genlab.core.errors import GenlabError


class Batch(dict):
    """One batch as named tensors, built by the data layer; the names depend on the data kind (DataSpec.kind):

        images     {"image": float [-1, 1] NCHW, "label": long [N]}   digits, MNIST, CIFAR-10, CelebA, folders
        paired     {"a", "b"}     aligned images of two domains        (data/kinds.py: PairedBatches)
        unpaired   {"a", "b"}     two domains in independent orders    (UnpairedBatches)
        superres   {"lr", "hr"}   LR and HR crops                      (SuperResolutionBatches)
        vectors    {"x": float [N, D], "label": long [N]}              (VectorBatches)

    Each dataset class states its `kind`; a model declares the kinds it accepts (GenerativeModel.accepts), and
    `model=X data=Y` that do not fit is one line before any run folder exists. The trainer counts, moves and
    re-lays out tensors without reading their names (only the sample-diversity diagnostic reads "image").
    """

    @property
    def size(self) -> int:
        """How many examples: the length of the first tensor."""
        return len(next(iter(self.values())))



@dataclass
class DataSpec:
    name: str
    channels: int
    size: int
    n_classes: int = 0  # 0 = unlabelled
    kind: str = "images"
    n_train: int = 0
    n_test: int = 0
    class_names: list[str] = field(default_factory=list)
    # the shape of one example of each named tensor, for kinds other than images (whose shape is channels x
    # size x size), e.g. {"a": [3, 256, 256], "b": [3, 256, 256]}, {"lr": [3, 24, 24], "hr": [3, 96, 96]},
    # {"x": [2]}: what a model builds its networks from
    shapes: dict[str, list[int]] = field(default_factory=dict)

    def shape(self, name: str) -> list[int]:
        if name in self.shapes:
            return list(self.shapes[name])
        if self.kind == "images" and name == "image":
            return [self.channels, self.size, self.size]
        raise KeyError(f"{self.name} ({self.kind}) has no tensor named {name!r}")


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator)


def spread(n: int, k: int | None) -> torch.Tensor:
    """Indices of k items spread evenly over n (all n if k is None or k >= n), in increasing order."""
    if k is None or k >= n:
        return torch.arange(n)
    return torch.linspace(0, n - 1, max(k, 0)).round().long().unique()


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], the range images travel in everywhere in genlab."""
    return images.float().div_(127.5).sub_(1.0)


def dequantise(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """[-1, 1] 8-bit images -> (v + U(0, 1)) / 256 in [0, 1), v the 8-bit value (uniform dequantisation): a density
    of these, less log 256 per pixel, bounds the log-likelihood of the 8-bit image (flows, VAEs' bits/dim). The
    noise comes from `generator` (on the CPU) where one is given."""
    values = ((x.float() + 1) * 127.5).round().clamp(0, 255)
    noise = torch.rand(values.shape, generator=generator).to(values) if generator is not None else torch.rand_like(values)
    return (values + noise) / 256.0


def resize_uint8(images: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """Resize a uint8 NCHW stack to size x size (antialiased bilinear), in chunks to bound memory."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images.contiguous()
    out = []
    for start in range(0, len(images), chunk):
        part = images[start : start + chunk].float()
        part = F.interpolate(part, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(part.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


class TensorBatches:
    """A small dataset held as one uint8 tensor on the training device and batched there.

    No DataLoader, no worker processes, no per-batch host-to-device copy: for digits, MNIST-likes and
    CIFAR-10 this is the fastest way to feed a GPU and costs nothing on a CPU.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int, device: torch.device,
                 resident: bool = True):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError("TensorBatches wants uint8 NCHW images")
        # resident: the images live on the device; else they stay where they are (a memory-mapped data.cache
        # file) and each batch is gathered on the host and copied over
        self.images = images.to(device) if resident else images
        self.labels = labels.to(device=device, dtype=torch.long)
        self.batch_size = batch_size
        self.seed = seed
        self.device = device

    def _take(self, index: torch.Tensor) -> Batch:
        images = self.images[index.to(self.images.device)]
        if images.device != self.device:
            images = images.pin_memory().to(self.device, non_blocking=True) if self.device.type == "cuda" else \
                images.to(self.device)
        return Batch(image=to_unit_range(images), label=self.labels[index.to(self.labels.device)])

    def __len__(self) -> int:
        return len(self.images) // self.batch_size  # drop the ragged last batch: BatchNorm dislikes tiny ones

    @property
    def n_images(self) -> int:
        return len(self.images)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        order = epoch_permutation(len(self.images), self.seed, epoch).to(self.images.device)
        for i in range(start_batch, len(self)):
            yield self._take(order[part(i, self.batch_size)])  # this process's share of batch i (all in one)

    def first(self, n: int) -> Batch:
        """n images spread evenly over the split, in file order: a fixed batch for reconstructions and
        comparisons (spread, so a folder listed class by class still gives every class)."""
        return self._take(spread(len(self.images), n))

    def ordered(self, limit: int | None = None, batch_size: int | None = None) -> Iterator[Batch]:
        """Every image (or `limit` of them, spread evenly) in file order, the last batch ragged: for evaluation."""
        index = spread(len(self.images), limit)
        step = batch_size or self.batch_size
        for start in range(0, len(index), step):
            yield self._take(index[start : start + step])


class EpochBatchSampler(torch.utils.data.Sampler):
    """Batches of indices in the order epoch_permutation gives; set_epoch() before each pass."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return self.n // self.batch_size - self.start_batch

    def __iter__(self):
        order = epoch_permutation(self.n, self.seed, self.epoch).tolist()
        for i in range(self.start_batch, self.n // self.batch_size):
            yield order[part(i, self.batch_size)]  # this process's share: workers decode only it


def loader_batches(loader) -> Iterator:
    """A DataLoader's batches; a GenlabError raised in a worker process (a bad image) arrives wrapped in the
    worker's traceback: it is raised again as its own one line."""
    batches = iter(loader)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except GenlabError as err:
            raise GenlabError(str(err).strip().splitlines()[-1].split("GenlabError: ")[-1]) from None
        yield batch


class LoaderBatches:
    """A folder dataset read by a DataLoader (workers decode files; uint8 crosses to the device)."""

    def __init__(self, dataset, batch_size: int, seed: int, device: torch.device, num_workers: int):
        self.dataset = dataset
        self.batch_size = batch_size
        self.device = device
        self.sampler = EpochBatchSampler(len(dataset), batch_size, seed)
        self.loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=self.sampler,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=num_workers > 0,
        )

    def __len__(self) -> int:
        return len(self.dataset) // self.batch_size

    @property
    def n_images(self) -> int:
        return len(self.dataset)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        self.sampler.set_epoch(epoch, start_batch)
        for images, labels in loader_batches(self.loader):
            yield Batch(image=to_unit_range(images.to(self.device, non_blocking=True)), label=labels.to(self.device))

    def first(self, n: int) -> Batch:
        items = [self.dataset[i] for i in spread(len(self.dataset), n).tolist()]
        images = torch.stack([im for im, _ in items]).to(self.device)
        labels = torch.tensor([lab for _, lab in items], device=self.device)
        return Batch(image=to_unit_range(images), label=labels)

    def ordered(self, limit: int | None = None, batch_size: int | None = None) -> Iterator[Batch]:
        """Every image (or `limit` of them, spread evenly) in file order, the last batch ragged: for evaluation."""
        subset = torch.utils.data.Subset(self.dataset, spread(len(self.dataset), limit).tolist())
        loader = torch.utils.data.DataLoader(subset, batch_size=batch_size or self.batch_size, shuffle=False)
        for images, labels in loader:
            yield Batch(image=to_unit_range(images.to(self.device)), label=labels.to(self.device))


@dataclass
class Data:
    spec: DataSpec
    train: TensorBatches | LoaderBatches
    test: TensorBatches | LoaderBatches | None = None

    def __post_init__(self):
        # a batch source of data/kinds.py knows its example shapes: the spec takes them from it
        shapes = getattr(self.train, "shapes", None)
        if shapes:
            if self.spec.shapes and {k: list(v) for k, v in self.spec.shapes.items()} != shapes:
                raise ValueError(f"DataSpec.shapes {self.spec.shapes} do not match the batches' {shapes}")
            self.spec.shapes = shapes

    def fixed_batch(self, n: int) -> Batch:
        """A fixed evaluation batch: n test images spread over the split (train where there is no test split)."""
        return self.evaluation.first(n)

    @property
    def evaluation(self) -> TensorBatches | LoaderBatches:
        """The split that evaluation and latent figures read: test, or train where there is none."""
        return self.test if self.test is not None and self.test.n_images > 0 else self.train


def check_batches(train, batch_size: int, name: str) -> None:
    if len(train) == 0:
        raise GenlabError(
            f"{name} has {train.n_images} training images, fewer than train.batch_size={batch_size}: "
            "lower train.batch_size or raise data.limit"
        )


def domain_stacks(source, limit: int | None = None) -> dict[str, torch.Tensor]:
    """A paired or unpaired split's A and B images (or `limit` of each, spread), on the CPU, in file order."""
    stacks: dict[str, list] = {"a": [], "b": []}
    for batch in source.ordered(limit=limit, batch_size=256):
        for name in ("a", "b"):
            if name in batch:
                stacks[name].append(batch[name].float().cpu())
    return {name: torch.cat(parts) for name, parts in stacks.items() if parts}


def check_normal_classes(cfg: DictConfig, dataset) -> None:
    """data.normal_classes (anomaly detection: train on these classes only; the others are the anomalies of the
    test split): distinct class numbers of a labelled dataset that leave at least one class out."""
    normal = get(cfg, "data.normal_classes", None)
    if normal is None:
        return
    name = get(cfg, "data.name")
    n_classes = int(getattr(dataset, "n_classes", 0))
    if not n_classes:
        raise GenlabError(f"data.normal_classes: data={name} has no class labels to pick normal classes from")
    if not OmegaConf.is_list(normal) or not all(
            isinstance(k, int) and not isinstance(k, bool) for k in normal):
        raise GenlabError(f"data.normal_classes must be a list of class numbers, e.g. data.normal_classes=[0]; "
                          f"got {normal!r}")
    normal = list(normal)
    if not normal:
        raise GenlabError("data.normal_classes=[] leaves no normal images to train on: list one class or more, "
                          "e.g. data.normal_classes=[0]")
    bad = [k for k in normal if not 0 <= k < n_classes]
    if bad:
        raise GenlabError(f"data.normal_classes: {name} has classes 0 to {n_classes - 1}, got {bad[0]}; no "
                          "training image would have it")
    if len(set(normal)) != len(normal):
        raise GenlabError(f"data.normal_classes lists a class twice: {normal}")
    if len(normal) == n_classes:
        raise GenlabError(f"data.normal_classes lists all {n_classes} classes of {name}, which leaves no anomalous "
                          "test images: leave some out, or drop data.normal_classes to train on everything")


def check_data(cfg: DictConfig, dataset) -> None:
    """data.*: the keys every dataset shares, then the dataset's own (its check_config), one line a mistake."""
    data = get(cfg, "data")
    if "size" in data or dataset.kind != "vectors":  # points (toy2d) have no image size
        check_int(cfg, "data.size", minimum=8)
    check_int(cfg, "data.limit", minimum=1, optional=True)
    if "num_workers" in data or dataset.kind != "vectors":
        check_int(cfg, "data.num_workers", minimum=0)
    if "download" in data or dataset.kind != "vectors":
        check_bool(cfg, "data.download")
    get(cfg, "data.root", None)  # surfaces a missing mandatory root (image_folder) as one line
    if "cache" in data:
        check_bool(cfg, "data.cache")
        cache_dir = get(cfg, "data.cache_dir", None)
        if cache_dir is not None and not isinstance(cache_dir, str):
            raise GenlabError(f"data.cache_dir must be a folder path or null; got {cache_dir!r}")
    check_normal_classes(cfg, dataset)
    if hasattr(dataset, "check_config"):
        dataset.check_config(cfg)  # the dataset's own keys (toy2d: data.shape)
