"""Adversarial losses by name. Each takes discriminator logits (no sigmoid in D) and returns scalars."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genlab.registry import LOSSES


class AdversarialLoss:
    """d_loss(real_logits, fake_logits) for the discriminator, g_loss(fake_logits) for the generator."""

    name = ""
    output = "logit"  # what D's last layer emits; every loss here applies its own link function

    def __init__(self, cfg=None):
        self.cfg = cfg

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@LOSSES.register("nonsaturating")
class NonSaturating(AdversarialLoss):
    """The BCE loss of the DCGAN reports. D: -log D(x) - log(1 - D(G(z))); G: -log D(G(z)).

    Computed from logits with binary_cross_entropy_with_logits, which equals Sigmoid + BCELoss but stays
    finite when D is confident and is safe under mixed precision.
    """

    name = "nonsaturating"

    def d_loss(self, real, fake):
        return F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + F.binary_cross_entropy_with_logits(
            fake, torch.zeros_like(fake)
        )

    def g_loss(self, fake):
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
