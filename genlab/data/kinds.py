"""Batch sources for the data kinds beyond labelled images: paired, unpaired, super-resolution and vectors.

Every source has the same face as TensorBatches (len = batches per epoch, `n_images`, `epoch(epoch,
start_batch)`, `first(n)`, `ordered(limit, batch_size)`) and yields data.Batch dicts whose names depend on its
kind:

    paired      {"a", "b"}       images of the same scene in two domains (pix2pix); one random crop and flip
                                 applied to both
    unpaired    {"a", "b"}       two domains drawn from independent orders (CycleGAN); an epoch is the larger
                                 domain, the smaller one cycles through fresh permutations
    superres    {"lr", "hr"}     random HR crops and their down-scaled LR (SRResNet, SRGAN)
    vectors     {"x", "label"}   continuous points (2-D toy densities, tabular data), float32

Everything random (the order, each crop, each flip) is a pure function of (seed, epoch, batch index), so a
run resumed at any step sees exactly the batches a straight run would, with no sampler state to save. Images
are held as uint8 on the training device and cross to float [-1, 1] per batch, as TensorBatches does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from genlab.core.distributed import part
from genlab.core.errors import GenlabError
from genlab.data.base import Batch, epoch_permutation, spread, to_unit_range
from genlab.data.bicubic import RESIZERS, downscale

KINDS = {
    "images": ("image", "label"),
    "paired": ("a", "b"),
    "unpaired": ("a", "b"),
    "superres": ("lr", "hr"),
    "vectors": ("x", "label"),
}


def batch_generator(seed: int, epoch: int, index: int, stream: int = 0) -> torch.Generator:
    """The CPU generator for one batch's random crops and flips: a pure function of its coordinates."""
    mixed = ((seed * 1_000_003 + epoch) * 1_000_033 + index) * 101 + stream
    return torch.Generator().manual_seed(mixed % (2**63 - 1))


def stream_order(n: int, length: int, seed: int, epoch: int, stream: int) -> torch.Tensor:
    """`length` indices into n items: fresh permutations of (seed, epoch, stream, cycle) one after another, so
    a domain shorter than the epoch cycles with every item once per cycle."""
    if length <= 0:
        return torch.zeros(0, dtype=torch.long)
    cycles = -(-length // n)
    parts = [epoch_permutation(n, seed * 7919 + stream * 104_729 + cycle, epoch) for cycle in range(cycles)]
    return torch.cat(parts)[:length]


def _check_images(name: str, images: torch.Tensor) -> None:
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"{name} must be uint8 NCHW images")


def _crop_flip(images: Sequence[torch.Tensor], tops, lefts, flips, size: int | None) -> list[torch.Tensor]:
    """The same crop (top, left, size) and flip per example applied to every stack in `images`."""
    out = []
    for stack in images:
        if size is not None:
            stack = torch.stack([stack[i, :, t : t + size, l : l + size] for i, (t, l) in enumerate(zip(tops, lefts))])
        if flips is not None and bool(flips.any()):
            stack = torch.where(flips.to(stack.device).view(-1, 1, 1, 1), stack.flip(-1), stack)
        out.append(stack)
    return out


def _center(stack: torch.Tensor, size: int | None) -> torch.Tensor:
    if size is None:
        return stack
    top, left = (stack.shape[-2] - size) // 2, (stack.shape[-1] - size) // 2
    return stack[..., top : top + size, left : left + size]


class _Source:
    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device):
        self.n, self.batch_size, self.seed, self.device = n, batch_size, seed, device

    def __len__(self) -> int:
        return self.n // self.batch_size  # the ragged last batch is dropped, as TensorBatches does

    @property
    def n_images(self) -> int:
        """How many examples (images, pairs or points) the split holds."""
        return self.n


def _one(stack: torch.Tensor, crop: int | None) -> list[int]:
    return [stack.shape[1], crop or stack.shape[2], crop or stack.shape[3]]


