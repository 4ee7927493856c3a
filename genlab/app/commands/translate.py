"""`genlab translate`: one output image per input, through a translation run."""

from __future__ import annotations

from genlab.app.commands.bounds import TRANSLATE_PIXELS
from genlab.app.commands.common import device_for, image_inputs, write_outputs
from genlab.core.errors import GenlabError
from genlab.data.folders import open_image
from genlab.models.capabilities import Translates
from genlab.train.runs import load_run, translate_image


def run(run, source, out, direction, seed, overwrite, device) -> None:
    import torch

    if direction not in ("AtoB", "BtoA"):
        raise GenlabError(f"--direction must be AtoB or BtoA, got {direction!r}")
    device = device_for(device)
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
    files = image_inputs(source, out, overwrite, target)
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

    count = write_outputs(source, out, outputs(), len(files))
    for note in sorted(notes)[:3]:
        print(note)
    if len(notes) > 3:
        print(f"... and {len(notes) - 3} more images padded the same way")
    print(f"wrote {count} image{'s' if count != 1 else ''} to {out} ({target.name}, {direction})")


