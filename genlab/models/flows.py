"""Normalizing flows (seed 001): MADE, MAF, IAF and RealNVP, with exact likelihoods.

Every transform here has two directions, named the same way everywhere:

    to_noise(x) -> (z, log|det dz/dx|)    the density direction, data -> noise: what log p(x) needs
    to_data(z)  -> x                      the sampling direction, noise -> data: what a sample needs

and log p(x) = log N(z; 0, I) + log|det dz/dx| (change of variables). Which direction is one pass and which is
sequential is what tells the autoregressive flows apart, and they are easy to mislabel:

    MAF layer   z_i = (x_i - t_i(x_<i)) exp(-s_i(x_<i))   density: one MADE pass;   sampling: D passes
    IAF layer   x_i = z_i exp(s_i(z_<i)) + t_i(z_<i)      sampling: one MADE pass;  density: D passes
    coupling    z_b = (x_b - t(x_a)) exp(-s(x_a))         both one pass (RealNVP); additive: s = 0, log-det 0

Raw log-scales s are clamped to [-clamp, clamp] (model.log_scale_clamp, 5). Images are made continuous by
uniform dequantisation of the 8-bit values and a logit transform (model.logit_lambda, 1e-6) whose log-det is
counted: `test_nll_logit` is the negative log-likelihood in the logit space (the MAF paper's MNIST table, about
1300 nats), `test_nll` and `test_bits_per_dim_8bit` are of the dequantised 8-bit pixels in [0, 256)^D (the
bits/dim of published image tables). On vector data (toy densities) the flow works on the points as they are.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from genlab.core.config import check_choice, check_float, check_int, get
from genlab.core.errors import GenlabError
from genlab.core.figures import family_figures, visual_figures
from genlab.core.plots import DensityMap
from genlab.core.registry import DATASETS, MODELS
from genlab.data.base import dequantise
from genlab.models.base import GenerativeModel
from genlab.models.capabilities import Samples, ScoresDensity

LOG_2PI = math.log(2 * math.pi)
LOG_256 = math.log(256.0)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) per example, summed over every dimension after the first."""
    return -0.5 * (z.pow(2) + LOG_2PI).flatten(1).sum(1)


