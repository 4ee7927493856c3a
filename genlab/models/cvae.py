"""Conditional VAE (report 003): the one-hot label joins the encoder's input as constant channels and joins z
at the decoder, so q(z | x, c) and p(x | z, c); a class is generated on demand by fixing c."""

from __future__ import annotations

import torch
from torch import nn

from genlab.core.figures import CLASS_ROWS, family_figures, visual_figures
from genlab.core.registry import MODELS
from genlab.models.blocks import class_rows, require_labels, sample_labels
from genlab.models.vae import VAE


@MODELS.register("cvae")
class CVAE(VAE):
    score = None  # its ELBO needs the image's class, which an out-of-distribution image does not have

    def condition_width(self, spec) -> int:
        self.n_classes = require_labels("cvae", spec)
        self.class_names = list(spec.class_names) or [str(i) for i in range(self.n_classes)]
        return self.n_classes

    def one_hot(self, labels: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(labels.long(), self.n_classes).float()

    def encoder_input(self, x: torch.Tensor, labels) -> torch.Tensor:
        code = self.one_hot(labels).to(x)
        return torch.cat([x, code[:, :, None, None].expand(-1, -1, *x.shape[2:])], dim=1)

    def decoder_input(self, z: torch.Tensor, labels) -> torch.Tensor:
        return torch.cat([z, self.one_hot(labels).to(z)], dim=1)

    def sample_condition(self, n: int, labels) -> torch.Tensor:
        """Requested labels (an int, a list or a tensor), or 0, 1, 2, ... cycled over the classes."""
        return sample_labels(n, self.n_classes, labels, self.device)

    def visual_row_titles(self):
        return {"classes": self.class_names}

    @torch.no_grad()
    def visuals(self, batch):
        visuals = super().visuals(batch)
        visuals["classes"] = class_rows(self, self.n_classes)  # one row per class, same z down each column
        return visuals


family_figures("cvae")(visual_figures(CLASS_ROWS))  # genlab report: one row per class
