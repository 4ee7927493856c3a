"""A finished (or interrupted) run as something to use: its config, its model with trained weights, and the
images that commands like `genlab reconstruct` feed it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from genlab.core import files
from genlab.core.checkpoint import find_checkpoint, load_checkpoint
from genlab.core.errors import GenlabError
from genlab.core.paths import config_dir, group_options
from genlab.core.progress import bar
from genlab.core.registry import DATASETS, LOSSES, MODELS
from genlab.core.tiles import settings
from genlab.data import DataSpec
from genlab.data.base import to_unit_range
from genlab.data.folders import IMAGE_SUFFIXES, ImageFiles, list_images
from genlab.models import GenerativeModel, build_model
from genlab.models.capabilities import Samples, refusal
from genlab.train.ema import build_ema


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
    """A run folder or checkpoint -> the model rebuilt from its saved config and weights, in eval mode. The
    checkpoint is data (genlab/core/checkpoint.py checks its fields): its config says how to rebuild the model, with
    the types genlab's own config gives each key, and the network it describes must have the very tensors the
    file holds before any memory is spent on it."""

    checkpoint = find_checkpoint(path)
    state = load_checkpoint(checkpoint)
    if "spec" not in state:
        raise GenlabError(f"{checkpoint} keeps no DataSpec (an older genlab wrote it), and genlab rebuilds a run "
                          "from its checkpoint alone, reading no data for it: continue it once with this genlab "
                          f"(genlab train ... train.resume={checkpoint}) to write a checkpoint that has one")
    cfg = run_config(state["config"], checkpoint)
    spec = DataSpec(**state["spec"])
    _check_fits(cfg, spec, state["model"], checkpoint)
    try:
        model = build_model(cfg, spec)
    except GenlabError as err:
        raise GenlabError(f"{checkpoint}: its config does not build a model ({err})") from None
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise GenlabError(f"{checkpoint} does not fit the {cfg.model.name} this genlab builds from its config "
                          f"({str(err).splitlines()[0]}); was it written by another genlab version?") from None
    try:
        model.load_extra_state(state.get("extra", {}))
    except GenlabError:
        raise
    except Exception as err:  # noqa: BLE001  (a family's own state: an image pool, ...)
        raise GenlabError(f"{checkpoint}: the checkpoint's extra state does not fit this {cfg.model.name} "
                          f"({type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''})") from None
    if state.get("ema"):  # a run trained with train.ema draws with its averaged weights

        try:
            ema = build_ema(model, state["ema"]["decay"])
        except GenlabError as err:
            raise GenlabError(f"{checkpoint}: the checkpoint's ema does not fit this model ({err})") from None
        ema.load_state_dict(state["ema"])
        ema.copy_to_networks()
    model.to(device).eval()
    # a checkpoint inside <run>/checkpoints/ belongs to that run; a loose one, to its own folder
    folder = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    return Run(folder, checkpoint, cfg, spec, model, int(state.get("step", 0)), bool(state.get("ema")))


def run_config(config: dict, checkpoint: Path) -> DictConfig:
    """A checkpoint's config, checked before anything is built from it: its model, data and loss are ones this
    genlab has; every model.*, loss.*, train.* and eval.* value has the type of genlab's own default for that
    key (keys it lacks take the default); and the model's own checks pass."""

    where = f"{checkpoint}: the checkpoint's config"
    name = config["model"]["name"]
    if name not in MODELS:
        raise GenlabError(f"{where} names model {name!r}, which this genlab does not have (it has "
                          f"{', '.join(MODELS.names())})")
    if config["data"]["name"] not in DATASETS:
        raise GenlabError(f"{where} names data {config['data']['name']!r}, which this genlab does not have")
    adversarial = MODELS[name].adversarial
    loss = (config.get("loss") or {}).get("name", "nonsaturating") if adversarial else None
    if adversarial and loss not in LOSSES:
        raise GenlabError(f"{where} names loss {loss!r}, which this genlab does not have")
    reference = _reference_config(name, config["data"]["name"], loss)
    merged = {k: v for k, v in config.items() if adversarial or k != "loss"}  # (an older run's unused loss)
    if reference is not None:
        for section in ("model", "loss", "train", "eval") if adversarial else ("model", "train", "eval"):
            merged[section] = _typed_section(section, reference.get(section) or {}, config.get(section), where)
    cfg = OmegaConf.create(merged)
    model = MODELS[name]
    try:
        model.check_config(cfg)

        settings(cfg)
    except GenlabError as err:
        raise GenlabError(f"{where} is not one genlab would train: {err}") from None
    for key in ("train.batch_size", "train.seed"):
        value = OmegaConf.select(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) >= 2**62:
            raise GenlabError(f"{where}'s {key} must be a whole number, got {value!r}")
    return cfg


