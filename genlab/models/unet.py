"""The U-Net of DDPM (Ho et al. 2020, appendix B): the diffusion family's noise predictor.

A PixelCNN++-style U-Net: sinusoidal time embedding through two dense layers; at each resolution `res_blocks`
residual blocks (GroupNorm, swish, 3x3 conv, the time embedding added, GroupNorm, swish, dropout, 3x3 conv; a 1x1
projection on the skip where the width changes), self-attention after each block at the resolutions in
`attention` (16x16 in the paper), a strided conv down between resolutions; a middle of block, attention, block;
the way up mirrors it with one more block per resolution, each fed the skip of the way down, and nearest-neighbour
up-sampling with a conv. Widths are `channels * channel_mult[level]`. The paper's CIFAR-10 net (128, (1, 2, 2, 2),
2 blocks, attention at 16, dropout 0.1) has 35.7M parameters. A class label (classifier-free guidance) is an
embedding added to the time embedding; the label `n_classes` is the "no label" of the unconditional model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """The Transformer's sinusoids of the step, [N] -> [N, dim] (sin, then cos), as in DDPM's code."""
    half = dim // 2
    scale = math.log(10000) / (half - 1)
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * -scale)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


def zero(module: nn.Module) -> nn.Module:
    """The last layer of a residual branch starts at zero (the paper's init_scale=0): each block starts as identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, temb: int, dropout: float, groups: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.temb = nn.Linear(temb, c_out)
        self.norm2, self.drop = nn.GroupNorm(groups, c_out), nn.Dropout(dropout)
        self.conv2 = zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    """Single-head self-attention over the pixels, residual (q, k, v and the output are 1x1 dense layers)."""

    def __init__(self, c: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)  # three 1x1 dense layers in one
        self.out = zero(nn.Conv2d(c, c, 1))

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, c, h * w).unbind(1)
        attended = F.scaled_dot_product_attention(q.transpose(1, 2)[:, None], k.transpose(1, 2)[:, None],
                                                  v.transpose(1, 2)[:, None])[:, 0]
        return x + self.out(attended.transpose(1, 2).reshape(n, c, h, w))


class Level(nn.Module):
    """The blocks of one resolution on one side of the U, with attention after each where it applies."""

    def __init__(self, widths: list[tuple[int, int]], temb: int, dropout: float, groups: int, attend: bool):
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(a, b, temb, dropout, groups) for a, b in widths)
        self.attention = nn.ModuleList(Attention(b, groups) if attend else nn.Identity() for _, b in widths)


class UNet(nn.Module):
    def __init__(self, image_channels: int, size: int, channels: int = 128, channel_mult=(1, 2, 2, 2),
                 res_blocks: int = 2, attention=(16,), dropout: float = 0.1, groups: int = 32, n_classes: int = 0):
        super().__init__()
        self.channels, self.n_classes = channels, n_classes
        temb = 4 * channels
        self.time = nn.Sequential(nn.Linear(channels, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.label = nn.Embedding(n_classes + 1, temb) if n_classes else None  # + the "no label" of guidance
        self.conv_in = nn.Conv2d(image_channels, channels, 3, padding=1)
        self.down, self.downsample, skips = nn.ModuleList(), nn.ModuleList(), [channels]
        width, resolution = channels, size
        for i, mult in enumerate(channel_mult):
            widths = []
            for _ in range(res_blocks):
                widths.append((width, channels * mult))
                width = channels * mult
                skips.append(width)
            self.down.append(Level(widths, temb, dropout, groups, resolution in attention))
            last = i == len(channel_mult) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(width, width, 3, stride=2, padding=1))
            if not last:
                skips.append(width)
                resolution //= 2
        self.middle = Level([(width, width), (width, width)], temb, dropout, groups, False)
        self.middle_attention = Attention(width, groups)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, mult in reversed(list(enumerate(channel_mult))):
            widths = []
            for _ in range(res_blocks + 1):
                widths.append((width + skips.pop(), channels * mult))
                width = channels * mult
            self.up.append(Level(widths, temb, dropout, groups, resolution in attention))
            self.upsample.append(nn.Conv2d(width, width, 3, padding=1) if i else nn.Identity())
            resolution *= 2 if i else 1
        self.norm_out = nn.GroupNorm(groups, width)
        self.conv_out = zero(nn.Conv2d(width, image_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        temb = self.time(timestep_embedding(t, self.channels))
        if self.label is not None:
            if labels is None:  # no label at all: the unconditional model
                labels = torch.full((len(x),), self.n_classes, dtype=torch.long, device=x.device)
            temb = temb + self.label(labels)
        h = self.conv_in(x)
        hs = [h]
        for level, down in zip(self.down, self.downsample):
            for block, attend in zip(level.blocks, level.attention):
                h = attend(block(h, temb))
                hs.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                hs.append(h)
        h = self.middle.blocks[1](self.middle_attention(self.middle.blocks[0](h, temb)), temb)
        for level, up in zip(self.up, self.upsample):
            for block, attend in zip(level.blocks, level.attention):
                h = attend(block(torch.cat([h, hs.pop()], dim=1), temb))
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))
