"""Conditional GAN (Mirza & Osindero) as the CIFAR-10 report builds it: the label joins z in G and joins the
image features in D, before D's dense layers."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from genlab.core.config import check_choice, check_int
from genlab.core.errors import GenlabError
from genlab.core.figures import CLASS_ROWS, family_figures, visual_figures
from genlab.core.registry import MODELS
from genlab.models.base import GenerativeModel, init_dcgan_weights
from genlab.models.blocks import (
    GAN_CURVES,
    LabelCode,
    adversarial_step,
    class_rows,
    discriminator_norm,
    norm_layer,
    require_labels,
    sample_labels,
)
from genlab.models.capabilities import Samples


class CGANGenerator(nn.Module):
    """[z, label] -> Dense to 512 x (size/16)^2 -> 4 x [ConvT 4x4 s2, BN, LeakyReLU] (the last: to channels, tanh)."""

    def __init__(self, nz: int, label_dim: int, channels: int, size: int, width: int = 512):
        super().__init__()
        self.side = size // 16
        self.width = width
        self.fc = nn.Sequential(nn.Linear(nz + label_dim, width * self.side**2), nn.BatchNorm1d(width * self.side**2),
                                nn.LeakyReLU(0.2, True))
        layers: list[nn.Module] = []
        for _ in range(3):
            layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1), nn.BatchNorm2d(width // 2),
                       nn.LeakyReLU(0.2, True)]
            width //= 2
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, code], dim=1))
        return self.net(h.view(len(z), self.width, self.side, self.side))


class CGANDiscriminator(nn.Module):
    """image -> 4 x [Conv 4x4 s2, norm, LeakyReLU] -> flatten, concat label -> Dense 512 ReLU -> Dense 1.

    label_channels: also give the label code to the first conv as constant maps, so D can tie image features
    to the label from the start (the report's D sees it only before the dense layers).
    """

    def __init__(self, label_dim: int, channels: int, size: int, width: int = 64, norm: str = "batch",
                 label_channels: bool = False):
        super().__init__()
        self.label_channels = label_channels
        layers: list[nn.Module] = []
        c_in = channels + (label_dim if label_channels else 0)
        for i in range(4):
            layers += [nn.Conv2d(c_in, width, 4, 2, 1), norm_layer(norm, width) if i else nn.Identity(),
                       nn.LeakyReLU(0.2, True)]
            c_in, width = width, width * 2
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Sequential(nn.Linear(c_in * (size // 16) ** 2 + label_dim, 512), nn.ReLU(True),
                                  nn.Linear(512, 1))

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        if self.label_channels:
            x = torch.cat([x, code[:, :, None, None].expand(-1, -1, *x.shape[2:])], dim=1)
        return self.head(torch.cat([self.features(x), code], dim=1)).flatten()


@MODELS.register("cgan")
class CGAN(GenerativeModel, Samples):
    """Adam 2e-4 for D and 4e-4 for G (the report's combined G step), beta1 0.5."""
    adversarial = True

    default_optim: ClassVar[dict] = {"lr": 2e-4, "betas": (0.5, 0.999), "g": {"lr": 4e-4}}
    ema_networks = ("g",)  # the generator draws the samples
    curve_groups = GAN_CURVES

    @staticmethod
    def check_config(cfg) -> None:
        for key in ("nz", "embed_dim", "g_width", "d_width"):
            check_int(cfg, f"model.{key}", minimum=1)
        if cfg.model.g_width % 8:
            raise GenlabError(f"model.g_width must be a multiple of 8 (it halves three times), got {cfg.model.g_width}")
        check_choice(cfg, "model.label_mode", ("onehot", "embedding"))
        check_choice(cfg, "model.d_norm", ("auto", "batch", "layer", "none"))
        if check_int(cfg, "data.size") % 16:
            raise GenlabError(f"cgan needs data.size divisible by 16, got {cfg.data.size}: pass e.g. data.size=32")

    def __init__(self, cfg, spec, loss):
        super().__init__()
        self.nz, self.loss = int(cfg.nz), loss
        self.n_classes = require_labels("cgan", spec)
        self.class_names = list(spec.class_names) or [str(i) for i in range(self.n_classes)]
        # separate codes for G and D: each network learns its own label embedding
        self.g_code = LabelCode(self.n_classes, cfg.label_mode, int(cfg.embed_dim))
        self.d_code = LabelCode(self.n_classes, cfg.label_mode, int(cfg.embed_dim))
        self.generator = CGANGenerator(self.nz, self.g_code.dim, spec.channels, spec.size, int(cfg.g_width))
        self.discriminator = CGANDiscriminator(self.d_code.dim, spec.channels, spec.size, int(cfg.d_width),
                                               norm=discriminator_norm(cfg, loss),
                                               label_channels=bool(cfg.get("label_channels", True)))
        self.apply(init_dcgan_weights)
        # one container per optimiser, made once (a plain dict: not registered, so the state_dict is unchanged)
        self._networks = {"g": nn.ModuleList([self.generator, self.g_code]),
                          "d": nn.ModuleList([self.discriminator, self.d_code])}

    def networks(self):
        return self._networks

    def training_step(self, batch, step):
        real, labels = batch["image"], batch["label"]
        z = torch.randn(len(real), self.nz, device=real.device)
        # fakes are asked for the batch's own labels, so real, fake and (for WGAN-GP) interpolated images are
        # all judged against the same labels, and classes keep the data's frequencies
        with self.autocast():
            fake = self.generator(z, self.g_code(labels))
        return adversarial_step(self, real, fake, step, lambda images: self.discriminator(images, self.d_code(labels)),
                                self.loss)

    @torch.no_grad()
    def sample(self, n, *, generator=None, labels=None, noise=None):
        with self.evaluating():
            z = (noise if noise is not None else torch.randn(n, self.nz, generator=generator)).to(self.device)
            labels = sample_labels(n, self.n_classes, labels, self.device)
            images = self.generator(z, self.g_code(labels)).float()
        return images

    def visual_row_titles(self):
        return {"classes": self.class_names}

    @torch.no_grad()
    def visuals(self, batch):
        return {
            "samples": self.sample(batch.size, generator=torch.Generator().manual_seed(0)),
            "classes": class_rows(self, self.n_classes),
        }


family_figures("cgan")(visual_figures(CLASS_ROWS))  # genlab report: one row per class
