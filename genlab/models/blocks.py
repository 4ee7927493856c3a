"""Network pieces and steps that several families share, so that no family file imports another: normalisation
layers, the adversarial step and its scalars, label sampling and class rows, the label code, the PatchGAN
discriminator."""

from __future__ import annotations

import torch
from torch import nn

from genlab.core.config import check_choice, check_int
from genlab.core.errors import GenlabError
from genlab.models.base import GenerativeModel


def norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)  # normalises each sample over (C, H, W): layer norm for conv maps
    return nn.Identity()


def discriminator_norm(cfg, loss) -> str:
    """model.d_norm, where `auto` means what the loss needs (layer norm for WGAN-GP, else BatchNorm)."""
    return loss.d_norm if cfg.get("d_norm", "auto") == "auto" else cfg.d_norm


def adversarial_step(model: GenerativeModel, real: torch.Tensor, fake: torch.Tensor, step: int,
                     d_forward, loss) -> dict[str, torch.Tensor]:
    """One GAN step shared by the GAN family: D on a real and a fake batch (plus the loss's penalty, then its
    clipping), then, every loss.n_critic steps, G against the updated D. Returns the diagnostics.

    d_forward(images) -> D's raw scores. `fake` must still carry G's graph.
    """
    with model.autocast():
        d_real = d_forward(real)
        d_fake = d_forward(fake.detach())
        d_loss = loss.d_loss(d_real, d_fake)
        penalty = loss.penalty(d_forward, real, fake)
    d_total = d_loss + penalty if penalty is not None else d_loss
    out = {"d_loss": d_loss.detach(), "d_grad_norm": model.update(d_total, "d")}
    loss.after_d_step(model.discriminator)
    if penalty is not None:
        out["gradient_penalty"] = penalty.detach()
    out.update(d_outputs(loss, d_real, d_fake))
    if (step + 1) % loss.n_critic == 0:
        with model.frozen(model.discriminator), model.autocast():
            g_loss = loss.g_loss(d_forward(fake))
        out.update(g_loss=g_loss.detach(), g_grad_norm=model.update(g_loss, "g"))
    return out


def d_outputs(loss, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> dict[str, torch.Tensor]:
    """D(x) and D(G(z)) (before D's step) where the loss reads D as a probability, else the critic's scores."""
    real, fake = real_scores.detach().float(), fake_scores.detach().float()
    p_real, p_fake = loss.probability(real), loss.probability(fake)
    if p_real is not None:
        return {"d_real": p_real.mean(), "d_fake": p_fake.mean()}
    return {"critic_real": real.mean(), "critic_fake": fake.mean()}


GAN_CURVES = {
    "losses": ["d_loss", "g_loss"],
    "D outputs": ["d_real", "d_fake", "critic_real", "critic_fake"],
    "gradient norms": ["d_grad_norm", "g_grad_norm"],
    "sample diversity (1 = real data)": ["sample_diversity"],
}


def class_rows(model: GenerativeModel, n_classes: int, per_class: int = 8) -> torch.Tensor:
    """A grid batch with one row per class and the same noise down each column (fixed seed)."""
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    generator = torch.Generator().manual_seed(0)
    noise_columns = torch.randn(per_class, model.nz, generator=generator)
    return model.sample(len(labels), labels=labels, noise=noise_columns.repeat(n_classes, 1))


def require_labels(name: str, spec) -> int:
    if spec.n_classes < 2:
        raise GenlabError(f"{name} is label-conditional and {spec.name} has no classes: pick a labelled dataset "
                          "(digits, mnist, fashion_mnist, cifar10, or image_folder with class subfolders)")
    return spec.n_classes


def sample_labels(n: int, n_classes: int, labels, device) -> torch.Tensor:
    """Requested labels (an int, a list or a tensor, cycled to n), or 0, 1, ..., n_classes-1, 0, 1, ..."""
    if labels is None:
        labels = torch.arange(n) % n_classes
    labels = torch.as_tensor(labels, dtype=torch.long).flatten()
    if labels.numel() == 0 or labels.min() < 0 or labels.max() >= n_classes:
        raise GenlabError(f"labels must be class numbers from 0 to {n_classes - 1}")
    return labels.repeat((n + labels.numel() - 1) // labels.numel())[:n].to(device)


class LabelCode(nn.Module):
    """Label -> a vector: one-hot (n_classes wide) or a learned embedding (embed_dim wide)."""

    def __init__(self, n_classes: int, mode: str, embed_dim: int):
        super().__init__()
        self.n_classes, self.mode = n_classes, mode
        self.embedding = nn.Embedding(n_classes, embed_dim) if mode == "embedding" else None
        self.dim = embed_dim if mode == "embedding" else n_classes

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        if self.embedding is not None:
            return self.embedding(labels)
        return nn.functional.one_hot(labels, self.n_classes).float()


def norm2d(kind: str, channels: int) -> nn.Module:
    """batch: BatchNorm (pix2pix); instance: InstanceNorm without learnt scale, as CycleGAN uses it."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    return nn.Identity()


class PatchDiscriminator(nn.Module):
    """PatchGAN: C64 (no norm) then n_layers - 1 stride-2 convolutions doubling to at most 8 ndf, one stride-1
    block, and a 1-channel 4x4 convolution. n_layers=3 is the 70x70 PatchGAN (30x30 scores at 256 px)."""

    def __init__(self, c_in: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        bias = norm != "batch"
        layers = [nn.Conv2d(c_in, ndf, 4, 2, 1), nn.LeakyReLU(0.2)]
        width = ndf
        for n in range(1, n_layers + 1):
            previous, width = width, ndf * min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(previous, width, 4, stride, 1, bias=bias), norm2d(norm, width), nn.LeakyReLU(0.2)]
        layers.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @staticmethod
    def receptive_field(n_layers: int) -> int:
        """70 for n_layers=3 (the 70x70 PatchGAN), 34 for 2, 142 for 4."""
        field = 4  # the last 4x4 stride-1 conv, walking back to the input
        field = field + 3  # the stride-1 block
        for _ in range(n_layers):
            field = field * 2 + 2
        return field


def check_patch(cfg, size_key: str = "data.size") -> None:
    check_int(cfg, "model.ngf", minimum=1)
    check_int(cfg, "model.ndf", minimum=1)
    check_int(cfg, "model.d_layers", minimum=1)
    check_choice(cfg, "model.norm", ("batch", "instance", "none"))
    size, layers = int(cfg.data.size), int(cfg.model.d_layers)
    if size // 2**layers < 3:  # the two 4x4 stride-1 convolutions that follow need 3 x 3 to give any score
        raise GenlabError(f"model.d_layers={layers} down-samples a {size}-pixel image below 3 x 3: lower "
                          f"model.d_layers (2 for 32 px, 3 for 256 px) or raise data.size")
