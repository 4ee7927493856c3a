"""A finished (or interrupted) run as something to use: its config, its model with trained weights, and the
images that commands like `genlab reconstruct` feed it."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from genlab.checkpoint import find_checkpoint, load_checkpoint
from genlab.data import DataSpec
from genlab.errors import GenlabError
from genlab.models import GenerativeModel


@dataclass
class Run:
    path: Path  # the run folder
    checkpoint: Path
    cfg: DictConfig
    spec: DataSpec
    model: GenerativeModel
    step: int
    ema: bool = False  # the model holds the run's EMA weights


    @property
    def name(self) -> str:
        weights = ", EMA weights" if self.ema else ""
        return f"{self.cfg.model.name} on {self.cfg.data.name} ({self.path.name}, step {self.step}{weights})"


def load_run(path: str | Path, device: str | torch.device = "cpu") -> Run:
    """A run folder or checkpoint -> the model rebuilt from its saved config and weights, in eval mode."""
    from genlab.models import build_model

    checkpoint = find_checkpoint(path)
    state = load_checkpoint(checkpoint)
    cfg = OmegaConf.create(state["config"])
    if "spec" in state:
        spec = DataSpec(**state["spec"])
    else:  # older checkpoints kept no DataSpec: ask the dataset, which must then still be there
        from genlab.data import build_data

        spec = build_data(cfg.data, cfg.train.batch_size, cfg.train.seed, torch.device("cpu")).spec
    model = build_model(cfg, spec)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise GenlabError(f"{checkpoint} does not fit the {cfg.model.name} this genlab builds from its config "
                          f"({str(err).splitlines()[0]}); was it written by another genlab version?") from None
    model.load_extra_state(state.get("extra", {}))
    if state.get("ema"):  # a run trained with train.ema draws with its averaged weights
        from genlab.ema import build_ema

        ema = build_ema(model, state["ema"]["decay"])
        ema.load_state_dict(state["ema"])
        ema.copy_to_networks()
    model.to(device).eval()
    # a checkpoint inside <run>/checkpoints/ belongs to that run; a loose one, to its own folder
    folder = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    return Run(folder, checkpoint, cfg, spec, model, int(state.get("step", 0)), bool(state.get("ema")))


def is_run(path: Path) -> bool:
    return (path / "checkpoints" / "last.pt").is_file() or (path.is_file() and path.suffix == ".pt")


def conform(images: torch.Tensor, channels: int, size: int) -> torch.Tensor:
    """[-1, 1] images of any size and 1 or 3 channels -> the channels and size a model was trained on."""
    if images.shape[1] != channels:
        if channels == 1:
            weights = torch.tensor([0.299, 0.587, 0.114], device=images.device).view(1, 3, 1, 1)
            images = (images * weights).sum(dim=1, keepdim=True)
        else:
            images = images.expand(-1, 3, -1, -1)
    if images.shape[-1] != size or images.shape[-2] != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return images.clamp(-1, 1)


def read_images(sources: list[Path], channels: int, size: int, limit: int, seed: int = 0,
                labels=None) -> tuple[torch.Tensor, str]:
    """Images from image files, folders of them, or other runs (which draw `limit` new samples with `seed`).
    Returns up to `limit` images in [-1, 1] at the given channels and size, and a short name for the set."""
    from genlab.data.base import to_unit_range
    from genlab.data.folders import IMAGE_SUFFIXES, ImageFiles, list_images

    batches, names = [], []
    for source in sources:
        source = Path(source).expanduser()
        if not source.exists():
            raise GenlabError(f"{source} does not exist: pass image files, folders of images, or run folders")
        if is_run(source):
            run = load_run(source)
            try:
                images = run.model.sample(limit, generator=torch.Generator().manual_seed(seed), labels=labels)
            except GenlabError as err:
                raise GenlabError(f"cannot draw samples from {source}: {err}") from None
            batches.append(conform(images.float(), channels, size))
            names.append(f"{run.cfg.model.name}_samples")
            continue
        if source.is_dir():
            files = list_images(source)
            if not files:
                raise GenlabError(f"no images in {source} ({', '.join(sorted(IMAGE_SUFFIXES))})")
        elif source.suffix.lower() in IMAGE_SUFFIXES:
            files = [source]
        else:
            raise GenlabError(f"{source} is not an image ({', '.join(sorted(IMAGE_SUFFIXES))}), a folder or a run")
        dataset = ImageFiles(files[:limit], [0] * len(files[:limit]), size, channels)
        batches.append(to_unit_range(torch.stack([dataset[i][0] for i in range(len(dataset))])))
        names.append(source.stem if source.is_file() else (source.resolve().name or "images"))
    images = torch.cat(batches)[:limit]
    return images, "+".join(dict.fromkeys(names))


def parse_labels(text: str | None, model: GenerativeModel) -> list[int] | None:
    """--labels "0,1,2" -> [0, 1, 2], checked against what the model can be asked for."""
    if text is None:
        return None
    try:
        labels = [int(part) for part in text.replace(" ", "").split(",") if part != ""]
    except ValueError:
        raise GenlabError(f"--labels must be class numbers separated by commas, e.g. 0,1,2; got {text!r}") from None
    if not labels:
        raise GenlabError("--labels is empty: pass class numbers separated by commas, e.g. 0,1,2")
    if model.label_values == 0:
        raise GenlabError(f"this {type(model).__name__} takes no labels: leave out --labels")
    bad = [k for k in labels if not 0 <= k < model.label_values]
    if bad:
        raise GenlabError(f"--labels {bad} out of range: this model takes 0 to {model.label_values - 1}")
    return labels


def generate(model: GenerativeModel, n: int, seed: int, labels: list[int] | None, batch: int = 500):
    """n samples in batches of `batch` (bounded memory); the same (seed, n, labels) give the same images.
    Labels cycle through `labels`, or through every value the model takes. Yields ([-1, 1] CPU images, labels)."""
    generator = torch.Generator().manual_seed(seed)
    wanted = None
    if labels is not None or model.label_values:
        cycle = torch.tensor(labels if labels is not None else list(range(model.label_values)))
        wanted = cycle.repeat((n + len(cycle) - 1) // len(cycle))[:n]
    for start in range(0, n, batch):
        size = min(batch, n - start)
        part = None if wanted is None else wanted[start : start + size]
        # each batch its own generator, seeded in turn from the seed's stream
        batch_generator = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
        images = model.sample(size, generator=batch_generator, labels=part)
        yield images.float().cpu(), part


def write_png_folder(batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]], out: Path,
                     total: int | None = None) -> int:
    """One PNG per image ([-1, 1] batches, optional labels -> 000000_class3.png) into a new or empty folder
    `out`, all or nothing (see write_named_pngs). Returns the count."""

    def named():
        index = 0
        for images, labels in batches:
            for i, image in enumerate(images):
                yield f"{index:06d}" + (f"_class{int(labels[i])}" if labels is not None else "") + ".png", image
                index += 1

    return write_named_pngs(named(), out, total)


def to_pil(image: torch.Tensor):
    """One [-1, 1] CHW image -> a PIL image (L or RGB)."""
    from PIL import Image

    array = image.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def write_named_pngs(items: Iterable[tuple[str, torch.Tensor]], out: Path, total: int | None = None) -> int:
    """(file name, [-1, 1] CHW image) pairs as PNGs into a new or empty folder `out`, all or nothing: files go
    to a hidden sibling folder that is renamed to `out` at the end. Returns the count. zlib level 1 (still
    lossless) saves a little time over PIL's default."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GenlabError(f"{out} already exists and is not an empty folder: pass a new folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as err:
        raise GenlabError(f"cannot write beside {out} ({err.strerror or err}); pass -o SOMEWHERE/WRITABLE") from None
    from genlab.progress import bar

    index = 0
    try:
        with bar(f"writing {out.name}/", total=total, unit="images") as advance:
            for name, image in items:
                to_pil(image).save(staging / name, compress_level=1)
                index += 1
                advance(1)
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except OSError as err:
        raise GenlabError(f"writing the images failed ({err.strerror or err}); {out} was not made") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return index


def translate_image(model: GenerativeModel, image: torch.Tensor, direction: str) -> tuple[torch.Tensor, str]:
    """One [-1, 1] CHW image of any size through a translation model. A network that needs sides divisible by
    `model.size_multiple` gets the image padded by reflection to the next multiple, and its output cropped back
    to the input's size. Returns (the output image, what was done to fit it, or "")."""
    import torch.nn.functional as F

    multiple = int(getattr(model, "size_multiple", 1))
    smallest = -(-int(getattr(model, "min_size", 1)) // multiple) * multiple
    height, width = image.shape[-2:]
    pad_h = max(smallest, height + (-height) % multiple) - height
    pad_w = max(smallest, width + (-width) % multiple) - width
    x = image[None].float()
    how = ""
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        how = f"padded {width}x{height} to {width + pad_w}x{height + pad_h} ({mode}; the network takes multiples " \
              f"of {multiple}" + (f", at least {smallest}" if smallest > multiple else "") + ") and cropped back"
    out = model.translate(x, direction=direction)
    return out[0, :, :height, :width].cpu(), how
