"""Adversarial losses by name. D emits raw scores (logits); each loss applies its own link function.

A loss also owns what it asks of the discriminator's training: how many D steps per G step (n_critic),
weight clipping after each D step (WGAN), and a penalty term (WGAN-GP), so every GAN model gets all six
losses by calling the same four methods.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genlab.core.config import check_float, check_int, get
from genlab.core.registry import LOSSES


class AdversarialLoss:
    """d_loss(real, fake) and g_loss(fake) on D's raw outputs; plus n_critic, penalty() and after_d_step()."""

    name = ""
    n_critic = 1
    # What D's normalisation must be for this loss to be valid: a gradient penalty per sample is wrong with
    # BatchNorm, which mixes the samples of a batch (Gulrajani et al. use layer norm in the critic).
    d_norm = "batch"

    def __init__(self, cfg=None):
        self.cfg = cfg
        if cfg is not None and "n_critic" in cfg:
            self.n_critic = int(cfg.n_critic)

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        real_term, fake_term = self.d_terms(real, fake)
        return real_term + fake_term

    def d_terms(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """D's loss on the real scores and on the fake ones (d_loss is their sum): pix2pix's D_real, D_fake."""
        raise NotImplementedError

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def penalty(self, critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor | None:
        """An extra term for D's loss, computed from the critic function itself (None = no term)."""
        return None

    def after_d_step(self, discriminator: torch.nn.Module) -> None:
        """Called after each D optimiser step (WGAN clips the weights here)."""

    def probability(self, scores: torch.Tensor) -> torch.Tensor | None:
        """D's output read as P(real) where the loss gives it that meaning, for the D(x)/D(G(z)) curves."""
        return torch.sigmoid(scores)


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


@LOSSES.register("minimax")
class Minimax(AdversarialLoss):
    """Goodfellow et al.'s original game. D: -log D(x) - log(1 - D(G(z))); G minimises log(1 - D(G(z))).

    G's gradient vanishes when D confidently rejects its samples (early training): the saturating loss.
    """

    name = "minimax"

    def d_terms(self, real, fake):
        return _bce(real, 1.0), _bce(fake, 0.0)

    def g_loss(self, fake):
        # log(1 - sigmoid(s)) = -softplus(s); minimising it = minimising -BCE(fake, 0)
        return -F.softplus(fake).mean()


@LOSSES.register("nonsaturating")
class NonSaturating(AdversarialLoss):
    """The BCE loss of the DCGAN reports. D: -log D(x) - log(1 - D(G(z))); G: -log D(G(z)).

    Computed from logits with binary_cross_entropy_with_logits, which equals Sigmoid + BCELoss but stays
    finite when D is confident and is safe under mixed precision.
    """

    name = "nonsaturating"

    def d_terms(self, real, fake):
        return _bce(real, 1.0), _bce(fake, 0.0)

    def g_loss(self, fake):
        return _bce(fake, 1.0)


@LOSSES.register("lsgan")
class LeastSquares(AdversarialLoss):
    """Mao et al., as the report writes it: D: (D(x) - 1)^2 + D(G(z))^2; G: (D(G(z)) - 1)^2. No sigmoid."""

    name = "lsgan"

    def d_terms(self, real, fake):
        return (real - 1).pow(2).mean(), fake.pow(2).mean()

    def g_loss(self, fake):
        return (fake - 1).pow(2).mean()

    def probability(self, scores):
        return None


@LOSSES.register("wgan")
class Wasserstein(AdversarialLoss):
    """Arjovsky et al. Critic: mean f(G(z)) - mean f(x); G: -mean f(G(z)); weights clipped to [-c, c]."""

    name = "wgan"
    n_critic = 5

    def __init__(self, cfg=None):
        super().__init__(cfg)
        self.clip = float(cfg.clip) if cfg is not None and "clip" in cfg else 0.01

    def d_terms(self, real, fake):
        return -real.mean(), fake.mean()  # their sum fake - real is the same float: a - b == -b + a

    def g_loss(self, fake):
        return -fake.mean()

    @torch.no_grad()
    def after_d_step(self, discriminator):
        for p in discriminator.parameters():
            p.clamp_(-self.clip, self.clip)

    def probability(self, scores):
        return None


@LOSSES.register("wgan_gp")
class WassersteinGP(Wasserstein):
    """Gulrajani et al. WGAN with lambda * (||grad_x f(x_hat)|| - 1)^2 on random interpolates; no clipping."""

    name = "wgan_gp"
    d_norm = "layer"

    def __init__(self, cfg=None):
        AdversarialLoss.__init__(self, cfg)
        self.gp_weight = float(cfg.gp_weight) if cfg is not None and "gp_weight" in cfg else 10.0

    def after_d_step(self, discriminator):
        pass

    def penalty(self, critic, real, fake):
        return self.gp_weight * gradient_penalty(critic, real, fake)


@LOSSES.register("hinge")
class Hinge(AdversarialLoss):
    """Lim & Ye / Miyato et al. D: relu(1 - D(x)) + relu(1 + D(G(z))); G: -D(G(z))."""

    name = "hinge"

    def d_terms(self, real, fake):
        return F.relu(1 - real).mean(), F.relu(1 + fake).mean()

    def g_loss(self, fake):
        return -fake.mean()

    def probability(self, scores):
        return None


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """mean over the batch of (||d critic(x_hat) / d x_hat||_2 - 1)^2, x_hat uniformly between real and fake.

    Computed in fp32 outside autocast: in fp16 the small input gradients would underflow to 0.
    """
    with torch.autocast(device_type=real.device.type, enabled=False):
        real, fake = real.detach().float(), fake.detach().float()
        alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)
        x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        scores = critic(x_hat).float()
        (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
        return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


def check_keys(cfg) -> None:
    """loss.*: the loss's own keys (n_critic, clip, gp_weight) where it has them."""
    loss_keys = get(cfg, "loss")
    if "n_critic" in loss_keys:
        check_int(cfg, "loss.n_critic", minimum=1)
    if "clip" in loss_keys:
        check_float(cfg, "loss.clip", positive=True)
    if "gp_weight" in loss_keys:
        check_float(cfg, "loss.gp_weight", minimum=0.0)
