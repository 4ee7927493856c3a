"""`genlab translate`: one output image per input, through a translation run."""

from __future__ import annotations

from pathlib import Path

from genlab.app.commands.common import TRANSLATE_PIXELS, _device, _output_area
from genlab.core import files as writes
from genlab.core.errors import GenlabError
from genlab.core.files import atomic_write
from genlab.data.folders import IMAGE_SUFFIXES, list_images, open_image
from genlab.models.capabilities import Translates
from genlab.train.runs import load_run, to_pil, translate_image, write_named_pngs


def run(run, source, out, direction, seed, overwrite, device) -> None:
    import torch

    if direction not in ("AtoB", "BtoA"):
        raise GenlabError(f"--direction must be AtoB or BtoA, got {direction!r}")
    device = _device(device)
    target = load_run(run, device)
    model = target.model
    if target.spec.kind == "superres":
        raise GenlabError(f"{run} is a {target.cfg.model.name} run, which up-scales images: use `genlab upscale "
                          f"{run} {source} {out}`")
    if not isinstance(model, Translates) or target.spec.kind not in ("paired", "unpaired"):
        raise GenlabError(f"{run} is a {target.cfg.model.name} run, which does not translate images: pass a pix2pix "
                          "or cyclegan run")
    side = "a" if direction == "AtoB" else "b"
    channels = target.spec.shape(side)[0]
    files = _image_inputs(source, out, overwrite, target)
    source = source.expanduser()
    import numpy as np

    notes = set()
    torch.manual_seed(seed)  # pix2pix keeps dropout on at test time (model.dropout_at_test)

    def outputs():
        for path in files:
            image = open_image(path, "RGB" if channels == 3 else "L", max_pixels=TRANSLATE_PIXELS,
                               why="pixels to translate in one piece")
            array = np.asarray(image, dtype=np.uint8)
            pixels = torch.from_numpy((array[None] if array.ndim == 2 else array.transpose(2, 0, 1)).copy())
            result, how = translate_image(model, pixels.float().div(127.5).sub(1), direction)
            if how:
                notes.add(how)
            yield f"{path.stem}.png", result

    count = _write_outputs(source, out, outputs(), len(files))
    for note in sorted(notes)[:3]:
        print(note)
    if len(notes) > 3:
        print(f"... and {len(notes) - 3} more images padded the same way")
    print(f"wrote {count} image{'s' if count != 1 else ''} to {out} ({target.name}, {direction})")


def _image_inputs(source: Path, out: Path, overwrite: bool, target) -> list[Path]:
    """The image files a translate/upscale command reads, and the checks on OUTPUT that go with them (it may
    replace an existing file only with --overwrite)."""

    source = source.expanduser()
    if source.is_dir():
        files = list_images(source)
        if not files:
            raise GenlabError(f"no images in {source} ({', '.join(sorted(IMAGE_SUFFIXES))})")
    elif source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES:
        files = [source]
    else:
        raise GenlabError(f"{source} is not an image ({', '.join(sorted(IMAGE_SUFFIXES))}) or a folder of images")
    if source.is_file() and out.suffix.lower() != ".png":
        raise GenlabError(f"one image makes one .png: pass OUTPUT as a file name ending in .png, not {out}")
    if source.is_dir() and out.suffix.lower() == ".png":
        raise GenlabError(f"a folder makes a folder: pass OUTPUT as a new folder, not {out}")
    if out.expanduser().resolve() in {f.resolve() for f in files} or out.expanduser().resolve() == source.resolve():
        raise GenlabError(f"{out} is an input: write the outputs somewhere else")
    if len({f.stem for f in files}) != len(files):
        raise GenlabError(f"{source} holds files with the same name and different suffixes: rename them first")
    _output_area(out, target, overwrite)
    writes.check_target(out.expanduser(), folder=source.is_dir())
    return files


def _write_outputs(source: Path, out: Path, outputs, total: int | None = None) -> int:
    """One image file in: OUTPUT.png written atomically; a folder in: a new folder, all or nothing."""

    if source.expanduser().is_file():
        (_, image), = list(outputs)
        try:
            atomic_write(out.expanduser(), lambda tmp: to_pil(image).save(tmp, format="PNG"))
        except OSError as err:
            raise GenlabError(f"cannot write {out} ({err.strerror or err})") from None
        return 1
    return write_named_pngs(outputs, out.expanduser(), total=total)
