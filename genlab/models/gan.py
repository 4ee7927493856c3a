"""DCGAN (Radford et al. 2016), exactly as the CelebA lab sheet at 64x64 and the same design at other sizes."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from genlab.core.config import check_choice, check_int
from genlab.core.errors import GenlabError
from genlab.core.registry import MODELS
from genlab.models.base import GenerativeModel, init_dcgan_weights
from genlab.models.blocks import GAN_CURVES, adversarial_step, discriminator_norm, norm_layer
from genlab.models.capabilities import Samples


def _stages(size: int) -> int:
    """Number of x2 stages between 4x4 and size x size (64 -> 4, 32 -> 3, 128 -> 5)."""
    stages = round(math.log2(size)) - 2
    if size < 16 or 2 ** (stages + 2) != size:
        raise GenlabError(f"dcgan needs data.size to be a power of two >= 16, got {size}: pass e.g. data.size=32")
    return stages


class DCGANGenerator(nn.Module):
    """z (nz x 1 x 1) -> ConvT 4x4 s1 p0 to 4x4 -> [ConvT 4x4 s2 p1, BN, ReLU] ... -> ConvT to channels, tanh.

    At 64x64: 100 -> 1024 x 4 -> 512 x 8 -> 256 x 16 -> 128 x 32 -> 3 x 64 with ngf=128 as in the paper,
    or 512/256/128/64 with the lab sheet's ngf=64. The widest layer has ngf * 2^(stages-1) channels.
    """

    def __init__(self, nz: int, ngf: int, channels: int, size: int):
        super().__init__()
        stages = _stages(size)
        width = ngf * 2 ** (stages - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(nz, width, 4, 1, 0, bias=False), nn.BatchNorm2d(width), nn.ReLU(True),
        ]
        for _ in range(stages - 1):
            layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width // 2),
                       nn.ReLU(True)]
            width //= 2
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], -1, 1, 1))


class DCGANDiscriminator(nn.Module):
    """image -> Conv 4x4 s2 p1, LeakyReLU(0.2) -> [Conv 4x4 s2 p1, BN, LeakyReLU(0.2)] ... -> Conv 4x4 s1 p0 -> logit.

    No normalisation on the input layer; no sigmoid (the loss applies its own link, see genlab.models.losses).
    norm: batch (the paper), layer (per-sample, as a WGAN-GP critic needs) or none.
    """

    def __init__(self, ndf: int, channels: int, size: int, norm: str = "batch"):
        super().__init__()
        stages = _stages(size)
        width = ndf
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for _ in range(stages - 1):
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=norm == "none"), norm_layer(norm, width * 2),
                       nn.LeakyReLU(0.2, True)]
            width *= 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(width, 1, 4, 1, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).flatten()


@MODELS.register("dcgan")
class DCGAN(GenerativeModel, Samples):
    adversarial = True
    default_optim: ClassVar[dict] = {"lr": 2e-4, "betas": (0.5, 0.999)}
    ema_networks = ("g",)  # the generator draws the samples
    curve_groups = GAN_CURVES

    @staticmethod
    def check_config(cfg) -> None:
        for key in ("nz", "ngf", "ndf"):
            check_int(cfg, f"model.{key}", minimum=1)
        if "d_norm" in cfg.model:
            check_choice(cfg, "model.d_norm", ("auto", "batch", "layer", "none"))
        _stages(check_int(cfg, "data.size"))

    def __init__(self, cfg, spec, loss):
        super().__init__()
        self.nz = int(cfg.nz)
        self.loss = loss
        self.generator = DCGANGenerator(self.nz, int(cfg.ngf), spec.channels, spec.size)
        self.discriminator = DCGANDiscriminator(int(cfg.ndf), spec.channels, spec.size,
                                                norm=discriminator_norm(cfg, loss))
        self.apply(init_dcgan_weights)

    def networks(self):
        return {"g": self.generator, "d": self.discriminator}

    def training_step(self, batch, step):
        real = batch["image"]
        z = torch.randn(real.shape[0], self.nz, device=real.device)
        with self.autocast():
            fake = self.generator(z)
        # D on a real batch and on a fake batch, then G against the updated D (the lab sheet's order).
        return adversarial_step(self, real, fake, step, self.discriminator, self.loss)

    @torch.no_grad()
    def sample(self, n, *, generator=None, labels=None):
        with self.evaluating():
            z = torch.randn(n, self.nz, generator=generator).to(self.device)
            images = self.generator(z).float()
        return images

    @torch.no_grad()
    def visuals(self, batch):
        return {"samples": self.sample(batch.size, generator=torch.Generator().manual_seed(0))}


