"""The contract every genlab model keeps with the one trainer (see docs/architecture.md)."""

from __future__ import annotations

import contextlib
from typing import ClassVar

import torch
from torch import nn

from genlab.core.errors import GenlabError
from genlab.core.optim import build_optimizer, optimizer_settings
from genlab.models.capabilities import Translates


class GenerativeModel(nn.Module):
    """A model owns its networks, its optimisers and its training step; the trainer owns the loop.

    Subclasses set `default_optim` (their paper's optimiser settings, used where optim.* is null),
    implement networks(), training_step() and visuals(), declare what they can do by inheriting capabilities
    (genlab/models/capabilities.py: Samples, Translates, Upscales, ScoresDensity, Reconstructs, with their
    methods), and may set `curve_groups` (which scalars share a panel in curves.png).
    """

    default_optim: ClassVar[dict] = {"lr": 1e-3, "betas": (0.9, 0.999)}
    default_schedule: ClassVar[dict] = {}  # the paper's learning-rate schedule (genlab/train/schedules.py), where optim.schedule.* is null
    accepts: tuple[str, ...] = ("images",)  # the data kinds it trains on (a dataset's `kind`, DataSpec.kind)
    objective: tuple[str | None, str | None] = (None, None)  # (scalar, "min"|"max") a sweeper optimises
    adversarial: bool = False  # trains against a discriminator with a loss of the `loss` group, which its model
    #                            YAML composes (`/loss: NAME` in its defaults); the others' configs have no loss
    ema_networks: tuple[str, ...] = ()  # the networks (names in networks()) that train.ema averages, e.g. ("g",)
    translates: tuple[str, str] | None = None  # (input, target) names in a batch for a translation model, e.g.
    #                                            ("a", "b") or ("lr", "hr"): `genlab eval`'s translation metric
    score_is_8bit_nll: bool = False  # the score is -log p of the 8-bit image in nats (a flow's): eval then also ranks
    #                                  by the input-complexity corrected score -log2 p(x) - L(x)
    curve_groups: ClassVar[dict[str, list[str]]] = {}
    replaces_metrics: tuple[str, ...] = ()  # generic metrics a family scores its own way instead (SR: translation,
    #                                         by the `superres` metric's published protocol): `genlab eval` leaves
    #                                         them out
    receptive_radius: int | None = None  # input pixels an output pixel sees (a translation network's): whole images
    #                                      then go through it in tiles (genlab/core/tiles.py); None = always whole
    output_scale: int = 1  # output pixels per input pixel along a side (a 4x upscaler: 4)

    @classmethod
    def check_config(cls, cfg) -> None:
        """The model's own keys (model.*) and what it needs of the rest of the config (its data's size, a loss it
        cannot train with), checked before anything is built: raise GenlabError with one line. None by default."""

    def __init__(self):
        super().__init__()
        self.engine = None  # set by the trainer: AMP, grad scaling and (later) DDP live there
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

    # ---- networks and optimisers -------------------------------------------------------------------
    def networks(self) -> dict[str, nn.Module]:
        """Optimiser name -> the module it trains, e.g. {"g": generator, "d": discriminator}."""
        raise NotImplementedError

    def compile_targets(self) -> list[nn.Module]:
        """What device.compile compiles (each in place): the modules the model calls as `module(x)`. By default
        each network, the members of a network that is a container (ModuleList, ModuleDict), and the children
        of a network that is the model itself (a VAE's encoder and decoder). A model whose networks work through
        other methods (a flow's layers) names its own."""
        out: list[nn.Module] = []

        def add(module: nn.Module) -> None:
            if isinstance(module, (nn.ModuleList, nn.ModuleDict)):
                for member in module.children():
                    add(member)
            elif module not in out:
                out.append(module)

        for net in self.networks().values():
            if net is self:
                for child in self.children():
                    add(child)
            else:
                add(net)
        return out

    def configure_optimizers(self, optim_cfg) -> dict[str, torch.optim.Optimizer]:
        self.optimizer_settings = {
            name: optimizer_settings(optim_cfg, name, self.default_optim) for name in self.networks()
        }
        self.optimizers = {
            name: build_optimizer(self.optimizer_settings[name], net.parameters())
            for name, net in self.networks().items()
        }
        return self.optimizers

    # ---- the step ----------------------------------------------------------------------------------
    def training_step(self, batch, step: int) -> dict[str, torch.Tensor]:
        """One optimisation step on a batch (images in [-1, 1], labels); returns detached scalars."""
        raise NotImplementedError

    def autocast(self):
        return self.engine.autocast() if self.engine is not None else contextlib.nullcontext()

    def update(self, loss: torch.Tensor, name: str) -> torch.Tensor:
        """zero_grad, backward and step for optimiser `name`, through the trainer's engine (AMP scaling).
        Returns the L2 norm of the gradients applied (a diagnostic: vanishing gradients show here)."""
        return self.engine.update(loss, name, self.optimizers[name])

    @staticmethod
    @contextlib.contextmanager
    def frozen(module: nn.Module):
        """No weight gradients for `module` inside the block (e.g. D during G's step): less work, no stale grads."""
        flags = [p.requires_grad for p in module.parameters()]
        module.requires_grad_(False)
        try:
            yield
        finally:
            for p, flag in zip(module.parameters(), flags):
                p.requires_grad_(flag)

    # ---- what it can do: genlab/models/capabilities.py (Samples.sample, Translates.translate, ...) ----------
    # the commands ask isinstance(model, Samples) first; these guards only give a direct call its one line
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels=None) -> torch.Tensor:
        translates = isinstance(self, Translates)
        raise GenlabError(f"{type(self).__name__} does not draw images from noise; it "
                          + ("translates images: use `genlab translate RUN INPUT OUTPUT`" if translates
                             else "has no sampler"))

    def translate(self, x: torch.Tensor, direction: str = "AtoB") -> torch.Tensor:
        raise GenlabError(f"{type(self).__name__} does not translate images: pass a pix2pix or cyclegan run")

    size_multiple = 1  # a translation network's inputs need sides divisible by this (genlab translate pads to it)

    @torch.no_grad()
    def visuals(self, batch) -> dict[str, torch.Tensor]:
        """Named image batches for the sample grids; `batch` is a fixed evaluation batch. The trainer calls it
        (and evaluate) under torch.no_grad(): a sampler that needs gradients wraps itself in torch.enable_grad()."""
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, batches) -> dict:
        """Scores on held-out batches (test split, file order): name -> float, logged as test/<name> if the
        name starts with test_, or name -> a core.plots.Plot (Scatter, DensityMap), drawn as
        samples/epoch_XXX_<name>.png."""
        return {}

    @contextlib.contextmanager
    def evaluating(self):
        """Eval mode (BatchNorm running stats, no dropout) inside the block, the previous mode after it."""
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    @property
    def label_values(self) -> int:
        """How many values sample(labels=...) takes (classes, or InfoGAN's categorical code); 0 = it takes none."""
        return int(getattr(self, "n_classes", 0))

    def visual_row_titles(self) -> dict[str, list[str]]:
        """Visual name -> a title for each row of its grid (e.g. the class of each row)."""
        return {}

    def extra_state(self) -> dict:
        """Anything beyond parameters and buffers that a checkpoint must carry (e.g. an image pool)."""
        return {}

    # ---- starting from another run (train.init_from) -------------------------------------------------
    def init_weights(self, source_model: str, state: dict) -> str | None:
        """Take weights from another run's model state (`train.init_from`); return a line saying what was
        taken. The default returns None: the trainer then loads a run of the same model whole and refuses any
        other. A model that starts from another (SRGAN's generator from an SRResNet run) maps the names here."""
        return None

    # ---- networks used only inside the loss -------------------------------------------------------
    def loss_network(self, name: str, build) -> nn.Module:
        """A fixed network used only to compute a loss (VGG features for a perceptual loss): built by
        `build()` on first use, frozen, in eval mode, on this model's device. It is kept outside the module
        tree, so it is never saved in a checkpoint and `genlab sample` never needs it."""
        cache = self.__dict__.setdefault("_loss_networks", {})
        if name not in cache:
            net = build().to(self.device).eval()
            net.requires_grad_(False)
            cache[name] = net
        elif next(cache[name].parameters(), torch.empty(0, device=self.device)).device != self.device:
            cache[name] = cache[name].to(self.device)
        return cache[name]

    def load_extra_state(self, state: dict) -> None:
        pass

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


def init_dcgan_weights(module: nn.Module) -> None:
    """N(0, 0.02) for conv weights, N(1, 0.02) for BatchNorm scales (Radford et al.)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