class PairedBatches(_Source):
    """Aligned pairs: a[i] and b[i] show the same scene. `crop` (pix2pix: load 286, crop 256) and `flip` are
    drawn once per example and applied to both images."""

    kind = "paired"

    def __init__(self, a: torch.Tensor, b: torch.Tensor, batch_size: int, seed: int, device: torch.device,
                 crop: int | None = None, flip: bool = False):
        _check_images("a", a), _check_images("b", b)
        if len(a) != len(b) or a.shape[-2:] != b.shape[-2:]:
            raise GenlabError(f"paired data needs as many A as B images, of the same size: got {len(a)} A images of "
                              f"{tuple(a.shape[-2:])} and {len(b)} B images of {tuple(b.shape[-2:])}")
        if crop is not None and crop > min(a.shape[-2:]):
            raise GenlabError(f"the crop {crop} is larger than the {tuple(a.shape[-2:])} images: lower the crop size "
                              "or raise the load size")
        super().__init__(len(a), batch_size, seed, device)
        self.a, self.b = a.to(device), b.to(device)
        self.crop, self.flip = crop, flip
        self.shapes = {"a": _one(self.a, crop), "b": _one(self.b, crop)}

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        order = epoch_permutation(self.n, self.seed, epoch).to(self.device)
        height, width = self.a.shape[-2:]
        for i in range(start_batch, len(self)):
            index = order[i * self.batch_size : (i + 1) * self.batch_size]
            rng = batch_generator(self.seed, epoch, i)
            size = self.crop or min(height, width)
            tops = torch.randint(0, height - size + 1, (len(index),), generator=rng).tolist()
            lefts = torch.randint(0, width - size + 1, (len(index),), generator=rng).tolist()
            flips = torch.rand(len(index), generator=rng) < 0.5 if self.flip else None
            a, b = _crop_flip([self.a[index], self.b[index]], tops, lefts, flips, self.crop)
            yield Batch(a=to_unit_range(a), b=to_unit_range(b))

    def _pairs(self, index: torch.Tensor) -> Batch:
        return Batch(a=to_unit_range(_center(self.a[index], self.crop)),
                     b=to_unit_range(_center(self.b[index], self.crop)))

    def first(self, n: int) -> Batch:
        """n pairs spread over the split, centre-cropped, in file order."""
        return self._pairs(spread(self.n, n).to(self.device))

    def ordered(self, limit: int | None = None, batch_size: int | None = None) -> Iterator[Batch]:
        index = spread(self.n, limit).to(self.device)
        step = batch_size or self.batch_size
        for start in range(0, len(index), step):
            yield self._pairs(index[start : start + step])


