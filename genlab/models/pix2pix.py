"""pix2pix (Isola et al. 2017): a U-Net generator and a 70x70 PatchGAN on (input, output) pairs, cGAN + 100 L1.

Seed 003 (maps, 256 px): U-Net encoder C64-C128-C256-C512-C512-C512-C512-C512 (4x4 stride 2, LeakyReLU 0.2,
BatchNorm except the first), decoder of 4x4 stride-2 transposed convolutions with skip concatenations, ReLU,
dropout 0.5 in its first three blocks, tanh; 54,413,955 parameters for 3 -> 3 channels. PatchGAN: C64-C128-C256
(stride 2) C512 (stride 1) -> 1 channel, a 30x30 map of real/fake scores at 256 px, each seeing a 70x70 patch.
Adam 2e-4, beta1 0.5; D's loss halved (the paper slows D down this way). The PatchGAN is shared with CycleGAN.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from genlab.core.config import check_float, check_int
from genlab.core.errors import GenlabError
from genlab.core.figures import family_figures, visual_figures
from genlab.core.registry import MODELS
from genlab.models.base import GenerativeModel, init_dcgan_weights
from genlab.models.blocks import PatchDiscriminator, check_patch, norm2d
from genlab.models.capabilities import Translates


def unet_depth(size: int) -> int:
    """Down-samplings from size x size to 1 x 1 (256 -> 8, 128 -> 7, 32 -> 5)."""
    depth = round(math.log2(size)) if size > 0 else 0
    if size < 8 or 2**depth != size:
        raise GenlabError(f"pix2pix's U-Net needs data.size (the crop) to be a power of two >= 8, got {size}: "
                          "pass e.g. data.size=256")
    return depth


class UNetGenerator(nn.Module):
    """The pix2pix U-Net: `depth` 4x4 stride-2 down-samplings to 1 x 1 and as many up-samplings, each decoder
    block taking the matching encoder output concatenated to its input. Widths ngf, 2ngf, 4ngf, then 8ngf."""

    def __init__(self, c_in: int, c_out: int, depth: int, ngf: int = 64, norm: str = "batch",
                 dropout_blocks: int = 3, dropout: float = 0.5):
        super().__init__()
        widths = [ngf * min(2**i, 8) for i in range(depth)]
        bias = norm != "batch"  # BatchNorm's shift makes a conv bias redundant
        self.down = nn.ModuleList()
        for i, width in enumerate(widths):
            if i == 0:
                layers = [nn.Conv2d(c_in, width, 4, 2, 1, bias=bias)]
            else:
                layers = [nn.LeakyReLU(0.2), nn.Conv2d(widths[i - 1], width, 4, 2, 1, bias=bias)]
                if i < depth - 1:  # the innermost (1 x 1) is not normalised
                    layers.append(norm2d(norm, width))
            self.down.append(nn.Sequential(*layers))
        self.up = nn.ModuleList()
        for j, i in enumerate(reversed(range(depth))):  # j: decoder block, from the innermost out
            c_up = widths[i] if i == depth - 1 else 2 * widths[i]
            if i == 0:
                layers = [nn.ReLU(), nn.ConvTranspose2d(c_up, c_out, 4, 2, 1), nn.Tanh()]
            else:
                layers = [nn.ReLU(), nn.ConvTranspose2d(c_up, widths[i - 1], 4, 2, 1, bias=bias),
                          norm2d(norm, widths[i - 1])]
                if j < dropout_blocks:
                    layers.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = self.up[0](skips.pop())
        for block in self.up[1:]:
            x = block(torch.cat([x, skips.pop()], dim=1))
        return x


TRANSLATION_CURVES = {
    "generator: cGAN and L1 terms": ["G_GAN", "G_L1"],
    "discriminator: real and fake terms": ["D_real", "D_fake"],
    "totals": ["d_loss", "g_loss"],
    "gradient norms": ["d_grad_norm", "g_grad_norm"],
}


@MODELS.register("pix2pix")
class Pix2Pix(GenerativeModel, Translates):
    adversarial = True
    accepts = ("paired",)
    translates = ("a", "b")  # input A -> output like B (data.direction=BtoA swaps them in the data)
    default_optim: ClassVar[dict] = {"lr": 2e-4, "betas": (0.5, 0.999)}
    default_schedule: ClassVar[dict] = {"name": "linear", "decay_fraction": 0.5}  # the reference's 100 epochs constant, 100 decaying
    ema_networks = ("g",)
    curve_groups = TRANSLATION_CURVES

    @staticmethod
    def check_config(cfg) -> None:
        check_patch(cfg)
        unet_depth(int(cfg.data.size))
        check_float(cfg, "model.lambda_l1", minimum=0.0)
        check_int(cfg, "model.dropout_blocks", minimum=0)

    def __init__(self, cfg, spec, loss):
        super().__init__()
        c_a, c_b = spec.shape("a")[0], spec.shape("b")[0]
        size = spec.shape("a")[-1]
        self.loss, self.lambda_l1 = loss, float(cfg.lambda_l1)
        self.dropout_at_test = bool(cfg.dropout_at_test)
        self.generator = UNetGenerator(c_a, c_b, unet_depth(size), int(cfg.ngf), cfg.norm, int(cfg.dropout_blocks))
        self.size_multiple = 2 ** unet_depth(size)  # the U-Net halves an image down to 1 x 1 at the trained size
        self.discriminator = PatchDiscriminator(c_a + c_b, int(cfg.ndf), int(cfg.d_layers), cfg.norm)
        self.apply(init_dcgan_weights)  # N(0, 0.02) convolutions, N(1, 0.02) BatchNorm scales: both papers

    def networks(self):
        return {"g": self.generator, "d": self.discriminator}

    def training_step(self, batch, step):
        """D on (input, target) and (input, G(input)), its loss halved as the paper does; then, every
        loss.n_critic steps, G against the updated D plus lambda_l1 x L1. Any adversarial loss works: its
        penalty (WGAN-GP) and clipping (WGAN) apply as in the GAN family's step."""
        a, b = batch["a"], batch["b"]

        def critic(images):  # the conditional D sees the input beside the image it judges
            return self.discriminator(torch.cat([a, images], 1))

        with self.autocast():
            fake = self.generator(a)
            d_real, d_fake = self.loss.d_terms(critic(b), critic(fake.detach()))
            d_loss = 0.5 * (d_real + d_fake)
            penalty = self.loss.penalty(critic, b, fake)
        d_total = d_loss + penalty if penalty is not None else d_loss
        out = {"d_loss": d_loss.detach(), "D_real": d_real.detach(), "D_fake": d_fake.detach(),
               "d_grad_norm": self.update(d_total, "d")}
        self.loss.after_d_step(self.discriminator)
        if penalty is not None:
            out["gradient_penalty"] = penalty.detach()
        if (step + 1) % self.loss.n_critic == 0:
            with self.frozen(self.discriminator), self.autocast():
                g_gan = self.loss.g_loss(critic(fake))
                g_l1 = (fake - b).abs().mean()
                g_loss = g_gan + self.lambda_l1 * g_l1
            out.update(g_loss=g_loss.detach(), G_GAN=g_gan.detach(), G_L1=g_l1.detach(),
                       g_grad_norm=self.update(g_loss, "g"))
        return out

    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str = "AtoB") -> torch.Tensor:
        """G(x). With model.dropout_at_test (the report's choice, the paper's noise source) dropout stays on;
        BatchNorm uses its running statistics (the paper used the test batch's)."""
        if direction != "AtoB":
            raise GenlabError("a pix2pix run translates one way, its data's A to B: for the other way train a run "
                              "with data.direction swapped")
        was_training = self.generator.training
        self.generator.train(False)
        if self.dropout_at_test:
            for module in self.generator.modules():
                if isinstance(module, nn.Dropout):
                    module.train(True)
        try:
            return self.generator(x.to(self.device)).float()
        finally:
            self.generator.train(was_training)

    @torch.no_grad()
    def visuals(self, batch):
        """Rows of (input, output, target) for up to 5 fixed validation pairs, as the report shows them."""
        n = min(5, batch.size)
        a, b = batch["a"][:n], batch["b"][:n]
        out = self.translate(a)
        a3, out3, b3 = (self._rgb(t, max(a.shape[1], b.shape[1])) for t in (a, out, b))
        return {"translations": torch.stack([a3, out3, b3], dim=1)}

    @staticmethod
    def _rgb(images: torch.Tensor, channels: int) -> torch.Tensor:
        return images.expand(-1, channels, -1, -1) if images.shape[1] == 1 and channels > 1 else images

    def visual_row_titles(self):
        return {}


family_figures("pix2pix")(visual_figures(("translations", "fixed validation pairs: input, output, target")))