# ---- images <-> the flow's continuous space ---------------------------------------------------------------
class Dequantize:
    """8-bit images in [-1, 1] <-> the logit space the flow models.

    to_flow: v = the 8-bit value, u = (v + U(0, 1)) / 256 in [0, 1), y = logit(lam + (1 - 2 lam) u); returns y and
    log|dy/du| per image, so log p(u) = log p(y) + log|dy/du| and log p(v) = log p(u) - D log 256 (the density of
    the dequantised pixels in [0, 256)^D, whose -log2 is the usual bits of an 8-bit image)."""

    def __init__(self, lam: float):
        self.lam = float(lam)

    def to_flow(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        u = dequantise(x, generator)
        s = self.lam + (1 - 2 * self.lam) * u
        y = torch.log(s) - torch.log1p(-s)
        log_det = (math.log1p(-2 * self.lam) - torch.log(s) - torch.log1p(-s)).flatten(1).sum(1)
        return y, log_det

    def to_image(self, y: torch.Tensor) -> torch.Tensor:
        """The inverse, onto the 8-bit grid: y -> u -> floor(256 u) -> [-1, 1]."""
        u = (torch.sigmoid(y.float()) - self.lam) / (1 - 2 * self.lam)
        values = torch.floor(torch.nan_to_num(u, nan=0.0) * 256).clamp(0, 255)
        return values / 127.5 - 1


# ---- MADE -------------------------------------------------------------------------------------------------
class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask [out, in] (a buffer: saved with the run)."""

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor):
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


def input_degrees(dim: int, order: str, generator: torch.Generator | None = None, reverse: bool = False) -> torch.Tensor:
    """The degree (1..D) of each input: 1..D in order (natural), reversed, or a random permutation."""
    if order == "random":
        return torch.randperm(dim, generator=generator) + 1
    degrees = torch.arange(1, dim + 1)
    return degrees.flip(0) if reverse else degrees


def hidden_degrees(width: int, dim: int) -> torch.Tensor:
    """Degrees of a hidden layer's units, spread evenly over 1..D-1 (every value once before any repeats when
    width >= D - 1; with fewer units than D - 1, evenly spaced values from 1 to D - 1, so every input but the last
    (which no output may see) still reaches a unit)."""
    top = max(dim - 1, 1)
    if width >= top:
        return torch.arange(width) % top + 1
    return torch.linspace(1, top, width).round().long()


class MADE(nn.Module):
    """Masked autoencoder for distribution estimation (Germain et al. 2015): [N, D] -> (shift, log_scale) [N, D],
    output i a function of the inputs whose degree is below input i's only.

    Degrees: inputs get `degrees` (a permutation of 1..D); the units of every hidden layer get 1..D-1 spread
    evenly (hidden_degrees).
    A hidden weight from a unit of degree m to one of degree m' is on only if m' >= m; an output weight into
    output i only if deg(i) > m (strict), so output i never sees x_i or any later x. The output layer starts at
    zero: the flow starts as the identity."""

    def __init__(self, degrees: torch.Tensor, hidden: list[int]):
        super().__init__()
        dim = len(degrees)
        self.register_buffer("degrees", degrees.clone().long())
        previous, layers = degrees, []
        for width in hidden:
            current = hidden_degrees(width, dim)
            layers += [MaskedLinear(len(previous), width, current[:, None] >= previous[None, :]), nn.ReLU()]
            previous = current
        out_degrees = degrees.repeat(2)  # shift, then log-scale, for each input
        self.out = MaskedLinear(len(previous), 2 * dim, out_degrees[:, None] > previous[None, :])
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shift, log_scale = self.out(self.body(x)).chunk(2, dim=1)
        return shift, log_scale

    def masked_weights(self) -> tuple[list, tuple]:
        """The masked weights, made once for the D passes of a sequential solve (not once per pass: autograd
        would keep every copy)."""
        hidden = [(m.weight * m.mask, m.bias) for m in self.body if isinstance(m, MaskedLinear)]
        return hidden, (self.out.weight * self.out.mask, self.out.bias)

    def column(self, x: torch.Tensor, i: int, weights) -> tuple[torch.Tensor, torch.Tensor]:
        """(shift_i, log_scale_i) [N] alone: the hidden layers, then only the two output units of input i."""
        hidden, (w_out, b_out) = weights
        for w, b in hidden:
            x = F.relu(F.linear(x, w, b))
        rows = [i, len(self.degrees) + i]
        out = F.linear(x, w_out[rows], b_out[rows])
        return out[:, 0], out[:, 1]

    def positions(self) -> list[int]:
        """The input indices in increasing degree: the order a sequential pass fills them in."""
        return torch.argsort(self.degrees).tolist()


class _AutoregressiveLayer(nn.Module):
    """An affine autoregressive layer around one MADE; MAFLayer and IAFLayer differ only in which side the MADE
    reads (data x for MAF, noise z for IAF), so in which direction one pass suffices."""

    def __init__(self, made: MADE, clamp: float):
        super().__init__()
        self.made, self.clamp = made, clamp

    def params(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shift, log_scale = self.made(v)
        return shift, log_scale.clamp(-self.clamp, self.clamp)

    def _solve(self, target: torch.Tensor, forward: bool) -> torch.Tensor:
        """D sequential MADE passes: fill the unknown side one dimension at a time, in increasing degree.
        forward=True solves z from x for IAF (z_i = (x_i - t_i(z_<i)) exp(-s_i(z_<i))); False solves x from z for
        MAF (x_i = z_i exp(s_i(x_<i)) + t_i(x_<i)). Each pass computes only the two outputs of its dimension,
        and nothing is written in place, so autograd (IAF training) sees every pass."""
        out = torch.zeros_like(target)
        weights = self.made.masked_weights()
        units = torch.eye(target.shape[1], dtype=target.dtype, device=target.device)
        for i in self.made.positions():
            shift, log_scale = self.made.column(out, i, weights)
            log_scale = log_scale.clamp(-self.clamp, self.clamp)
            value = (target[:, i] - shift) * torch.exp(-log_scale) if forward else target[:, i] * torch.exp(log_scale) + shift
            out = out + units[i] * value[:, None]  # out[:, i] was 0
        return out


class MAFLayer(_AutoregressiveLayer):
    """Masked autoregressive flow layer (Papamakarios et al. 2017). Density direction (x -> z) in ONE pass:
    z = (x - t(x)) exp(-s(x)); sampling direction (z -> x) in D passes, one dimension at a time."""

    def to_noise(self, x):
        shift, log_scale = self.params(x)
        return (x - shift) * torch.exp(-log_scale), -log_scale.sum(1)

    def to_data(self, z):
        return self._solve(z, forward=False)


class IAFLayer(_AutoregressiveLayer):
    """Inverse autoregressive flow layer (Kingma et al. 2016), the MAF layer the other way round. Sampling
    direction (z -> x) in ONE pass: x = z exp(s(z)) + t(z); density direction (x -> z) in D passes."""

    def to_noise(self, x):
        z = self._solve(x, forward=True)
        _, log_scale = self.params(z)  # the log-scales the solution was made with (s_i reads z_<i only)
        return z, -log_scale.sum(1)

    def to_data(self, z):
        shift, log_scale = self.params(z)
        return z * torch.exp(log_scale) + shift


# ---- RealNVP couplings --------------------------------------------------------------------------------------
def checkerboard(shape: list[int], parity: int) -> torch.Tensor:
    """1 on the kept half: alternate pixels (images [C, H, W]) or alternate dimensions (vectors [D])."""
    if len(shape) == 1:
        return ((torch.arange(shape[0]) + parity) % 2 == 0).float()
    _, h, w = shape
    board = (torch.arange(h)[:, None] + torch.arange(w)[None, :] + parity) % 2 == 0
    return board.float().expand(shape[0], h, w).clone()


def channel_mask(shape: list[int], parity: int) -> torch.Tensor:
    """1 on the kept half: the first half of the channels (images) or of the dimensions (vectors), or the second."""
    n = shape[0]
    keep = (torch.arange(n) < n // 2) if parity == 0 else (torch.arange(n) >= n // 2)
    return keep.float().view(-1, *([1] * (len(shape) - 1))).expand(*shape).clone()


class ResidualBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.ReLU(), nn.Conv2d(width, width, 3, 1, 1), nn.ReLU(), nn.Conv2d(width, width, 3, 1, 1))

    def forward(self, x):
        return x + self.net(x)


def coupling_net(shape: list[int], width: int, blocks: int) -> nn.Module:
    """The s, t network of a coupling: an MLP on vectors, a residual conv net on images; its last layer starts at
    zero (the coupling starts as the identity). Output: 2 x the input's shape (shift, log-scale)."""
    if len(shape) == 1:
        last = nn.Linear(width, 2 * shape[0])
        layers = [nn.Linear(shape[0], width), nn.ReLU()]
        for _ in range(blocks):
            layers += [nn.Linear(width, width), nn.ReLU()]
    else:
        last = nn.Conv2d(width, 2 * shape[0], 3, 1, 1)
        layers = [nn.Conv2d(shape[0], width, 3, 1, 1), *[ResidualBlock(width) for _ in range(blocks)], nn.ReLU()]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