def _reference_config(model: str, data: str, loss: str | None) -> dict | None:
    """genlab's own defaults for this model, data and loss, and the root train.* and eval.* (their keys and their
    types), read from the YAML files without composing (this also runs inside a training job); None where genlab
    has no option of that name (a model a test registered)."""

    if model not in group_options("model") or (loss is not None and loss not in group_options("loss")):
        return None
    root = OmegaConf.to_container(OmegaConf.load(config_dir() / "config.yaml"), resolve=False)
    out = {"train": root.get("train", {}), "eval": root.get("eval", {}), "model": _option("model", model)}
    if loss is not None:
        out["loss"] = _option("loss", loss)
    if data in group_options("data"):
        out["data"] = _option("data", data)
    return out


def _option(group: str, name: str) -> dict:
    """One option's own keys: a plain YAML, or a `@package _global_` one that keeps them under its group."""

    path = config_dir() / group / f"{name}.yaml"
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
    if "@package _global_" in path.read_text().split("\n", 1)[0]:
        raw = raw.get(group, {}) or {}
    return {k: v for k, v in raw.items() if k != "defaults"}


def _typed_section(section: str, reference: dict, given, where: str) -> dict:
    if given is None:
        return reference
    if not isinstance(given, dict):
        raise GenlabError(f"{where}'s {section} must be a mapping, got {type(given).__name__}")
    out = dict(reference)
    for key, value in given.items():
        default = reference.get(key)
        if isinstance(default, dict) or default is None or key not in reference:
            out[key] = value  # a key the model reads by itself (checked by its own check_config), or unknown
            continue
        ok = (isinstance(value, bool) if isinstance(default, bool) else
              isinstance(value, int) and not isinstance(value, bool) if isinstance(default, int) else
              isinstance(value, (int, float)) and not isinstance(value, bool) if isinstance(default, float) else
              isinstance(value, str) if isinstance(default, str) else
              isinstance(value, list) if isinstance(default, list) else True)
        if not ok and value is not None:
            kind = {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
                    list: "a list"}.get(type(default), type(default).__name__)
            raise GenlabError(f"{where}'s {section}.{key} must be {kind} (as genlab's default, {default!r}); got "
                              f"{value!r}")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 1 << 40:
            raise GenlabError(f"{where}'s {section}.{key}={value} is out of any sensible range")
        out[key] = value
    return out


def _check_fits(cfg: DictConfig, spec: DataSpec, weights: dict, checkpoint: Path) -> None:
    """Build the model on the meta device (no memory) and compare its tensors with the file's: a config that asks
    for a huge network, or weights of another one, is one line before anything is allocated. A family that
    cannot build on the meta device is checked by the real load instead."""
    import warnings

    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a loss network loaded into the meta probe is a no-op there
            probe = build_model(cfg, spec)
        expected = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    except GenlabError as err:
        raise GenlabError(f"{checkpoint}: its config does not build a model ({err})") from None
    except Exception:  # noqa: BLE001  (an op the meta device lacks)
        return
    given = {k: tuple(v.shape) for k, v in weights.items()}
    if expected != given:
        missing = sorted(set(expected) - set(given))
        extra = sorted(set(given) - set(expected))
        if missing:
            first = f"{missing[0]} is missing"
        elif extra:
            first = f"{extra[0]} is not in the model"
        else:
            key = next(k for k in expected if expected[k] != given[k])
            first = f"{key} is {list(given[key])} in the file, {list(expected[key])} in the model"
        raise GenlabError(f"{checkpoint} does not fit the {cfg.model.name} its own config describes ({first}): it "
                          "was not written by genlab, or by another version of it")


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
    if not isinstance(model, Samples):
        raise GenlabError(refusal(model, Samples, type(model).__name__))
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
    """(file name, [-1, 1] CHW image) pairs as PNGs into `out` (new or empty, or with --overwrite an existing
    folder), all or nothing: files go to a hidden sibling folder that is moved in at the end (genlab/core/files.py).
    Returns the count. zlib level 1 (still lossless) saves a little time over PIL's default."""

    files.check_target(out, folder=True)
    try:
        staging = files.stage_folder(out)
    except OSError as err:
        raise GenlabError(f"cannot write beside {out} ({err.strerror or err}); pass -o SOMEWHERE/WRITABLE") from None

    index = 0
    try:
        with bar(f"writing {out.name}/", total=total, unit="images") as advance:
            for name, image in items:
                files.write(staging / name, lambda tmp, image=image: to_pil(image).save(tmp, format="PNG",
                                                                                        compress_level=1))
                index += 1
                advance(1)
        files.publish_folder(staging, out)
    except OSError as err:
        raise GenlabError(f"writing the images failed ({err.strerror or err}); {out} was not made") from None
    finally:
        files.discard(staging)
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
