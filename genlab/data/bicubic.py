"""Bicubic resizing as MATLAB's imresize does it: the kernel and the conventions published SR numbers use.

Super-resolution papers make their LR images, and their bicubic baselines, with MATLAB's `imresize(I, 1/4,
'bicubic')`. Three things set it apart from the resizers Python users reach for:
  - the cubic kernel has a = -0.5 (Keys); torch's `F.interpolate(mode="bicubic")` uses a = -0.75;
  - when shrinking, the kernel is stretched by 1/scale (antialiasing: 16 taps wide at x1/4), and its taps are
    normalised to sum to 1 at every output pixel;
  - beyond the border the image is mirrored (symmetric padding, the edge pixel repeated once).
PIL's BICUBIC also uses a = -0.5 and a stretched kernel, but clamps at the border and works in 8 bits per pass;
torch's antialiased bicubic keeps a = -0.75. `benchmarks/sr_bicubic.py` measures how far each is from this one in
dB on the same photos (docs/superres.md gives the numbers).

Here a resize along one side is a matrix (output pixels x input pixels) built once, and an image is resized as
M_h @ X @ M_w^T in float64, rounded only at the end (MATLAB rounds a uint8 image after each side: a difference
of at most one level, at rounding ties).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch


def cubic(x: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    """Keys' cubic convolution kernel (a = -0.5: MATLAB's and PIL's bicubic)."""
    ax = x.abs()
    near = ((a + 2) * ax - (a + 3)) * ax * ax + 1
    far = ((a * ax - 5 * a) * ax + 8 * a) * ax - 4 * a
    return torch.where(ax <= 1, near, torch.where(ax <= 2, far, torch.zeros_like(ax)))


@lru_cache(maxsize=64)
def resize_matrix(n_in: int, n_out: int, antialias: bool = True) -> torch.Tensor:
    """The [n_out, n_in] float64 matrix that resizes one side from n_in to n_out pixels, MATLAB's way: output
    pixel i (1-based) sits at u = i / s + (1 - 1 / s) / 2 in input coordinates (s = n_out / n_in); its taps are
    the input pixels within the kernel's reach, weighted by the kernel (stretched by 1/s when shrinking),
    normalised, with indices past the border mirrored back in."""
    scale = n_out / n_in
    stretch = scale < 1 and antialias
    width = 4.0 / scale if stretch else 4.0
    centre = torch.arange(1, n_out + 1, dtype=torch.float64) / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(centre - width / 2)
    taps = math.ceil(width) + 2
    index = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]
    distance = centre[:, None] - index
    weights = scale * cubic(scale * distance) if stretch else cubic(distance)
    weights = weights / weights.sum(1, keepdim=True)
    # symmetric padding: ..., 2, 1 | 1, 2, ..., n | n, n-1, ... (1-based), as MATLAB's imresize
    zero_based = index.long() - 1
    period = 2 * n_in
    folded = zero_based % period
    folded = torch.where(folded >= n_in, period - 1 - folded, folded)
    matrix = torch.zeros(n_out, n_in, dtype=torch.float64)
    matrix.scatter_add_(1, folded, weights)
    return matrix


def imresize(images: torch.Tensor, size: tuple[int, int], antialias: bool = True) -> torch.Tensor:
    """[..., H, W] float images (any range) -> [..., size[0], size[1]] in float64, MATLAB bicubic. Not rounded."""
    height, width = images.shape[-2:]
    rows = resize_matrix(height, size[0], antialias).to(images.device)
    cols = resize_matrix(width, size[1], antialias).to(images.device)
    return rows @ images.to(torch.float64) @ cols.T


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    return images.round().clamp_(0, 255).to(torch.uint8)


RESIZERS = ("matlab", "torch")


def downscale(hr: torch.Tensor, scale: int, method: str = "matlab") -> torch.Tensor:
    """uint8 HR [..., H, W] (sides multiples of scale) -> uint8 LR, rounded to 8 bits as a stored LR image is.
    matlab: imresize(HR, 1/scale, 'bicubic'), what published numbers use; torch: F.interpolate's antialiased
    bicubic (a = -0.75), faster on a GPU and a little sharper."""
    size = (hr.shape[-2] // scale, hr.shape[-1] // scale)
    if method == "matlab":
        return to_uint8(imresize(hr, size))
    if method == "torch":
        import torch.nn.functional as F

        flat = hr.reshape(-1, *hr.shape[-3:]) if hr.ndim >= 3 else hr[None, None]
        low = F.interpolate(flat.float(), size=size, mode="bicubic", antialias=True, align_corners=False)
        return to_uint8(low).reshape(*hr.shape[:-2], *size)
    raise ValueError(f"unknown resize method {method!r}: one of {', '.join(RESIZERS)}")


def upscale_bicubic(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """[..., h, w] (any range, float) -> [..., h * scale, w * scale] float64, MATLAB's bicubic: the baseline
    every SR table prints beside its model."""
    return imresize(lr, (lr.shape[-2] * scale, lr.shape[-1] * scale))
