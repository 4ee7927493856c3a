"""Denoising diffusion (Ho et al. 2020): a U-Net (genlab/models/unet.py) learns to predict the noise (or v, Salimans
& Ho 2022) added by a fixed linear or cosine schedule; it samples with the ancestral sampler over all T steps or
with DDIM (Song et al. 2021) over any number of steps, both chosen at sample and eval time
(`genlab sample RUN --steps 50 --eta 0`). With model.conditional it learns classes with classifier-free guidance
(Ho & Salimans 2022): the label dropped with probability model.p_uncond in training, `--guidance W` when sampling.
The maths (schedules, posterior, samplers, bound) is in genlab/models/diffusion.py.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F

from genlab.core.config import check_bool, check_choice, check_float, check_int, get
from genlab.core.errors import GenlabError
from genlab.core.figures import CLASS_ROWS, family_figures, visual_figures
from genlab.core.registry import MODELS
from genlab.models.base import GenerativeModel
from genlab.models.blocks import class_rows, require_labels, sample_labels
from genlab.models.capabilities import SamplerOption, Samples
from genlab.models.diffusion import PREDICTIONS, SCHEDULES, Diffusion, betas_for, quantize
from genlab.models.unet import UNet

SAMPLERS = ("ddpm", "ddim")
BUCKETS = 4  # the loss is also logged per quarter of the steps: loss_q1 (nearest the data) .. loss_q4 (the noise)


@MODELS.register("ddpm")
class DDPM(GenerativeModel, Samples):
    """Adam 2e-4 (the paper's), no decay; the EMA of the U-Net draws the samples where train.ema is set."""

    default_optim: ClassVar[dict] = {"lr": 2e-4, "betas": (0.9, 0.999)}
    ema_networks = ("unet",)
    objective = ("test_bits_per_dim_8bit", "min")
    curve_groups: ClassVar[dict[str, list[str]]] = {
        "loss (L_simple)": ["loss"], "loss per quarter of the steps (q1: nearest the data)":
            [f"loss_q{k + 1}" for k in range(BUCKETS)],
        "test bound, bits/dim": ["test_bits_per_dim_8bit"]}
    sampler_options = (
        SamplerOption("sampler", str, "ddpm (ancestral, all T steps) or ddim (--steps, --eta set it)"),
        SamplerOption("steps", int, "DDIM's steps, 1 to T (the run's model.timesteps)"),
        SamplerOption("eta", float, "DDIM's noise, 0 (deterministic) to 1 (ancestral)"),
        SamplerOption("guidance", float, "classifier-free guidance w >= 0: (1 + w) eps(x, y) - w eps(x)"),
    )

    @staticmethod
    def check_config(cfg) -> None:
        for key in ("res_blocks", "norm_groups"):
            check_int(cfg, f"model.{key}", minimum=1)
        if check_int(cfg, "model.channels", minimum=4) % 2:
            raise GenlabError(f"model.channels must be even (the time embedding is sines and cosines of half of "
                              f"them each), got {cfg.model.channels}")
        steps = check_int(cfg, "model.timesteps", minimum=2, maximum=100_000)
        mult = _int_list(cfg, "model.channel_mult", minimum=1)
        _int_list(cfg, "model.attention", minimum=1, empty=True)
        _fraction(cfg, "model.dropout")
        check_choice(cfg, "model.schedule", SCHEDULES)
        check_choice(cfg, "model.prediction", PREDICTIONS)
        beta_start, beta_end = _finite(cfg, "model.beta_start", positive=True), \
            _finite(cfg, "model.beta_end", positive=True)
        if beta_start >= beta_end:
            raise GenlabError(f"model.beta_start ({beta_start}) must be below model.beta_end ({beta_end})")
        if cfg.model.schedule == "linear" and beta_end * 1000 / steps >= 1:
            raise GenlabError(f"the linear schedule scales its betas by 1000 / model.timesteps, so beta_end would be "
                              f"{beta_end * 1000 / steps:g} at {steps} steps: pass more steps or model.schedule=cosine")
        _fraction(cfg, "model.p_uncond")
        check_bool(cfg, "model.conditional")
        check_bool(cfg, "model.clip_denoised")
        check_int(cfg, "model.bound_timesteps", minimum=1, maximum=steps)
        _check_widths(cfg, mult)
        check_choice(cfg, "model.sampler", SAMPLERS)
        if get(cfg, "model.sample_steps") is not None:
            check_int(cfg, "model.sample_steps", minimum=1)
        _finite(cfg, "model.eta")
        _finite(cfg, "model.guidance")
        DDPM.sampler_settings(cfg.model, {}, "model.")

    def __init__(self, cfg, spec, loss=None):
        super().__init__()
        self.cfg, self.spec = cfg, spec
        self.n_classes = require_labels("ddpm with model.conditional=true", spec) if cfg.conditional else 0
        self.class_names = (list(spec.class_names) or [str(i) for i in range(self.n_classes)]) if self.n_classes else []
        self.unet = UNet(spec.channels, spec.size, int(cfg.channels), tuple(cfg.channel_mult), int(cfg.res_blocks),
                         tuple(cfg.attention), float(cfg.dropout), int(cfg.norm_groups), self.n_classes)
        self.diffusion = Diffusion(betas_for(cfg.schedule, int(cfg.timesteps), float(cfg.beta_start),
                                             float(cfg.beta_end)))
        self.prediction, self.p_uncond, self.clip = cfg.prediction, float(cfg.p_uncond), bool(cfg.clip_denoised)
        self.shape = (spec.channels, spec.size, spec.size)
        self.nz = spec.channels * spec.size * spec.size  # class_rows' noise: x_T, flattened
        self.settings = self.sampler_settings(cfg, {})

    def networks(self):
        return {"unet": self.unet}

    # ---- training ------------------------------------------------------------------------------------
    def training_step(self, batch, step):
        x0, n = batch["image"], batch.size
        steps = self.diffusion.steps
        # stratified steps: one in each of n equal slices of 0..T-1, shuffled (still uniform; the buckets filled)
        t = ((torch.randperm(n) + torch.rand(n)) * steps / n).long().clamp(max=steps - 1).to(x0.device)
        noise = torch.randn_like(x0)
        labels = None
        if self.n_classes:
            labels = batch["label"].clone()
            labels[torch.rand(n, device=labels.device) < self.p_uncond] = self.n_classes  # "no label"
        with self.autocast():
            out = self.unet(self.diffusion.q_sample(x0, t, noise), t, labels)
        target = self.diffusion.target(self.prediction, x0, noise, t)
        per_example = F.mse_loss(out.float(), target, reduction="none").flatten(1).mean(1)
        loss = per_example.mean()
        self.update(loss, "unet")
        scalars = {"loss": loss.detach()}
        if n >= BUCKETS:  # the stratified steps put at least one example in every quarter: no device sync here
            quarter = (t * BUCKETS) // steps
            sums = torch.zeros(BUCKETS, device=x0.device).index_add_(0, quarter, per_example.detach())
            means = sums / torch.bincount(quarter, minlength=BUCKETS)
            scalars.update({f"loss_q{k + 1}": means[k] for k in range(BUCKETS)})
        return scalars

    # ---- sampling ------------------------------------------------------------------------------------
    @staticmethod
    def sampler_settings(cfg, given: dict, prefix: str = "--") -> dict:
        """The whole sampler from the run's model.* settings and the ones given, checked: one line each."""
        return sampler_settings(cfg, given, prefix)

    def use_sampler(self, **settings) -> None:
        self.settings = self.sampler_settings(self.cfg, settings)

    def sampler(self) -> dict:
        return dict(self.settings)

    def predictor(self, labels: torch.Tensor | None, guidance: float):
        """predict(x_t, t) -> (eps, x_0), with classifier-free guidance where a weight is set: the outputs with
        and without the label mixed as (1 + w) out(x, y) - w out(x) (linear, so the same for eps and v)."""

        def predict(x, t):
            if labels is not None and guidance:
                both = self.unet(torch.cat([x, x]), torch.cat([t, t]),
                                 torch.cat([labels, torch.full_like(labels, self.n_classes)]))
                cond, uncond = both.float().chunk(2)
                out = (1 + guidance) * cond - guidance * uncond
            else:
                out = self.unet(x, t, labels).float()
            return self.diffusion.split(self.prediction, out, x, t, self.clip)

        return predict

    @torch.no_grad()
    def sample(self, n, *, generator=None, labels=None, noise=None):
        x, _ = self.run_sampler(n, generator=generator, labels=labels, noise=noise)
        return x.clamp(-1, 1)

    @torch.no_grad()
    def run_sampler(self, n, *, generator=None, labels=None, noise=None, keep=()):
        """(x_0, {step: x_t}) by the sampler in use, from x_T = `noise` or drawn from `generator` on the CPU."""
        with self.evaluating():
            x = noise.reshape(n, *self.shape) if noise is not None else torch.randn(n, *self.shape, generator=generator)
            x = x.to(self.device)
            labels = sample_labels(n, self.n_classes, labels, self.device) if self.n_classes else None
            predict = self.predictor(labels, self.settings.get("guidance", 0.0))
            if self.settings["name"] == "ddpm":
                return self.diffusion.ddpm(predict, x, generator, keep)
            return self.diffusion.ddim(predict, x, self.settings["steps"], self.settings["eta"], generator, keep)

    # ---- what training shows ----------------------------------------------------------------------------
    def visual_row_titles(self):
        return {"classes": self.class_names} if self.n_classes else {}

    @torch.no_grad()
    def visuals(self, batch):
        out = {"samples": self.sample(batch.size, generator=torch.Generator().manual_seed(0))}
        out["progression"] = self.progression()
        if self.n_classes:
            out["classes"] = class_rows(self, self.n_classes)
        return out

    def progression(self, rows: int = 4, columns: int = 8) -> torch.Tensor:
        """[rows, columns + 1, C, H, W]: x_t of fixed noise at `columns` evenly spaced steps of the sampler (x_T
        first), then x_0."""
        visited = (torch.arange(self.diffusion.steps) if self.settings["name"] == "ddpm"
                   else self.diffusion.ddim_steps(self.settings["steps"]))
        keep = tuple(int(visited[int(i)]) for i in torch.linspace(len(visited) - 1, 0, columns).round().long())
        x0, kept = self.run_sampler(rows, generator=torch.Generator().manual_seed(1), keep=keep)
        frames = [kept[i] for i in keep] + [x0.float().cpu()]
        return torch.stack(frames, dim=1).clamp(-1, 1)

    @torch.no_grad()
    def evaluate(self, batches) -> dict:
        """The variational bound on the 8-bit test images (Ho et al. eq. 5; of p(x | y) for a class-conditional
        run), in nats per image and bits/dim: the prior term exactly, the T denoising terms estimated unbiasedly
        from model.bound_timesteps uniform steps per image (fixed seed); and L_simple at those steps."""
        generator = torch.Generator().manual_seed(0)
        steps, draws = self.diffusion.steps, int(self.cfg.bound_timesteps)
        nats, simple, count = 0.0, 0.0, 0
        with self.evaluating():
            for batch in batches:
                x0 = quantize(batch["image"]).to(self.device)
                labels = batch["label"].to(self.device) if self.n_classes else None
                nats += float(self.diffusion.prior_nats(x0).sum())
                for _ in range(draws):
                    t = torch.randint(steps, (len(x0),), generator=generator).to(self.device)
                    noise = torch.randn(x0.shape, generator=generator).to(x0)
                    xt = self.diffusion.q_sample(x0, t, noise)
                    out = self.unet(xt, t, labels).float()
                    _, x0_pred = self.diffusion.split(self.prediction, out, xt, t, self.clip)
                    nats += float(self.diffusion.term_nats(x0, xt, t, x0_pred).sum()) * steps / draws
                    target = self.diffusion.target(self.prediction, x0, noise, t)
                    simple += float(F.mse_loss(out, target, reduction="none").flatten(1).mean(1).sum()) / draws
                count += len(x0)
        if not count:
            return {}
        dims = self.shape[0] * self.shape[1] * self.shape[2]
        return {"test_nelbo": nats / count, "test_bits_per_dim_8bit": nats / count / (dims * math.log(2)),
                "test_loss": simple / count}


def sampler_settings(cfg, given: dict, prefix: str) -> dict:
    """{"name", "steps", "eta" (DDIM), "guidance" (class-conditional)}: the given settings over the run's model.*.
    --steps or --eta alone choose DDIM; the ancestral sampler takes all T steps."""
    total, conditional = int(cfg.timesteps), bool(cfg.conditional)
    name = given["sampler"] if "sampler" in given else ("ddim" if {"steps", "eta"} & set(given) else cfg.sampler)
    if name not in SAMPLERS:
        raise GenlabError(f"{prefix}sampler must be ddpm or ddim, got {name!r}")
    if name == "ddpm" and {"steps", "eta"} & set(given):
        key = min({"steps", "eta"} & set(given))
        raise GenlabError(f"--{key} is a setting of DDIM; the ancestral sampler (--sampler ddpm) takes all {total} "
                          "steps: pass --sampler ddim")
    steps = _given_or(given, "steps", cfg.sample_steps if cfg.sample_steps is not None else total)
    if not 1 <= int(steps) <= total:
        raise GenlabError(f"{prefix}{'steps' if prefix == '--' else 'sample_steps'} must be 1 to {total} (the run's "
                          f"model.timesteps), got {steps}")
    eta = float(_given_or(given, "eta", cfg.eta))
    if not 0.0 <= eta <= 1.0:  # nan too
        raise GenlabError(f"{prefix}eta must be 0 (deterministic) to 1 (ancestral), got {eta}")
    guidance = float(_given_or(given, "guidance", cfg.guidance))
    if given.get("guidance") is not None and not conditional:
        raise GenlabError("--guidance needs a class-conditional run (model.conditional=true); this one is "
                          "unconditional: drop --guidance")
    if guidance and not conditional:
        raise GenlabError(f"{prefix}guidance needs model.conditional=true (classes to guide towards), got {guidance}")
    if not 0 <= guidance < math.inf:  # nan and inf too
        raise GenlabError(f"{prefix}guidance must be a finite number >= 0 (0: no guidance), got {guidance}")
    out = {"name": name, "steps": total if name == "ddpm" else int(steps)}
    out.update({"eta": eta} if name == "ddim" else {})
    out.update({"guidance": guidance} if conditional else {})
    return out


def _given_or(given: dict, key: str, default):
    return given[key] if given.get(key) is not None else default


def _finite(cfg, key: str, positive: bool = False) -> float:
    value = check_float(cfg, key, positive=positive)
    if not math.isfinite(value):
        raise GenlabError(f"{key} must be a finite number, got {value}")
    return value


def _fraction(cfg, key: str) -> float:
    value = check_float(cfg, key, minimum=0.0)
    if not value < 1:  # nan too
        raise GenlabError(f"{key} must be at least 0 and below 1 (a probability), got {value}")
    return value


def _int_list(cfg, key: str, minimum: int, empty: bool = False) -> list[int]:
    value = get(cfg, key)
    try:
        values = [int(v) for v in value] if not isinstance(value, (str, int, float)) else None
    except (TypeError, ValueError):
        values = None
    if values is None or any(v < minimum for v in values) or (not values and not empty) or \
            any(not isinstance(v, int) or isinstance(v, bool) for v in value):
        raise GenlabError(f"{key} must be a list of whole numbers >= {minimum}, e.g. [1, 2, 2], got {value}")
    return values


def _check_widths(cfg, mult: list[int]) -> None:
    groups, channels = int(cfg.model.norm_groups), int(cfg.model.channels)
    for m in mult:
        if (channels * m) % groups:
            raise GenlabError(f"model.norm_groups ({groups}) must divide every width, model.channels x "
                              f"channel_mult ({channels} x {m}): pass e.g. model.norm_groups=8")
    size, halvings = get(cfg, "data.size", None), len(mult) - 1
    if isinstance(size, int) and size % (2**halvings):
        raise GenlabError(f"model.channel_mult has {len(mult)} levels, so data.size must be divisible by "
                          f"{2**halvings}, got {size}")
    if isinstance(size, int):
        sides = [size // 2**k for k in range(len(mult))]
        for side in _int_list(cfg, "model.attention", minimum=1, empty=True):
            if side not in sides:
                raise GenlabError(f"model.attention: {side} is no resolution of this U-Net (data.size {size} with "
                                  f"{len(mult)} levels has {', '.join(map(str, sides))})")


family_figures("ddpm")(visual_figures(
    ("progression", "the denoising of fixed noise: x_T (left) to x_0 (right) at evenly spaced steps of the sampler"),
    CLASS_ROWS))