class UnpairedBatches(_Source):
    """Two domains with no correspondence (horses and zebras). Each batch holds `batch_size` A images and as many
    B images, drawn from independent orders; an epoch is the larger domain, the smaller one cycling."""

    kind = "unpaired"

    def __init__(self, a: torch.Tensor, b: torch.Tensor, batch_size: int, seed: int, device: torch.device,
                 crop: int | None = None, flip: bool = False):
        _check_images("a", a), _check_images("b", b)
        if len(a) == 0 or len(b) == 0:
            raise GenlabError(f"unpaired data needs images in both domains: got {len(a)} A and {len(b)} B images")
        for stack in (a, b):
            if crop is not None and crop > min(stack.shape[-2:]):
                raise GenlabError(f"the crop {crop} is larger than the {tuple(stack.shape[-2:])} images: lower the "
                                  "crop size or raise the load size")
        super().__init__(max(len(a), len(b)), batch_size, seed, device)
        self.a, self.b = a.to(device), b.to(device)
        self.crop, self.flip = crop, flip
        self.shapes = {"a": _one(self.a, crop), "b": _one(self.b, crop)}

    @property
    def n_a(self) -> int:
        return len(self.a)

    @property
    def n_b(self) -> int:
        return len(self.b)

    def _augment(self, stack: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        height, width = stack.shape[-2:]
        size = self.crop or min(height, width)
        tops = torch.randint(0, height - size + 1, (len(stack),), generator=rng).tolist()
        lefts = torch.randint(0, width - size + 1, (len(stack),), generator=rng).tolist()
        flips = torch.rand(len(stack), generator=rng) < 0.5 if self.flip else None
        return _crop_flip([stack], tops, lefts, flips, self.crop)[0]

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        length = len(self) * self.batch_size
        order_a = stream_order(self.n_a, length, self.seed, epoch, 1).to(self.device)
        order_b = stream_order(self.n_b, length, self.seed, epoch, 2).to(self.device)
        for i in range(start_batch, len(self)):
            part = slice(i * self.batch_size, (i + 1) * self.batch_size)
            a = self._augment(self.a[order_a[part]], batch_generator(self.seed, epoch, i, 1))
            b = self._augment(self.b[order_b[part]], batch_generator(self.seed, epoch, i, 2))
            yield Batch(a=to_unit_range(a), b=to_unit_range(b))

    def first(self, n: int) -> Batch:
        """n images of each domain spread over it, centre-cropped; the shorter domain repeats if it has fewer."""
        index_a = spread(self.n_a, n).repeat(-(-n // self.n_a))[:n].to(self.device)
        index_b = spread(self.n_b, n).repeat(-(-n // self.n_b))[:n].to(self.device)
        return Batch(a=to_unit_range(_center(self.a[index_a], self.crop)),
                     b=to_unit_range(_center(self.b[index_b], self.crop)))

    def ordered(self, limit: int | None = None, batch_size: int | None = None) -> Iterator[Batch]:
        """Each domain whole (or `limit` of each, spread) in file order: first batches holding only "a", then
        batches holding only "b"."""
        step = batch_size or self.batch_size
        for name, stack in (("a", self.a), ("b", self.b)):
            index = spread(len(stack), limit).to(self.device)
            for start in range(0, len(index), step):
                yield Batch({name: to_unit_range(_center(stack[index[start : start + step]], self.crop))})


class SuperResolutionBatches(_Source):
    """HR images (any sizes) -> batches of random `crop` x `crop` HR patches and their LR made by down-scaling
    `scale` times (`resize`: matlab, the bicubic published numbers use, or torch; data/bicubic.py). Crops are
    drawn from (seed, epoch, batch index), so a resume is exact. An epoch draws `repeat` crops from each image
    (a few photos still make full batches). The HR images stay on the CPU (DIV2K's 800 take 6.9 GB); each
    batch's crops cross to the device, where the LR is made."""

    kind = "superres"

    def __init__(self, hr: Sequence[torch.Tensor], batch_size: int, seed: int, device: torch.device, scale: int,
                 crop: int, flip: bool = False, names: Sequence[str] = (), resize: str = "matlab", repeat: int = 1):
        if resize not in RESIZERS:
            raise GenlabError(f"data.resize must be one of {', '.join(RESIZERS)}, got {resize!r}")
        if crop % scale:
            raise GenlabError(f"the HR crop {crop} is not a multiple of the scale {scale}: pick a crop such as "
                              f"{crop - crop % scale or scale}")
        small = [(i, tuple(im.shape[-2:])) for i, im in enumerate(hr) if min(im.shape[-2:]) < crop]
        if small:
            i, shape = small[0]
            which = names[i] if i < len(names) else f"HR image {i}"
            raise GenlabError(f"{which} is {shape[1]}x{shape[0]}, smaller than the {crop}-pixel HR crop "
                              f"({len(small)} such image(s)): lower the crop or leave those images out")
        for im in hr:
            if im.dtype != torch.uint8 or im.ndim != 3:
                raise ValueError("SuperResolutionBatches wants uint8 CHW images")
        if len({im.shape[0] for im in hr}) > 1:
            raise GenlabError(f"the HR images mix {sorted({im.shape[0] for im in hr})} channels: convert them to one "
                              "(RGB) first")
        super().__init__(len(hr) * repeat, batch_size, seed, device)
        self.hr = [im.cpu() for im in hr]
        self.scale, self.crop, self.flip, self.resize, self.repeat = scale, crop, flip, resize, repeat
        self.names = list(names)
        channels = self.hr[0].shape[0] if self.hr else 0
        self.shapes = {"lr": [channels, crop // scale, crop // scale], "hr": [channels, crop, crop]}

    @property
    def n_images(self) -> int:
        """How many HR images the split holds (an epoch draws `repeat` crops from each)."""
        return len(self.hr)

    def _batch(self, hr: torch.Tensor) -> Batch:
        hr = hr.to(self.device)
        return Batch(lr=to_unit_range(downscale(hr, self.scale, self.resize)), hr=to_unit_range(hr))

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        order = epoch_permutation(self.n, self.seed, epoch).tolist()
        for i in range(start_batch, len(self)):
            index = order[i * self.batch_size : (i + 1) * self.batch_size]
            rng = batch_generator(self.seed, epoch, i)
            patches = []
            for j in index:
                image = self.hr[j % len(self.hr)]
                top = int(torch.randint(0, image.shape[-2] - self.crop + 1, (1,), generator=rng))
                left = int(torch.randint(0, image.shape[-1] - self.crop + 1, (1,), generator=rng))
                patches.append(image[:, top : top + self.crop, left : left + self.crop])
            hr = torch.stack(patches)
            if self.flip:
                flips = torch.rand(len(hr), generator=rng) < 0.5
                hr = _crop_flip([hr], None, None, flips, None)[0]
            yield self._batch(hr)

    def first(self, n: int) -> Batch:
        """Centre crops of n images spread over the split: fixed crops for the visuals."""
        return self._batch(torch.stack([_center(self.hr[j], self.crop) for j in spread(len(self.hr), n).tolist()]))

    def ordered(self, limit: int | None = None, batch_size: int | None = None) -> Iterator[Batch]:
        """The centre crop of each image (or of `limit`, spread), in file order."""
        index = spread(len(self.hr), limit).tolist()
        step = batch_size or self.batch_size
        for start in range(0, len(index), step):
            yield self._batch(torch.stack([_center(self.hr[j], self.crop) for j in index[start : start + step]]))

    def whole(self, limit: int | None = None) -> Iterator[tuple[str, Batch]]:
        """Whole images, one at a time, each cut to a multiple of the scale: (name, Batch of one lr/hr pair).
        What the published SR numbers are measured on (Set5, Set14, BSD100 keep their images' own sizes)."""
        for j in spread(len(self.hr), limit).tolist():
            image = self.hr[j]
            height, width = image.shape[-2] - image.shape[-2] % self.scale, image.shape[-1] - image.shape[-1] % self.scale
            name = self.names[j] if j < len(self.names) else f"{j:05d}"
            yield name, self._batch(image[None, :, :height, :width])


class VectorBatches(_Source):
    """Continuous points (float32 [N, D]) with optional integer labels (0 where there are none)."""

    kind = "vectors"

    def __init__(self, x: torch.Tensor, batch_size: int, seed: int, device: torch.device,
                 labels: torch.Tensor | None = None):
        if x.ndim != 2 or not x.is_floating_point():
            raise ValueError("VectorBatches wants float [N, D] points")
        if not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).any(1).sum())
            raise GenlabError(f"{bad} of the {len(x)} points hold NaN or infinite values: clean the data first")
        super().__init__(len(x), batch_size, seed, device)
        self.x = x.float().to(device)
        self.shapes = {"x": [x.shape[1]]}
        self.labels = (labels if labels is not None else torch.zeros(len(x))).to(device=device, dtype=torch.long)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        order = epoch_permutation(self.n, self.seed, epoch).to(self.device)
        for i in range(start_batch, len(self)):
            index = order[part(i, self.batch_size)]  # this process's share of batch i
            yield Batch(x=self.x[index], label=self.labels[index])

    def first(self, n: int) -> Batch:
        index = spread(self.n, n).to(self.device)
        return Batch(x=self.x[index], label=self.labels[index])

    def ordered(self, limit: int | None = None, batch_size: int | None = None) -> Iterator[Batch]:
        index = spread(self.n, limit).to(self.device)
        step = batch_size or self.batch_size
        for start in range(0, len(index), step):
            part = index[start : start + step]
            yield Batch(x=self.x[part], label=self.labels[part])
