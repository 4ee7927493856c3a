"""Convolutional VAE of the reports (000, 003): conv 16/32/64 encoder, mirrored decoder, ELBO loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genlab.config import check_choice, check_float, check_int
from genlab.errors import GenlabError
from genlab.models.base import GenerativeModel
from genlab.registry import MODELS


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per example, in closed form (nats)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


def reconstruction_loss(logits: torch.Tensor, target01: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-example reconstruction loss, summed over pixels. Targets are in [0, 1].

    bce: the negative log-likelihood of a per-pixel Bernoulli decoder; mse: squared error of sigmoid(logits).
    """
    if kind == "bce":
        per_pixel = F.binary_cross_entropy_with_logits(logits, target01, reduction="none")
    else:
        per_pixel = (torch.sigmoid(logits) - target01).pow(2)
    return per_pixel.flatten(1).sum(dim=1)


class Encoder(nn.Module):
    def __init__(self, channels: int, size: int, latent_dim: int):
        super().__init__()
        layers, width_in = [], channels
        for width in (16, 32, 64):
            layers += [nn.Conv2d(width_in, width, 3, 1, 1), nn.ReLU(True), nn.MaxPool2d(2), nn.BatchNorm2d(width)]
            width_in = width
        self.features = nn.Sequential(*layers, nn.Flatten())
        flat = 64 * (size // 8) ** 2
        self.mu = nn.Linear(flat, latent_dim)
        self.logvar = nn.Linear(flat, latent_dim)

    def forward(self, x):
        h = self.features(x)
        return self.mu(h), self.logvar(h)


class Decoder(nn.Module):
    def __init__(self, channels: int, size: int, latent_dim: int):
        super().__init__()
        self.side = size // 8
        self.fc = nn.Sequential(nn.Linear(latent_dim, 64 * self.side**2), nn.ReLU(True))
        self.net = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.BatchNorm2d(32), nn.ReLU(True),
            nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.BatchNorm2d(16), nn.ReLU(True),
            nn.ConvTranspose2d(16, channels, 4, 2, 1),  # logits; the model applies the sigmoid
        )

    def forward(self, z):
        return self.net(self.fc(z).view(z.shape[0], 64, self.side, self.side))


@MODELS.register("vae")
class VAE(GenerativeModel):
    default_optim = {"lr": 1e-3, "betas": (0.9, 0.999)}
    curve_groups = {"loss": ["loss"], "reconstruction": ["recon_loss"], "KL": ["kl"]}

    @staticmethod
    def check_config(cfg) -> None:
        check_int(cfg, "model.latent_dim", minimum=1)
        check_choice(cfg, "model.recon", ("bce", "mse"))
        check_float(cfg, "model.beta", minimum=0.0)
        if "kl_warmup" in cfg.model:
            check_int(cfg, "model.kl_warmup", minimum=0)
        if check_int(cfg, "data.size") % 8:
            raise GenlabError(f"vae needs data.size divisible by 8, got {cfg.data.size}: pass e.g. data.size=32")

    def __init__(self, cfg, spec, loss=None):
        super().__init__()
        if spec.size % 8:
            raise GenlabError(f"vae needs data.size divisible by 8, got {spec.size}")
        if cfg.recon not in ("bce", "mse"):
            raise GenlabError(f"model.recon must be bce or mse, got {cfg.recon!r}")
        self.latent_dim, self.recon, self.beta = int(cfg.latent_dim), cfg.recon, float(cfg.beta)
        self.kl_warmup = int(cfg.get("kl_warmup", 0))
        if self.latent_dim < 1:
            raise GenlabError(f"model.latent_dim must be at least 1, got {self.latent_dim}")
        self.encoder = Encoder(spec.channels, spec.size, self.latent_dim)
        self.decoder = Decoder(spec.channels, spec.size, self.latent_dim)

    def networks(self):
        return {"vae": self}

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent -> image in [-1, 1]."""
        return torch.sigmoid(self.decoder(z).float()) * 2 - 1

    def kl_weight(self, step: int | None) -> float:
        """beta, ramped linearly from 0 over the first model.kl_warmup steps (KL annealing, Bowman et al.)."""
        if step is None or self.kl_warmup == 0:
            return self.beta
        return self.beta * min(1.0, step / self.kl_warmup)

    def loss_terms(self, x: torch.Tensor, step: int | None = None) -> dict[str, torch.Tensor]:
        target = (x + 1) / 2  # [-1, 1] -> [0, 1] at the model's border
        mu, logvar = self.encoder(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # reparameterisation
        recon = reconstruction_loss(self.decoder(z).float(), target, self.recon).mean()
        kl = kl_to_standard_normal(mu.float(), logvar.float()).mean()
        return {"loss": recon + self.kl_weight(step) * kl, "recon_loss": recon, "kl": kl}

    def training_step(self, batch, step):
        x, _ = batch
        with self.autocast():
            terms = self.loss_terms(x, step)
        self.update(terms["loss"], "vae")
        return {k: v.detach() for k, v in terms.items()}

    @torch.no_grad()
    def sample(self, n, *, generator=None, labels=None):
        with self.evaluating():
            z = torch.randn(n, self.latent_dim, generator=generator).to(self.device)
            images = self.decode(z)
        return images

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        with self.evaluating():
            images = self.decode(self.encoder(x)[0])
        return images

    @torch.no_grad()
    def visuals(self, batch):
        row = min(8, len(batch[0]))
        x = batch[0][: max(row, min(32, len(batch[0])) // row * row)]
        recon = self.reconstruct(x)
        # rows of 8: inputs, then their reconstructions, alternating
        pairs = torch.stack([x.view(-1, row, *x.shape[1:]), recon.view(-1, row, *x.shape[1:])], dim=1)
        visuals = {
            "samples": self.sample(len(batch[0]), generator=torch.Generator().manual_seed(0)),
            "reconstructions": pairs.reshape(-1, *x.shape[1:]),
        }
        if self.latent_dim == 2:
            visuals["manifold"] = self.manifold()
        return visuals

    @torch.no_grad()
    def manifold(self, n: int = 10) -> torch.Tensor:
        """The 2-D latent manifold: decode an n x n grid of N(0, 1) quantiles (5% to 95%), returned as
        [rows, columns, C, H, W] so the grid keeps n columns. Row 0 is the top of the plot (high z2)."""
        q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, n))
        z1, z2 = torch.meshgrid(q, q.flip(0), indexing="xy")  # z1 varies along a row, z2 down the columns
        with self.evaluating():
            images = self.decode(torch.stack([z1.flatten(), z2.flatten()], dim=1).to(self.device))
        return images.view(n, n, *images.shape[1:])
