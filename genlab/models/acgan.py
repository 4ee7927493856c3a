"""Auxiliary-classifier GAN (Odena et al. 2017): D says real/fake and which class. D maximises L_S + L_C,
G maximises L_C - L_S. Nets as the paper's CIFAR-10 table (SEEDS.md 000), sized from the DataSpec."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from genlab.core.config import check_choice, check_int
from genlab.core.errors import GenlabError
from genlab.core.figures import CLASS_ROWS, family_figures, visual_figures
from genlab.core.registry import MODELS
from genlab.models.base import GenerativeModel, init_dcgan_weights
from genlab.models.blocks import (
    LabelCode,
    class_rows,
    d_outputs,
    discriminator_norm,
    norm_layer,
    require_labels,
    sample_labels,
)
from genlab.models.capabilities import Samples


class ACGANGenerator(nn.Module):
    """[z, label] -> Linear to 384 x (size/8)^2 -> ConvT 5x5 s2 192 BN ReLU -> 96 BN ReLU -> channels, tanh."""

    def __init__(self, in_dim: int, channels: int, size: int, width: int = 384):
        super().__init__()
        self.side, self.width = size // 8, width
        self.fc = nn.Sequential(nn.Linear(in_dim, width * self.side**2), nn.BatchNorm1d(width * self.side**2),
                                nn.ReLU(True))

        def up(c_in, c_out):
            return nn.ConvTranspose2d(c_in, c_out, 5, 2, 2, output_padding=1)

        self.net = nn.Sequential(
            up(width, width // 2), nn.BatchNorm2d(width // 2), nn.ReLU(True),
            up(width // 2, width // 4), nn.BatchNorm2d(width // 4), nn.ReLU(True),
            up(width // 4, channels), nn.Tanh(),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(h).view(len(h), self.width, self.side, self.side))


class ACGANDiscriminator(nn.Module):
    """Conv 3x3: 16 s2, 32 s1, 64 s2, 128 s1, 256 s2, 512 s1 (x width/16), LeakyReLU 0.2, dropout 0.5, norm from
    the second layer; then two linear heads: the source score and n_classes class logits."""

    def __init__(self, n_classes: int, channels: int, size: int, width: int = 16, norm: str = "batch"):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = channels
        for i, (mult, stride) in enumerate([(1, 2), (2, 1), (4, 2), (8, 1), (16, 2), (32, 1)]):
            layers += [nn.Conv2d(c_in, width * mult, 3, stride, 1), norm_layer(norm, width * mult) if i else nn.Identity(),
                       nn.LeakyReLU(0.2, True), nn.Dropout(0.5)]
            c_in = width * mult
        self.features = nn.Sequential(*layers, nn.Flatten())
        flat = c_in * (size // 8) ** 2
        self.source = nn.Linear(flat, 1)
        self.classes = nn.Linear(flat, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.source(h).flatten(), self.classes(h)


@MODELS.register("acgan")
class ACGAN(GenerativeModel, Samples):
    """Adam 2e-4, beta1 0.5 (the paper). Logs the report's four curves: d_loss, d_loss_label, g_loss, g_loss_label."""
    adversarial = True

    default_optim: ClassVar[dict] = {"lr": 2e-4, "betas": (0.5, 0.999)}
    ema_networks = ("g",)  # the generator draws the samples
    curve_groups: ClassVar[dict] = {
        "source (real/fake)": ["d_loss", "g_loss"],
        "class": ["d_loss_label", "g_loss_label"],
        "D outputs": ["d_real", "d_fake", "critic_real", "critic_fake", "d_accuracy"],
        "gradient norms": ["d_grad_norm", "g_grad_norm"],
        "sample diversity (1 = real data)": ["sample_diversity"],
    }

    @staticmethod
    def check_config(cfg) -> None:
        for key in ("nz", "embed_dim", "g_width", "d_width"):
            check_int(cfg, f"model.{key}", minimum=1)
        check_choice(cfg, "model.label_mode", ("onehot", "embedding"))
        check_choice(cfg, "model.d_norm", ("auto", "batch", "layer", "none"))
        if cfg.model.g_width % 4:
            raise GenlabError(f"model.g_width must be a multiple of 4, got {cfg.model.g_width}")
        if check_int(cfg, "data.size") % 8:
            raise GenlabError(f"acgan needs data.size divisible by 8, got {cfg.data.size}: pass e.g. data.size=32")

    def __init__(self, cfg, spec, loss):
        super().__init__()
        self.nz, self.loss = int(cfg.nz), loss
        self.n_classes = require_labels("acgan", spec)
        self.class_names = list(spec.class_names) or [str(i) for i in range(self.n_classes)]
        self.code = LabelCode(self.n_classes, cfg.label_mode, int(cfg.embed_dim))
        self.generator = ACGANGenerator(self.nz + self.code.dim, spec.channels, spec.size, int(cfg.g_width))
        self.discriminator = ACGANDiscriminator(self.n_classes, spec.channels, spec.size, int(cfg.d_width),
                                                norm=discriminator_norm(cfg, loss))
        self.apply(init_dcgan_weights)
        # one container per optimiser, made once (a plain dict: not registered, so the state_dict is unchanged)
        self._networks = {"g": nn.ModuleList([self.generator, self.code]), "d": self.discriminator}

    def networks(self):
        return self._networks

    def generate(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.generator(torch.cat([z, self.code(labels)], dim=1))

    def training_step(self, batch, step):
        real, labels = batch["image"], batch["label"]
        z = torch.randn(len(real), self.nz, device=real.device)
        with self.autocast():
            fake = self.generate(z, labels)
            src_real, cls_real = self.discriminator(real)
            src_fake, cls_fake = self.discriminator(fake.detach())
            d_source = self.loss.d_loss(src_real, src_fake)  # -L_S
            d_class = F.cross_entropy(cls_real, labels) + F.cross_entropy(cls_fake, labels)  # -L_C
            penalty = self.loss.penalty(lambda x: self.discriminator(x)[0], real, fake)
            d_total = d_source + d_class + (penalty if penalty is not None else 0)
        out = {"gradient_penalty": penalty.detach()} if penalty is not None else {}
        out |= {"d_loss": d_source.detach(), "d_loss_label": d_class.detach(),
               "d_grad_norm": self.update(d_total, "d"),
               "d_accuracy": (cls_real.detach().argmax(1) == labels).float().mean()}
        # WGAN clips the critic (body + source head) only: clipped class logits could not fit any class
        self.loss.after_d_step(nn.ModuleList([self.discriminator.features, self.discriminator.source]))
        out.update(d_outputs(self.loss, src_real, src_fake))
        if (step + 1) % self.loss.n_critic == 0:
            with self.frozen(self.discriminator), self.autocast():
                src, cls = self.discriminator(fake)
                g_source = self.loss.g_loss(src)  # G maximises L_C - L_S: fool the source head ...
                g_class = F.cross_entropy(cls, labels)  # ... and be classified as the class it was asked for
            out.update(g_loss=g_source.detach(), g_loss_label=g_class.detach(),
                       g_grad_norm=self.update(g_source + g_class, "g"))
        return out

    @torch.no_grad()
    def sample(self, n, *, generator=None, labels=None, noise=None):
        with self.evaluating():
            z = (noise if noise is not None else torch.randn(n, self.nz, generator=generator)).to(self.device)
            images = self.generate(z, sample_labels(n, self.n_classes, labels, self.device)).float()
        return images

    def visual_row_titles(self):
        return {"classes": self.class_names}

    @torch.no_grad()
    def visuals(self, batch):
        return {
            "samples": self.sample(batch.size, generator=torch.Generator().manual_seed(0)),
            "classes": class_rows(self, self.n_classes),
        }


family_figures("acgan")(visual_figures(CLASS_ROWS))  # genlab report: one row per class
