"""Convolutional VAE of the reports (000, 003): conv 16/32/64 encoder, mirrored decoder, ELBO loss."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from genlab.core.config import check_choice, check_float, check_int
from genlab.core.errors import GenlabError
from genlab.core.figures import RECONSTRUCTIONS, family_figures, visual_figures
from genlab.core.plots import Scatter, pair_rows
from genlab.core.registry import MODELS
from genlab.data.base import dequantise
from genlab.models.base import GenerativeModel
from genlab.models.capabilities import Reconstructs, Samples, ScoresDensity


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


def reconstruction_nll(logits: torch.Tensor, target01: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-example negative log-likelihood (nats) of [0, 1] targets under the decoder the loss implies.

    bce: a Bernoulli per pixel, exactly the loss (for grey pixels a cross-entropy, not a discrete likelihood);
    mse: a Gaussian with variance 1/2 per pixel, the one whose NLL is the squared error plus a constant.
    """
    loss = reconstruction_loss(logits, target01, kind)
    if kind == "mse":
        loss = loss + 0.5 * target01[0].numel() * math.log(math.pi)
    return loss


def project_2d(points: torch.Tensor, method: str = "pca") -> tuple[torch.Tensor, str]:
    """Latent codes [N, d] -> [N, 2] for a scatter plot: as they are for d <= 2, else PCA or t-SNE."""
    points = points.float().cpu()
    if points.shape[1] == 1:
        return torch.cat([points, torch.zeros_like(points)], dim=1), "z1"
    if points.shape[1] == 2:
        return points, "z"
    if method == "tsne":
        from sklearn.manifold import TSNE

        embedded = TSNE(n_components=2, init="pca", random_state=0, perplexity=min(30.0, len(points) / 4))
        return torch.from_numpy(embedded.fit_transform(points.numpy())).float(), "t-SNE"
    centred = points - points.mean(dim=0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return centred @ v[:2].T, "PCA"


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
class VAE(GenerativeModel, Samples, Reconstructs, ScoresDensity):
    default_optim: ClassVar[dict] = {"lr": 1e-3, "betas": (0.9, 0.999)}
    ema_networks = ("vae",)
    objective = ("test_nelbo", "min")  # the held-out negative ELBO, nats per image
    curve_groups: ClassVar[dict] = {"loss": ["loss"], "reconstruction": ["recon_loss"], "KL": ["kl"],
                    "test -ELBO (nats)": ["test_nelbo"], "test bits/dim": ["test_bits_per_dim"]}
    scatter_points = 2000  # test images in the latent scatter

    @staticmethod
    def check_config(cfg) -> None:
        check_int(cfg, "model.latent_dim", minimum=1)
        check_choice(cfg, "model.recon", ("bce", "mse"))
        check_float(cfg, "model.beta", minimum=0.0)
        if "kl_warmup" in cfg.model:
            check_int(cfg, "model.kl_warmup", minimum=0)
        if "scatter" in cfg.model:
            check_choice(cfg, "model.scatter", ("pca", "tsne"))
        if check_int(cfg, "data.size") % 8:
            raise GenlabError(f"{cfg.model.name} needs data.size divisible by 8, got {cfg.data.size}: "
                              "pass e.g. data.size=32")

    def __init__(self, cfg, spec, loss=None):
        super().__init__()
        if spec.size % 8:
            raise GenlabError(f"{cfg.name} needs data.size divisible by 8, got {spec.size}")
        if cfg.recon not in ("bce", "mse"):
            raise GenlabError(f"model.recon must be bce or mse, got {cfg.recon!r}")
        self.latent_dim, self.recon, self.beta = int(cfg.latent_dim), cfg.recon, float(cfg.beta)
        self.nz = self.latent_dim
        self.kl_warmup = int(cfg.get("kl_warmup", 0))
        self.scatter = cfg.get("scatter", "pca")
        if self.latent_dim < 1:
            raise GenlabError(f"model.latent_dim must be at least 1, got {self.latent_dim}")
        self.class_names = list(spec.class_names)
        self.pixels = spec.channels * spec.size**2
        extra = self.condition_width(spec)
        self.encoder = Encoder(spec.channels + extra, spec.size, self.latent_dim)
        self.decoder = Decoder(spec.channels, spec.size, self.latent_dim + extra)

    # ---- conditioning hooks: none here, a one-hot label in the CVAE ------------------------------------
    def condition_width(self, spec) -> int:
        return 0

    def encoder_input(self, x: torch.Tensor, labels) -> torch.Tensor:
        return x

    def decoder_input(self, z: torch.Tensor, labels) -> torch.Tensor:
        return z

    def networks(self):
        return {"vae": self}

    def encode(self, x: torch.Tensor, labels=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Images in [-1, 1] -> (mu, logvar) of q(z | x)."""
        return self.encoder(self.encoder_input(x, labels))

    def decode(self, z: torch.Tensor, labels=None) -> torch.Tensor:
        """Latent -> image in [-1, 1]."""
        return torch.sigmoid(self.decoder(self.decoder_input(z, labels)).float()) * 2 - 1

    def kl_weight(self, step: int | None) -> float:
        """beta, ramped linearly from 0 over the first model.kl_warmup steps (KL annealing, Bowman et al.)."""
        if step is None or self.kl_warmup == 0:
            return self.beta
        return self.beta * min(1.0, step / self.kl_warmup)

    def per_example(self, x: torch.Tensor, labels=None, generator=None):
        """(decoder logits, [0, 1] targets, KL per example) for one reparameterised z = mu + sigma * eps."""
        target = (x + 1) / 2  # [-1, 1] -> [0, 1] at the model's border
        mu, logvar = self.encode(x, labels)
        eps = torch.randn(mu.shape, generator=generator).to(mu) if generator is not None else torch.randn_like(mu)
        z = mu + eps * torch.exp(0.5 * logvar)
        logits = self.decoder(self.decoder_input(z, labels)).float()
        return logits, target, kl_to_standard_normal(mu.float(), logvar.float())

    def loss_terms(self, x: torch.Tensor, step: int | None = None, labels=None) -> dict[str, torch.Tensor]:
        logits, target, kl = self.per_example(x, labels)
        recon = reconstruction_loss(logits, target, self.recon).mean()
        kl = kl.mean()
        return {"loss": recon + self.kl_weight(step) * kl, "recon_loss": recon, "kl": kl}

    def training_step(self, batch, step):
        x, labels = batch["image"], batch.get("label")
        with self.autocast():
            terms = self.loss_terms(x, step, labels)
        self.update(terms["loss"], "vae")
        return {k: v.detach() for k, v in terms.items()}

    @torch.no_grad()
    def sample(self, n, *, generator=None, labels=None, noise=None):
        with self.evaluating():
            z = (noise if noise is not None else torch.randn(n, self.latent_dim, generator=generator)).to(self.device)
            images = self.decode(z, self.sample_condition(n, labels))
        return images

    def sample_condition(self, n: int, labels):
        return None

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, labels=None) -> torch.Tensor:
        """Decode the posterior mean of each image."""
        with self.evaluating():
            images = self.decode(self.encode(x, labels)[0], labels)
        return images

    @torch.no_grad()
    def visuals(self, batch):
        row = min(8, batch.size)
        keep = max(row, min(32, batch.size) // row * row)
        x, labels = batch["image"][:keep], (batch["label"][:keep] if batch.get("label") is not None else None)
        visuals = {
            "samples": self.sample(batch.size, generator=torch.Generator().manual_seed(0)),
            "reconstructions": pair_rows(x, self.reconstruct(x, labels), row),  # inputs over reconstructions
        }
        if self.latent_dim == 2:
            visuals["manifold"] = self.manifold()
        return visuals

    @torch.no_grad()
    def manifold(self, n: int = 10, labels=None) -> torch.Tensor:
        """The 2-D latent manifold: decode an n x n grid of N(0, 1) quantiles (5% to 95%), returned as
        [rows, columns, C, H, W] so the grid keeps n columns. Row 0 is the top of the plot (high z2).
        A conditional model draws the whole grid for one class (`labels`, default class 0)."""
        q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, n))
        z1, z2 = torch.meshgrid(q, q.flip(0), indexing="xy")  # z1 varies along a row, z2 down the columns
        with self.evaluating():
            z = torch.stack([z1.flatten(), z2.flatten()], dim=1).to(self.device)
            images = self.decode(z, self.sample_condition(n * n, 0 if labels is None else labels))
        return images.view(n, n, *images.shape[1:])

    @torch.no_grad()
    def score(self, batch) -> torch.Tensor:
        """The negative ELBO per image in nats (one z per image, beta = 1): higher = less likely.

        The noise comes from a fixed seed per batch, so a score is reproducible for the same batching (genlab eval
        scores in batches of 500)."""
        with self.evaluating():
            logits, target, kl = self.per_example(batch["image"], batch.get("label"),
                                                  generator=torch.Generator().manual_seed(0))
            return reconstruction_nll(logits, target, self.recon) + kl

    @torch.no_grad()
    def evaluate(self, batches) -> dict:
        """On the test split: the negative ELBO (beta = 1, one z per image) in nats per image and in bits per
        dimension (with model.recon=mse also test_bits_per_dim_8bit, of the dequantised 8-bit pixels, as the flows
        report it), and the latent scatter of up to `scatter_points` images coloured by class."""
        generator = torch.Generator().manual_seed(0)
        dequantising = torch.Generator().manual_seed(1)  # its own stream: test_nelbo's noise stays as it was
        total, total_8bit, count, means, classes = 0.0, 0.0, 0, [], []
        with self.evaluating():
            for x, labels in ((b["image"], b["label"]) for b in batches):
                logits, target, kl = self.per_example(x, labels, generator=generator)
                total += float((reconstruction_nll(logits, target, self.recon) + kl).sum())
                if self.recon == "mse":  # a density of continuous pixels: score the dequantised 8-bit image
                    total_8bit += float((reconstruction_nll(logits, dequantise(x, dequantising), "mse") + kl).sum())
                count += len(x)
                means.append(self.encode(x, labels)[0].float().cpu())
                classes.append(labels.cpu())
        if count == 0:
            return {}
        nelbo = total / count
        scores = {"test_nelbo": nelbo, "test_bits_per_dim": nelbo / (self.pixels * math.log(2))}
        if self.recon == "mse":  # as the flows count it: -ELBO of (v + U(0, 1)) / 256, plus log 256 per pixel
            scores["test_bits_per_dim_8bit"] = (total_8bit / count + self.pixels * math.log(256)) / (
                self.pixels * math.log(2))
        # the scatter: up to scatter_points spread over the split (a folder listed class by class keeps every class)
        keep = torch.linspace(0, count - 1, min(count, self.scatter_points)).round().long().unique()
        mu, labels = torch.cat(means)[keep], torch.cat(classes)[keep]
        if len(mu) < 3 or not torch.isfinite(mu).all():
            return scores  # nothing to see: PCA or t-SNE of one point, or of NaN codes (a diverged run), fails
        points, axis = project_2d(mu, self.scatter)
        projected = axis in ("PCA", "t-SNE")
        title = f"latent means of {len(mu)} test images" + (f" ({axis} of {self.latent_dim}-D)" if projected else "")
        axes = (f"{axis} 1", f"{axis} 2") if projected else ("z1", "z2" if axis == "z" else "")
        scores["latents"] = Scatter(points, labels if self.class_names else None, self.class_names, title, *axes)
        return scores


# genlab report: the latent scatter and the reconstructions
family_figures("vae", "cvae")(visual_figures(
    ("latents", "latent means of the test set coloured by class (PCA or t-SNE above 2-D)"), RECONSTRUCTIONS))
