"""Learning-rate schedules: a pure function of the step, written into the param groups before every step.

No scheduler object and no scheduler state: the rate at step s depends only on (s, the run's length, the
schedule's settings), so a resumed run continues with exactly the rate a straight run would have had, and an
`optim.lr=...` given with a resume takes effect from there on. nanoGPT keeps its rate the same way.

Settings (`optim.schedule.*`; null values take the model's own `default_schedule`, then `constant`):
    name          constant | linear | step | cosine
    warmup        steps of linear warm-up from lr/warmup to lr (0 = none); it multiplies the schedule's
                  own factor (a cosine still starts at step 0)
    decay_epochs  linear: the rate falls linearly towards 0 over the last N epochs, pix2pix-style (the last
                  step has 1/N_steps of it; pix2pix, CycleGAN: 100)
    decay_fraction  linear, where decay_epochs is null: over the last fraction of the run (pix2pix and
                  CycleGAN's 100 + 100 epochs: 0.5); both null: the whole run
    milestones    step: epochs after which the rate is multiplied by gamma
    milestone_steps  step: optimiser steps after which it is (SRGAN: [100000], 1e-4 -> 1e-5), beside milestones
    gamma         step: the factor at each milestone
    min_ratio     cosine: the floor, as a fraction of lr
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from genlab.core.errors import GenlabError

NAMES = ("constant", "linear", "step", "cosine")


@dataclass(frozen=True)
class Schedule:
    name: str = "constant"
    warmup: int = 0
    decay_epochs: float | None = None
    decay_fraction: float | None = None
    milestones: tuple[float, ...] = field(default_factory=tuple)
    milestone_steps: tuple[int, ...] = field(default_factory=tuple)
    gamma: float = 0.1
    min_ratio: float = 0.0

    def factor(self, step: int, total: int, steps_per_epoch: int) -> float:
        """The multiplier of the base rate for the update made at `step` (0-based) of a `total`-step run."""
        f = 1.0
        if self.name == "linear":
            if self.decay_epochs is not None:
                span = min(total, round(self.decay_epochs * steps_per_epoch))
            elif self.decay_fraction is not None:
                span = round(self.decay_fraction * total)
            else:
                span = total
            start = total - span
            if span > 0 and step >= start:
                f = 1.0 - (step - start) / span
        elif self.name == "step":
            f = self.gamma ** (sum(step >= round(m * steps_per_epoch) for m in self.milestones)
                               + sum(step >= m for m in self.milestone_steps))
        elif self.name == "cosine":
            progress = min(step / max(total, 1), 1.0)
            f = self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
        if self.warmup > 0 and step < self.warmup:
            f *= (step + 1) / self.warmup
        return f

    def describe(self) -> str:
        over = (f"{self.decay_epochs:g} epochs" if self.decay_epochs is not None else
                f"{self.decay_fraction:g} of the run" if self.decay_fraction is not None else "the whole run")
        parts = {"linear": f"linear to 0 over the last {over}",
                 "step": f"x{self.gamma} after " + " and ".join(
                     part for part in (f"epochs {list(self.milestones)}" if self.milestones else "",
                                       f"steps {list(self.milestone_steps)}" if self.milestone_steps else "") if part),
                 "cosine": f"cosine to {self.min_ratio} x lr", "constant": "constant"}[self.name]
        return parts + (f", {self.warmup} warm-up steps" if self.warmup else "")


def schedule_from(cfg, model_class) -> Schedule:
    """The run's schedule: cfg.optim.schedule over the model class's default_schedule."""
    from omegaconf import OmegaConf

    settings = cfg.optim.get("schedule")
    return build_schedule(OmegaConf.to_container(settings, resolve=True) if settings is not None else None,
                          getattr(model_class, "default_schedule", {}))


def build_schedule(settings: dict | None, model_default: dict | None = None) -> Schedule:
    """optim.schedule.* over the model's default_schedule; one line for a bad setting."""
    merged = dict(model_default or {})
    merged.update({k: v for k, v in (settings or {}).items() if v is not None})
    name = merged.get("name") or "constant"
    if name not in NAMES:
        raise GenlabError(f"optim.schedule.name must be one of {', '.join(NAMES)}; got {name!r}")
    warmup = merged.get("warmup") or 0
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise GenlabError(f"optim.schedule.warmup must be a number of steps, 0 or more; got {warmup!r}")
    decay = merged.get("decay_epochs")
    if decay is not None and (isinstance(decay, bool) or not isinstance(decay, (int, float)) or decay <= 0):
        raise GenlabError(f"optim.schedule.decay_epochs must be a positive number of epochs; got {decay!r}")
    fraction = merged.get("decay_fraction")
    if fraction is not None and (isinstance(fraction, bool) or not isinstance(fraction, (int, float))
                                 or not 0 < fraction <= 1):
        raise GenlabError(f"optim.schedule.decay_fraction must be in (0, 1]; got {fraction!r}")
    milestones = merged.get("milestones") or ()
    if not isinstance(milestones, (list, tuple)) or not all(
            isinstance(m, (int, float)) and not isinstance(m, bool) and m > 0 for m in milestones):
        raise GenlabError(f"optim.schedule.milestones must be a list of epochs, e.g. [100,150]; got {milestones!r}")
    milestone_steps = merged.get("milestone_steps") or ()
    if not isinstance(milestone_steps, (list, tuple)) or not all(
            isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in milestone_steps):
        raise GenlabError("optim.schedule.milestone_steps must be a list of step numbers, e.g. [100000]; got "
                          f"{milestone_steps!r}")
    if name == "step" and not milestones and not milestone_steps:
        raise GenlabError("optim.schedule.name=step needs optim.schedule.milestones (epochs, e.g. [100]) or "
                          "optim.schedule.milestone_steps (steps, e.g. [100000])")
    gamma = merged.get("gamma", 0.1)
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0 < gamma <= 1:
        raise GenlabError(f"optim.schedule.gamma must be in (0, 1]; got {gamma!r}")
    floor = merged.get("min_ratio", 0.0)
    if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0 <= floor <= 1:
        raise GenlabError(f"optim.schedule.min_ratio must be in [0, 1]; got {floor!r}")
    return Schedule(name, int(warmup), None if decay is None else float(decay),
                    None if fraction is None else float(fraction), tuple(float(m) for m in milestones),
                    tuple(int(m) for m in milestone_steps), float(gamma), float(floor))
