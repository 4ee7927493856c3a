"""Whole images of any size through a convolutional generator in bounded memory: overlapping tiles.

Each tile is a `tile` x `tile` block of the input with `overlap` pixels of the image around it as context; the
network runs on the tile and its context, and only the block's own output is kept. A convolutional network
whose output pixel depends on input pixels at most r away (its receptive radius) gives, with overlap >= r,
exactly what it gives on the whole image: each kept output pixel sees the same inputs either way. A model
states r as `receptive_radius` (in input pixels) and `output_scale` (output pixels per input pixel); a model
without a radius (the U-Net sees its whole input) always runs whole.

Settings: `eval.tile` (input pixels per tile side; null = whole images) and `eval.tile_overlap` (null = the
model's receptive radius, so tiled equals untiled), read by `genlab eval`, `genlab upscale` and `genlab translate`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from genlab.core.errors import GenlabError


def tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, scale: int, tile: int | None,
          overlap: int) -> torch.Tensor:
    """fn(x) for x [N, C, H, W] whose output is [N, C', scale H, scale W], computed tile by tile."""
    height, width = x.shape[-2:]
    if tile is None or (height <= tile and width <= tile):
        return fn(x)
    out = None
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            t0, l0 = max(0, top - overlap), max(0, left - overlap)
            t1, l1 = min(height, bottom + overlap), min(width, right + overlap)
            y = fn(x[..., t0:t1, l0:l1])
            if out is None:
                out = y.new_empty(*y.shape[:-2], height * scale, width * scale)
            out[..., top * scale : bottom * scale, left * scale : right * scale] = \
                y[..., (top - t0) * scale : (bottom - t0) * scale, (left - l0) * scale : (right - l0) * scale]
    return out


def settings(cfg, tile=None, overlap=None) -> tuple[int | None, int | None]:
    """(tile, overlap) from explicit values, else the run's eval.* (defaults: 128, the receptive radius)."""
    section = cfg.get("eval") or {}
    tile = tile if tile is not None else section.get("tile", 128)
    overlap = overlap if overlap is not None else section.get("tile_overlap")
    for name, value in (("eval.tile", tile), ("eval.tile_overlap", overlap)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < (1 if name ==
                                                                                                  "eval.tile" else 0)):
            raise GenlabError(f"{name} must be a whole number of pixels ({'1' if name == 'eval.tile' else '0'} or "
                              f"more; null = {'whole images' if name == 'eval.tile' else 'the receptive radius'}), "
                              f"got {value!r}")
    return tile, overlap


def translate(model, x: torch.Tensor, direction: str = "AtoB", tile: int | None = None,
              overlap: int | None = None) -> torch.Tensor:
    """model.translate(x) in tiles where the model states a receptive radius, else whole."""
    def run(part):  # a one-way translator may define translate(x) alone
        return model.translate(part) if direction == "AtoB" else model.translate(part, direction=direction)

    radius = getattr(model, "receptive_radius", None)
    if radius is None or tile is None:
        return run(x)
    return tiled(run, x, int(getattr(model, "output_scale", 1)), tile, radius if overlap is None else overlap)
