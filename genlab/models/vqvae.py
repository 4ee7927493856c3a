"""VQ-VAE (van den Oord et al. 2017; report 003): a conv encoder, a codebook of K vectors, nearest-neighbour
quantisation with the straight-through gradient, and a conv decoder.

loss = reconstruction + ||sg[z_e] - e||^2 + beta ||z_e - sg[e]||^2. With model.codebook_update=ema the codebook
term is replaced by exponential moving averages of the vectors assigned to each code (the paper's appendix).
Codes no vector has picked for model.restart_after steps are moved onto encoder outputs of the current batch.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from genlab.core import distributed
from genlab.core.config import check_choice, check_float, check_int
from genlab.core.errors import GenlabError
from genlab.core.figures import RECONSTRUCTIONS, Figure, family_figures, final_visual
from genlab.core.imaging import psnr_of_mse
from genlab.core.plots import pair_rows
from genlab.core.registry import MODELS
from genlab.models.base import GenerativeModel
from genlab.models.capabilities import Reconstructs, Samples


class Residual(nn.Module):
    """x + conv1x1(ReLU(conv3x3(ReLU(x)))), the paper's residual block."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.block = nn.Sequential(nn.ReLU(), nn.Conv2d(width, hidden, 3, 1, 1), nn.ReLU(),
                                   nn.Conv2d(hidden, width, 1))

    def forward(self, x):
        return x + self.block(x)


def residual_stack(width: int, hidden: int, n: int) -> nn.Sequential:
    return nn.Sequential(*[Residual(width, hidden) for _ in range(n)], nn.ReLU())


class VQEncoder(nn.Module):
    """Two 4x4 stride-2 convs (size / 4), a 3x3 conv, residual blocks, then 1x1 to the code dimension."""

    def __init__(self, channels: int, width: int, res_width: int, n_res: int, code_dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width // 2, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(width // 2, width, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(width, width, 3, 1, 1),
            residual_stack(width, res_width, n_res),
            nn.Conv2d(width, code_dim, 1),
        )

    def forward(self, x):
        return self.net(x)


