"""`genlab upscale`: images of any size through a super-resolution run, whole or in tiles."""

from __future__ import annotations

from genlab.app.commands.bounds import UPSCALE_PIXELS
from genlab.app.commands.common import device_for, image_inputs, write_outputs
from genlab.core import tiles
from genlab.core.errors import GenlabError
from genlab.data.superres import read_hr
from genlab.models.capabilities import Upscales
from genlab.train.runs import load_run


def run(run, source, out, tile, tile_overlap, whole, overwrite, device) -> None:
    import torch

    device = device_for(device)
    target = load_run(run, device)
    model = target.model
    if target.spec.kind != "superres" or not isinstance(model, Upscales):
        raise GenlabError(f"{run} is a {target.cfg.model.name} run, which does not up-scale images: pass an srresnet "
                          "or srgan run" + (" (translate images with `genlab translate`)" if target.spec.kind in
                                            ("paired", "unpaired") else ""))
    files = image_inputs(source, out, overwrite, target)
    size, overlap = tiles.settings(target.cfg, tile, tile_overlap)
    size = None if whole else size
    channels = target.spec.shape("lr")[0]

    def outputs():
        for path in files:
            pixels = read_hr(path, channels, max_pixels=UPSCALE_PIXELS, why="pixels to up-scale")
            x = pixels.float().div(127.5).sub(1)[None]
            with torch.no_grad():
                result = tiles.translate(model, x, tile=size, overlap=overlap)
            yield f"{path.stem}.png", result[0].cpu()

    count = write_outputs(source, out, outputs(), len(files))
    how = "whole" if size is None else f"tiles of {size} px, {model.receptive_radius if overlap is None else overlap} " \
                                       "px of context"
    print(f"wrote {count} image{'s' if count != 1 else ''} x{model.output_scale} to {out} ({target.name}, {how})")