class Coupling(nn.Module):
    """RealNVP coupling (Dinh et al. 2017): the masked half x_a passes unchanged and sets (t, s) of the rest.
    Density direction: z = x_a + (1 - m) (x - t(x_a)) exp(-s(x_a)), log-det -sum (1 - m) s; sampling direction
    x = z_a + (1 - m) (z exp(s(z_a)) + t(z_a)). Both one pass. Additive: s = 0 (NICE), log-det 0."""

    def __init__(self, mask: torch.Tensor, net: nn.Module, additive: bool, clamp: float):
        super().__init__()
        self.register_buffer("mask", mask)
        self.net, self.additive, self.clamp = net, additive, clamp

    def params(self, kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shift, log_scale = self.net(kept).chunk(2, dim=1)
        free = 1 - self.mask
        log_scale = torch.zeros_like(shift) if self.additive else log_scale.clamp(-self.clamp, self.clamp) * free
        return shift * free, log_scale

    def to_noise(self, x):
        kept = x * self.mask
        shift, log_scale = self.params(kept)
        z = kept + (1 - self.mask) * (x - shift) * torch.exp(-log_scale)
        return z, -log_scale.flatten(1).sum(1)

    def to_data(self, z):
        kept = z * self.mask
        shift, log_scale = self.params(kept)
        return kept + (1 - self.mask) * (z * torch.exp(log_scale) + shift)


class Squeeze(nn.Module):
    """[C, H, W] -> [4C, H/2, W/2] (each 2x2 block into channels): volume-preserving, log-det 0."""

    def to_noise(self, x):
        return F.pixel_unshuffle(x, 2), x.new_zeros(len(x))

    def to_data(self, z):
        return F.pixel_shuffle(z, 2)

    @staticmethod
    def out_shape(shape: list[int]) -> list[int]:
        return [shape[0] * 4, shape[1] // 2, shape[2] // 2]


class Flatten(nn.Module):
    """Images -> vectors for the autoregressive flows (C, H, W order); log-det 0."""

    def __init__(self, shape: list[int]):
        super().__init__()
        self.shape = list(shape)

    def to_noise(self, x):
        return x.flatten(1), x.new_zeros(len(x))

    def to_data(self, z):
        return z.view(len(z), *self.shape)

    @staticmethod
    def out_shape(shape: list[int]) -> list[int]:
        return [math.prod(shape)]


# ---- the models ---------------------------------------------------------------------------------------------
class Flow(GenerativeModel, Samples, ScoresDensity):
    """A stack of invertible layers over a standard normal, trained by exact maximum likelihood."""

    accepts = ("images", "vectors")
    default_optim: ClassVar[dict] = {"lr": 1e-3, "betas": (0.9, 0.999)}
    objective = ("test_nll", "min")
    ema_networks = ("flow",)
    curve_groups: ClassVar[dict] = {"NLL (nats)": ["loss", "test_nll", "test_nll_logit"],
                    "bits/dim": ["bits_per_dim", "test_bits_per_dim", "test_bits_per_dim_8bit"]}
    heat_points = 160  # the density heat map: grid points along each axis (vector data)
    scatter_samples = 2000  # samples in the density figure

    @classmethod
    def check_config(cls, cfg) -> None:
        check_float(cfg, "model.log_scale_clamp", positive=True)
        lam = check_float(cfg, "model.logit_lambda")
        if not 0 < lam < 0.5:  # 0 would give the logit of an exact 0 or 1 pixel: an infinite NLL
            raise GenlabError(f"model.logit_lambda must be in (0, 0.5), got {lam}: the paper's is 1e-6")
        cls.check_own(cfg)

    @classmethod
    def check_own(cls, cfg) -> None:
        pass

    def __init__(self, cfg, spec, loss=None):
        super().__init__()
        self.images = spec.kind == "images"
        self.shape = spec.shape(self.key)
        self.dim = math.prod(self.shape)
        self.clamp = float(cfg.log_scale_clamp)
        self.dequantize = Dequantize(cfg.logit_lambda) if self.images else None
        self.layers = nn.ModuleList(self.build_layers(cfg, list(self.shape)))
        self.latent_shape = self.output_shape()

    @property
    def key(self) -> str:
        """The batch tensor the flow models: "image" or "x" (points)."""
        return "image" if self.images else "x"

    @property
    def score_is_8bit_nll(self) -> bool:  # score() is -log p of the 8-bit image in nats: input complexity applies
        return self.images

    def build_layers(self, cfg, shape: list[int]) -> list[nn.Module]:
        raise NotImplementedError

    def output_shape(self) -> list[int]:
        """z's shape: the data's, changed only by the layers that say so (out_shape: Squeeze, Flatten). Not a
        forward pass: an IAF's density direction is D sequential passes per layer."""
        shape = list(self.shape)
        for layer in self.layers:
            shape = layer.out_shape(shape) if hasattr(layer, "out_shape") else shape
        return shape

    def networks(self):
        return {"flow": self}

    def compile_targets(self) -> list[nn.Module]:
        """device.compile: the layers' conditioners (a MADE, a coupling's network), which the layers call as
        `net(x)`; the layers themselves work through to_noise / to_data."""
        return [net for layer in self.layers for net in (getattr(layer, "made", None), getattr(layer, "net", None))
                if isinstance(net, nn.Module)]

    # ---- the two directions of the whole flow ----------------------------------------------------------
    def to_noise(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Density direction: data (the flow's space) -> noise, and log|det dz/dx| per example."""
        log_det = x.new_zeros(len(x))
        for layer in self.layers:
            x, part = layer.to_noise(x)
            log_det = log_det + part
        return x, log_det

    def to_data(self, z: torch.Tensor) -> torch.Tensor:
        """Sampling direction: noise -> data (the flow's space)."""
        for layer in reversed(self.layers):
            z = layer.to_data(z)
        return z

    def nll(self, data: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Per-example negative log-likelihoods in nats: `nll` of the data (the dequantised 8-bit pixels in
        [0, 256)^D for images, the points for vectors) and, for images, `nll_logit` in the logit space."""
        if self.images:
            y, pre_log_det = self.dequantize.to_flow(data, generator)
        else:
            y, pre_log_det = (data if data.is_floating_point() else data.float()), None
        z, log_det = self.to_noise(y)
        nll = -(standard_normal_log_prob(z) + log_det)
        if pre_log_det is None:
            return {"nll": nll}
        return {"nll": nll - pre_log_det + self.dim * LOG_256, "nll_logit": nll}

    def bits(self, nll):
        """nats per example -> bits per dimension (a float or a tensor)."""
        return nll / (self.dim * math.log(2))

    def training_step(self, batch, step):
        with self.autocast():
            nll = self.nll(batch[self.key])["nll"].mean()
        self.update(nll, "flow")
        nll = nll.detach()  # "loss": the name train.on_nan watches
        return {"loss": nll, "bits_per_dim": self.bits(nll)}

    @torch.no_grad()
    def sample(self, n, *, generator=None, labels=None):
        """n images in [-1, 1] (on the 8-bit grid) or n points, from z ~ N(0, I) drawn on the CPU."""
        with self.evaluating():
            z = torch.randn(n, *self.latent_shape, generator=generator).to(self.device)
            y = self.to_data(z)
        return self.dequantize.to_image(y) if self.images else y

    @torch.no_grad()
    def score(self, batch) -> torch.Tensor:
        """-log p(x) per example in nats (images: of the 8-bit pixels, dequantised with a fixed seed)."""
        with self.evaluating():
            return self.nll(batch[self.key], torch.Generator().manual_seed(0))["nll"]

    @torch.no_grad()
    def visuals(self, batch):
        if not self.images:
            return {}  # vector data: evaluate() draws the density figure from the whole test split
        return {"samples": self.sample(batch.size, generator=torch.Generator().manual_seed(0))}

    @torch.no_grad()
    def evaluate(self, batches) -> dict:
        """Exact test likelihoods: test_nll (nats per example), test_bits_per_dim_8bit and test_nll_logit for
        images (test_bits_per_dim for vectors); for 2-D points, the density heat map beside data and samples."""
        generator = torch.Generator().manual_seed(0)  # the dequantisation noise: the same every evaluation
        sums: dict[str, float] = {}
        count, points = 0, []
        with self.evaluating():
            for batch in batches:
                data = batch[self.key]
                for name, value in self.nll(data, generator).items():
                    sums[name] = sums.get(name, 0.0) + float(value.double().sum())
                count += len(data)
                if not self.images and self.dim == 2:
                    points.append(data.float().cpu())
        if count == 0:
            return {}
        scores = {"test_nll": sums["nll"] / count}
        if self.images:
            scores["test_nll_logit"] = sums["nll_logit"] / count
            scores["test_bits_per_dim_8bit"] = self.bits(scores["test_nll"])
        else:
            scores["test_bits_per_dim"] = self.bits(scores["test_nll"])
        if points:
            scores["density"] = self.density_map(torch.cat(points))
        return scores

    @torch.no_grad()
    def density_map(self, data: torch.Tensor):
        """The model's log-density on a grid around the data, with the data and samples (2-D points)."""

        finite = data[torch.isfinite(data).all(1)]
        low, high = finite.quantile(0.005, dim=0), finite.quantile(0.995, dim=0)
        pad = (high - low) * 0.15 + 1e-3
        low, high = low - pad, high + pad
        xs = torch.linspace(float(low[0]), float(high[0]), self.heat_points)
        ys = torch.linspace(float(low[1]), float(high[1]), self.heat_points)
        gx, gy = torch.meshgrid(xs, ys, indexing="xy")
        grid = torch.stack([gx.flatten(), gy.flatten()], 1).to(self.device)
        with self.evaluating():
            log_p = torch.cat([-self.nll(part)["nll"].float().cpu() for part in grid.split(8192)])
        samples = self.sample(self.scatter_samples, generator=torch.Generator().manual_seed(0)).float().cpu()
        return DensityMap(log_p.view(self.heat_points, self.heat_points), (float(low[0]), float(high[0]),
                          float(low[1]), float(high[1])), data[: self.scatter_samples], samples,
                          f"{type(self).__name__}: density, data and samples")


def hidden_sizes(cfg) -> list[int]:
    return [int(cfg.hidden)] * int(cfg.hidden_layers)


def check_made_keys(cfg) -> None:
    check_int(cfg, "model.hidden", minimum=1)
    check_int(cfg, "model.hidden_layers", minimum=1)
    check_choice(cfg, "model.order", ("natural", "random"))
    check_int(cfg, "model.order_seed", minimum=0)


def autoregressive_layers(cfg, shape: list[int], layer_class, n_layers: int) -> list[nn.Module]:
    """n_layers MADE layers; each reads the previous one's order reversed (the permutation between layers), or a
    fresh random order (model.order=random, from model.order_seed). Images are flattened first."""
    dim = math.prod(shape)
    generator = torch.Generator().manual_seed(int(cfg.order_seed))
    layers: list[nn.Module] = [Flatten(shape)] if len(shape) > 1 else []
    for k in range(n_layers):
        degrees = input_degrees(dim, cfg.order, generator, reverse=k % 2 == 1)
        layers.append(layer_class(MADE(degrees, hidden_sizes(cfg)), float(cfg.log_scale_clamp)))
    return layers


@MODELS.register("made")
class MADEDensity(Flow):
    """A Gaussian MADE: one MAF layer, log p(x) = sum_i log N(x_i; t_i(x_<i), exp(s_i(x_<i))^2). Density in one
    pass, sampling one dimension at a time."""

    check_own = staticmethod(check_made_keys)

    def build_layers(self, cfg, shape):
        return autoregressive_layers(cfg, shape, MAFLayer, 1)


@MODELS.register("maf")
class MAF(Flow):
    """Masked autoregressive flow: model.layers MADE layers with the order reversed between them. Density
    (x -> z) in one pass per layer; sampling (z -> x) D passes per layer."""

    @staticmethod
    def check_own(cfg):
        check_made_keys(cfg)
        check_int(cfg, "model.layers", minimum=1)

    def build_layers(self, cfg, shape):
        return autoregressive_layers(cfg, shape, MAFLayer, int(cfg.layers))


@MODELS.register("iaf")
class IAF(MAF):
    """Inverse autoregressive flow: the MAF's layers the other way round. Sampling (z -> x) in one pass per
    layer; density (x -> z) D passes per layer, so maximum-likelihood training is slow (the price the timing
    benchmark shows)."""

    def build_layers(self, cfg, shape):
        return autoregressive_layers(cfg, shape, IAFLayer, int(cfg.layers))


@MODELS.register("realnvp")
class RealNVP(Flow):
    """RealNVP (Dinh et al. 2017). Images: model.layers checkerboard couplings, a squeeze, model.layers channel
    couplings, then model.layers checkerboard couplings at half the size; masks alternate between couplings.
    Vectors: model.layers couplings alternating the checkerboard (odd/even dimensions) and channel (first/second
    half) masks. model.coupling: affine, or additive (s = 0, log-det 0)."""

    @staticmethod
    def check_own(cfg):
        check_choice(cfg, "model.coupling", ("affine", "additive"))
        check_int(cfg, "model.layers", minimum=1)
        check_int(cfg, "model.width", minimum=1)
        check_int(cfg, "model.blocks", minimum=0)

        if DATASETS[get(cfg, "data.name")].kind == "images" and check_int(cfg, "data.size") % 2:
            raise GenlabError(f"realnvp squeezes images 2x2: data.size must be even, got {get(cfg, 'data.size')}")

    def build_layers(self, cfg, shape):
        additive, clamp, n = cfg.coupling == "additive", float(cfg.log_scale_clamp), int(cfg.layers)

        def coupling(mask_shape, mask):
            return Coupling(mask, coupling_net(mask_shape, int(cfg.width), int(cfg.blocks)), additive, clamp)

        if len(shape) == 1:
            if shape[0] <= 2:  # two dimensions: both masks keep one coordinate, so alternate which
                masks = [checkerboard(shape, k % 2) for k in range(n)]
            else:
                masks = [checkerboard(shape, k // 2 % 2) if k % 2 == 0 else channel_mask(shape, k // 2 % 2)
                         for k in range(n)]
            return [coupling(shape, m) for m in masks]
        if shape[1] % 2 or shape[2] % 2:  # (check_config says so first, for the command line)
            raise GenlabError(f"realnvp squeezes images 2x2: their sides must be even, got {shape[1]}x{shape[2]}")
        layers: list[nn.Module] = [coupling(shape, checkerboard(shape, k % 2)) for k in range(n)]
        layers.append(Squeeze())
        small = Squeeze.out_shape(shape)
        layers += [coupling(small, channel_mask(small, k % 2)) for k in range(n)]
        layers += [coupling(small, checkerboard(small, k % 2)) for k in range(n)]
        return layers


# genlab report: the toy densities
family_figures("made", "maf", "iaf", "realnvp")(visual_figures(
    ("density", "the model's log-density (left), the test points (middle) and samples (right)")))