class VQDecoder(nn.Module):
    """The mirror image: 3x3 conv, residual blocks, two 4x4 stride-2 transposed convs (no output squashing)."""

    def __init__(self, channels: int, width: int, res_width: int, n_res: int, code_dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(code_dim, width, 3, 1, 1),
            residual_stack(width, res_width, n_res),
            nn.ConvTranspose2d(width, width // 2, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(width // 2, channels, 4, 2, 1),
        )

    def forward(self, z):
        return self.net(z)


def nearest_code(vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the codebook row nearest (L2) to each of vectors [N, D]; codebook [K, D]."""
    distances = (vectors.pow(2).sum(1, keepdim=True) - 2 * vectors @ codebook.T + codebook.pow(2).sum(1)[None])
    return distances.argmin(dim=1)


def perplexity(counts: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of the code-usage distribution: K if every code is used equally, 1 if one code takes all."""
    p = counts.float() / counts.sum().clamp(min=1)
    return torch.exp(-(p * torch.log(p.clamp(min=1e-12))).sum())


class VectorQuantizer(nn.Module):
    def __init__(self, size: int, dim: int, update: str = "loss", decay: float = 0.99, restart_after: int = 100,
                 eps: float = 1e-5):
        super().__init__()
        self.size, self.dim, self.update, self.decay, self.restart_after, self.eps = size, dim, update, decay, \
            restart_after, eps
        self.codebook = nn.Parameter(torch.empty(size, dim).uniform_(-1 / size, 1 / size),
                                     requires_grad=update == "loss")
        self.register_buffer("ema_count", torch.ones(size))
        self.register_buffer("ema_sum", self.codebook.detach().clone())
        self.register_buffer("last_used", torch.zeros(size, dtype=torch.long))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def forward(self, z_e: torch.Tensor) -> dict[str, torch.Tensor]:
        """z_e [B, D, H, W] -> z_q with the straight-through gradient, the code indices [B, H, W], the loss
        terms, and usage statistics. In training mode it also updates the codebook (EMA) and restarts dead codes."""
        z_e = z_e.float()
        b, d, h, w = z_e.shape
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, d)
        if self.training and not self.initialised:
            self._reset(torch.arange(self.size), flat)  # data-dependent start: codes on encoder outputs
            self.initialised.fill_(True)
        indices = nearest_code(flat.detach(), self.codebook.detach())
        counts = torch.bincount(indices, minlength=self.size)
        if self.training:
            distributed.all_sum(counts)  # data-parallel: usage over the global batch (equal on every rank)
        restarts = torch.zeros((), device=z_e.device)
        if self.training:
            self.steps += 1
            self.last_used[counts > 0] = self.steps
            if self.update == "ema":
                self._ema(flat.detach(), indices, counts)
            if self.restart_after > 0:
                dead = torch.nonzero(self.steps - self.last_used >= self.restart_after).flatten()
                if len(dead):
                    self._reset(dead, flat)
                    restarts = torch.tensor(float(len(dead)))
        quantized = self.codebook[indices]
        z_q = quantized.reshape(b, h, w, d).permute(0, 3, 1, 2)
        commitment = F.mse_loss(z_e, z_q.detach())
        codebook = F.mse_loss(z_q, z_e.detach()) if self.update == "loss" else torch.zeros((), device=z_e.device)
        return {
            "z_q": z_e + (z_q - z_e).detach(),  # straight-through: forward z_q, backward the identity to z_e
            "indices": indices.reshape(b, h, w),
            "commitment": commitment,
            "codebook": codebook,
            "counts": counts,
            "perplexity": perplexity(counts),
            "usage": (counts > 0).float().mean(),
            "restarts": restarts,
        }

    @torch.no_grad()
    def _ema(self, flat: torch.Tensor, indices: torch.Tensor, counts: torch.Tensor) -> None:
        one_hot = F.one_hot(indices, self.size).type_as(flat)
        self.ema_count.mul_(self.decay).add_(counts.float(), alpha=1 - self.decay)
        sums = distributed.all_sum(one_hot.T @ flat)  # (counts already are the global batch's)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + self.eps) / (n + self.size * self.eps) * n  # Laplace: no division by 0
        self.codebook.data.copy_(self.ema_sum / smoothed[:, None])

    @torch.no_grad()
    def _reset(self, codes: torch.Tensor, flat: torch.Tensor) -> None:
        """Move `codes` onto randomly chosen encoder outputs of this batch (with replacement if too few)."""
        pick = torch.randint(len(flat), (len(codes),), device=flat.device)
        vectors = flat.detach()[pick]
        self.codebook.data[codes] = vectors
        self.ema_sum[codes] = vectors
        distributed.from_rank0(self.codebook, self.ema_sum)  # data-parallel: every rank takes rank 0's picks
        self.ema_count[codes] = 1.0
        self.last_used[codes] = self.steps


@MODELS.register("vqvae")
class VQVAE(GenerativeModel, Samples, Reconstructs):
    """Adam 2e-4 as in the paper."""

    default_optim: ClassVar[dict] = {"lr": 2e-4, "betas": (0.9, 0.999)}
    objective = ("test_mse", "min")  # held-out reconstruction error
    curve_groups: ClassVar[dict] = {
        "loss": ["loss", "recon_loss", "test_mse"],
        "codebook": ["codebook_loss", "commitment_loss"],
        "perplexity": ["perplexity", "test_perplexity"],
        "code usage (fraction of K)": ["code_usage", "test_code_usage"],
        "test PSNR (dB)": ["test_psnr"],
    }

    @staticmethod
    def check_config(cfg) -> None:
        for key in ("width", "res_width", "code_dim", "codebook_size"):
            check_int(cfg, f"model.{key}", minimum=1)
        check_int(cfg, "model.n_res", minimum=0)
        check_int(cfg, "model.restart_after", minimum=0)
        check_float(cfg, "model.beta", minimum=0.0)
        check_float(cfg, "model.ema_decay", minimum=0.0)
        if not cfg.model.ema_decay < 1:
            raise GenlabError(f"model.ema_decay must be below 1, got {cfg.model.ema_decay}")
        check_choice(cfg, "model.codebook_update", ("loss", "ema"))
        if cfg.model.width % 2:
            raise GenlabError(f"model.width must be even (the first conv has width/2), got {cfg.model.width}")
        if check_int(cfg, "data.size") % 4:
            raise GenlabError(f"vqvae needs data.size divisible by 4, got {cfg.data.size}: pass e.g. data.size=32")

    def __init__(self, cfg, spec, loss=None):
        super().__init__()
        if spec.size % 4:
            raise GenlabError(f"vqvae needs data.size divisible by 4, got {spec.size}")
        self.beta = float(cfg.beta)
        width, res_width, n_res, dim = int(cfg.width), int(cfg.res_width), int(cfg.n_res), int(cfg.code_dim)
        self.encoder = VQEncoder(spec.channels, width, res_width, n_res, dim)
        self.quantizer = VectorQuantizer(int(cfg.codebook_size), dim, cfg.codebook_update, float(cfg.ema_decay),
                                         int(cfg.restart_after))
        self.decoder = VQDecoder(spec.channels, width, res_width, n_res, dim)

    def networks(self):
        return {"vqvae": self}

    def compile_targets(self):
        """device.compile: the encoder and decoder; the quantiser (a nearest-code search, counts, dead-code
        restarts) is data-dependent work that compiles to little."""
        return [self.encoder, self.decoder]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> code indices [B, size/4, size/4]."""
        return self.quantizer(self.encoder(x))["indices"]

    def decode_codes(self, indices: torch.Tensor) -> torch.Tensor:
        z_q = self.quantizer.codebook[indices].permute(0, 3, 1, 2)
        return self.decoder(z_q).float().clamp(-1, 1)

    def training_step(self, batch, step):
        x = batch["image"]
        with self.autocast():
            z_e = self.encoder(x)
        q = self.quantizer(z_e)  # fp32: distances and the codebook do not belong in half precision
        with self.autocast():
            recon = self.decoder(q["z_q"])
        recon_loss = F.mse_loss(recon.float(), x.float())
        loss = recon_loss + q["codebook"] + self.beta * q["commitment"]
        self.update(loss, "vqvae")
        scalars = {"loss": loss, "recon_loss": recon_loss, "commitment_loss": q["commitment"],
                   "perplexity": q["perplexity"], "code_usage": q["usage"], "restarts": q["restarts"]}
        if self.quantizer.update == "loss":
            scalars["codebook_loss"] = q["codebook"]
        return {k: v.detach() for k, v in scalars.items()}

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, labels=None) -> torch.Tensor:
        with self.evaluating():
            images = self.decode_codes(self.encode(x))
        return images

    @torch.no_grad()
    def sample(self, n, *, generator=None, labels=None):
        raise GenlabError("vqvae learns no prior over its codes, so it cannot sample new images; pass images "
                          "through it with `genlab reconstruct RUN IMAGES`")

    @torch.no_grad()
    def visuals(self, batch):
        row = min(8, batch.size)
        x = batch["image"][: max(row, min(32, batch.size) // row * row)]
        return {"reconstructions": pair_rows(x, self.reconstruct(x), row)}  # inputs over reconstructions

    @torch.no_grad()
    def evaluate(self, batches) -> dict:
        """Test-split reconstruction error (MSE on [-1, 1] pixels, PSNR on [0, 1]) and how the codes are used."""
        squared, pixels, counts = 0.0, 0, torch.zeros(self.quantizer.size, dtype=torch.long)
        with self.evaluating():
            for x in (b["image"] for b in batches):
                indices = self.encode(x)
                squared += float((self.decode_codes(indices) - x.float()).pow(2).sum())
                pixels += x.numel()
                counts += torch.bincount(indices.flatten().cpu(), minlength=self.quantizer.size)
        if pixels == 0:
            return {}
        mse = squared / pixels
        return {
            "test_mse": mse,
            "test_psnr": float(psnr_of_mse(mse, peak=2.0)),  # peak 1 on [0, 1] = peak 2 on [-1, 1]
            "test_perplexity": float(perplexity(counts)),
            "test_code_usage": float((counts > 0).float().mean()),
        }


@family_figures("vqvae")
def vq_figures(run, report, prefix):
    """genlab report: the reconstructions, and what `genlab reconstruct` wrote for this run."""
    figures = final_visual(run, report, prefix, *RECONSTRUCTIONS)
    for png in sorted((run.path / "reconstructions").glob("*.png")):
        figures.append(Figure(report.copy(png, f"{prefix}reconstruct_{png.name}"),
                              f"genlab reconstruct: {png.stem} through this run (inputs over reconstructions)"))
    return figures
