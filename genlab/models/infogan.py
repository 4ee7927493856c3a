"""InfoGAN (Chen et al. 2016): G gets noise plus latent codes c (one categorical, some continuous); a Q head on
D's features predicts c from fakes, and both G and Q minimise lambda_info * (-lower bound of I(c; G(z, c)))."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from genlab.core.config import check_choice, check_float, check_int
from genlab.core.errors import GenlabError
from genlab.core.figures import family_figures, final_visual
from genlab.core.registry import MODELS
from genlab.models.base import GenerativeModel, init_dcgan_weights
from genlab.models.blocks import d_outputs, discriminator_norm, norm_layer, sample_labels
from genlab.models.capabilities import Samples


def _norm1d(kind: str, width: int) -> nn.Module:
    return {"batch": nn.BatchNorm1d(width), "layer": nn.LayerNorm(width)}.get(kind, nn.Identity())


class InfoGANGenerator(nn.Module):
    """[z, c] -> FC 1024 BN ReLU -> FC 128 x (size/4)^2 BN ReLU -> ConvT 4x4 s2 64 BN ReLU -> ConvT to channels, tanh."""

    def __init__(self, in_dim: int, channels: int, size: int):
        super().__init__()
        self.side = size // 4
        self.fc = nn.Sequential(
            nn.Linear(in_dim, 1024), nn.BatchNorm1d(1024), nn.ReLU(True),
            nn.Linear(1024, 128 * self.side**2), nn.BatchNorm1d(128 * self.side**2), nn.ReLU(True),
        )
        self.net = nn.Sequential(nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.ReLU(True),
                                 nn.ConvTranspose2d(64, channels, 4, 2, 1), nn.Tanh())

    def forward(self, h):
        return self.net(self.fc(h).view(len(h), 128, self.side, self.side))


class InfoGANDiscriminator(nn.Module):
    """Conv 4x4 s2 64 LReLU -> Conv 4x4 s2 128 norm LReLU -> FC 1024 norm LReLU; heads: D (1) and
    Q (FC 128 norm LReLU -> n_cat logits + n_cont means)."""

    def __init__(self, channels: int, size: int, n_cat: int, n_cont: int, norm: str = "batch"):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 64, 4, 2, 1), nn.LeakyReLU(0.1, True),
            nn.Conv2d(64, 128, 4, 2, 1), norm_layer(norm, 128), nn.LeakyReLU(0.1, True), nn.Flatten(),
            nn.Linear(128 * (size // 4) ** 2, 1024), _norm1d(norm, 1024), nn.LeakyReLU(0.1, True),
        )
        self.d_head = nn.Linear(1024, 1)
        self.q_head = nn.Sequential(nn.Linear(1024, 128), _norm1d(norm, 128), nn.LeakyReLU(0.1, True),
                                    nn.Linear(128, n_cat + n_cont))

    def forward(self, x):
        h = self.body(x)
        return self.d_head(h).flatten(), self.q_head(h)


@MODELS.register("infogan")
class InfoGAN(GenerativeModel, Samples):
    """Adam, D 2e-4 and G 1e-3, beta1 0.5 (Chen et al.'s MNIST settings)."""
    adversarial = True

    default_optim: ClassVar[dict] = {"lr": 2e-4, "betas": (0.5, 0.999), "g": {"lr": 1e-3}}
    ema_networks = ("g",)  # the generator draws the samples
    curve_groups: ClassVar[dict] = {
        "losses": ["d_loss", "g_loss"],
        "mutual information": ["info_loss"],
        "code recovery": ["q_accuracy"],
        "D outputs": ["d_real", "d_fake", "critic_real", "critic_fake"],
        "gradient norms": ["d_grad_norm", "g_grad_norm"],
        "sample diversity (1 = real data)": ["sample_diversity"],
    }

    @staticmethod
    def check_config(cfg) -> None:
        check_int(cfg, "model.nz", minimum=1)
        check_int(cfg, "model.n_cat", minimum=2)
        check_int(cfg, "model.n_cont", minimum=0)
        check_float(cfg, "model.lambda_info", minimum=0.0)
        check_float(cfg, "model.lambda_cont", minimum=0.0)
        check_choice(cfg, "model.d_norm", ("auto", "batch", "layer", "none"))
        if check_int(cfg, "data.size") % 4:
            raise GenlabError(f"infogan needs data.size divisible by 4, got {cfg.data.size}")

    def __init__(self, cfg, spec, loss):
        super().__init__()
        self.nz, self.n_cat, self.n_cont = int(cfg.nz), int(cfg.n_cat), int(cfg.n_cont)
        self.lambda_info, self.lambda_cont = float(cfg.lambda_info), float(cfg.lambda_cont)
        self.loss = loss
        self.generator = InfoGANGenerator(self.nz + self.n_cat + self.n_cont, spec.channels, spec.size)
        self.discriminator = InfoGANDiscriminator(spec.channels, spec.size, self.n_cat, self.n_cont,
                                                  norm=discriminator_norm(cfg, loss))
        self.apply(init_dcgan_weights)

    def networks(self):
        return {"g": self.generator, "d": self.discriminator}  # Q is D's second head: D's optimiser trains it

    def codes(self, n: int, generator=None, device=None):
        cat = torch.randint(0, self.n_cat, (n,), generator=generator)
        cont = torch.rand(n, self.n_cont, generator=generator) * 2 - 1
        return cat.to(device), cont.to(device)

    def generate(self, z, cat, cont):
        return self.generator(torch.cat([z, F.one_hot(cat, self.n_cat).float(), cont], dim=1))

    def info_loss(self, q_out, cat, cont):
        """-lower bound of I(c; G(z, c)) up to constants: CE for the categorical code, MSE (a unit Gaussian
        with fixed variance) for the continuous ones."""
        loss = F.cross_entropy(q_out[:, : self.n_cat], cat)
        if self.n_cont:
            loss = loss + self.lambda_cont * F.mse_loss(q_out[:, self.n_cat :], cont)
        return loss

    def training_step(self, batch, step):
        real = batch["image"]
        z = torch.randn(len(real), self.nz, device=real.device)
        cat, cont = self.codes(len(real), device=real.device)
        with self.autocast():
            fake = self.generate(z, cat, cont)
            src_real, _ = self.discriminator(real)
            src_fake, q_fake = self.discriminator(fake.detach())
            d_adv = self.loss.d_loss(src_real, src_fake)
            info = self.info_loss(q_fake.float(), cat, cont)  # trains Q (and D's body) to read c
            penalty = self.loss.penalty(lambda x: self.discriminator(x)[0], real, fake)
            d_total = d_adv + self.lambda_info * info + (penalty if penalty is not None else 0)
        out = {"gradient_penalty": penalty.detach()} if penalty is not None else {}
        out |= {"d_loss": d_adv.detach(), "info_loss": info.detach(), "d_grad_norm": self.update(d_total, "d"),
               "q_accuracy": (q_fake.detach()[:, : self.n_cat].argmax(1) == cat).float().mean()}
        # WGAN clips the critic (body + D head) only: a clipped Q head could not read the codes back
        self.loss.after_d_step(nn.ModuleList([self.discriminator.body, self.discriminator.d_head]))
        out.update(d_outputs(self.loss, src_real, src_fake))
        if (step + 1) % self.loss.n_critic == 0:
            with self.frozen(self.discriminator), self.autocast():
                src, q = self.discriminator(fake)
                g_adv = self.loss.g_loss(src)
                g_info = self.info_loss(q.float(), cat, cont)  # G makes its codes readable
            out.update(g_loss=g_adv.detach(), g_grad_norm=self.update(g_adv + self.lambda_info * g_info, "g"))
        return out

    @property
    def label_values(self) -> int:
        return self.n_cat

    @torch.no_grad()
    def sample(self, n, *, generator=None, labels=None, noise=None, cont=None):
        """labels = values of the categorical code (the code is unsupervised: its values need not match classes)."""
        with self.evaluating():
            z = (noise if noise is not None else torch.randn(n, self.nz, generator=generator)).to(self.device)
            cat, c = self.codes(n, generator=generator, device=self.device)
            if labels is not None:
                cat = sample_labels(n, self.n_cat, labels, self.device)
            if cont is not None:
                c = cont.to(self.device)
            images = self.generate(z, cat, c).float()
        return images

    @torch.no_grad()
    def code_recovery(self, n: int = 1000, seed: int = 0) -> float:
        """How often Q reads back the categorical code of fresh samples (chance = 1 / n_cat)."""
        generator = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.nz, generator=generator).to(self.device)
        cat, cont = self.codes(n, generator=generator, device=self.device)
        with self.evaluating():
            _, q = self.discriminator(self.generate(z, cat, cont))
        return (q[:, : self.n_cat].argmax(1) == cat).float().mean().item()

    def visual_row_titles(self):
        titles = [f"c={i}" for i in range(self.n_cat)]
        return {f"sweep_c{j + 1}": titles for j in range(self.n_cont)}

    @torch.no_grad()
    def visuals(self, batch):
        """Each row fixes the categorical code; columns sweep one continuous code from -2 to 2, the rest 0."""
        out = {"samples": self.sample(batch.size, generator=torch.Generator().manual_seed(0))}
        z = torch.randn(1, self.nz, generator=torch.Generator().manual_seed(1)).repeat(self.n_cat * 8, 1)
        labels = torch.arange(self.n_cat).repeat_interleave(8)
        for j in range(self.n_cont):
            cont = torch.zeros(self.n_cat * 8, self.n_cont)
            cont[:, j] = torch.linspace(-2, 2, 8).repeat(self.n_cat)
            out[f"sweep_c{j + 1}"] = self.sample(len(labels), labels=labels, noise=z, cont=cont)
        return out


@family_figures("infogan")
def code_figures(run, report, prefix):
    """genlab report: each code sweep (rows: the categorical code; columns: one continuous code)."""
    figures = []
    for visual in sorted(v for v in run.grids() if v.startswith("sweep_")):
        figures += final_visual(run, report, prefix, visual,
                                f"rows: the categorical code; columns: continuous code {visual[7:]} from -2 to 2")
    return figures
