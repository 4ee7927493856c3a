"""What a model can do, declared by the classes it inherits: the commands and metrics ask `isinstance`.

Each capability is a small interface with its methods (and the attributes they need). A family declares its own
by inheriting them, e.g. `class VAE(GenerativeModel, Samples, Reconstructs, ScoresDensity)`. As with
collections.abc, a class that defines a capability's methods itself (a model written in a test file, say) counts
as having it too. `genlab list models` prints each model's capabilities.

- Samples: `sample(n, generator=, labels=)` draws new examples from noise -> `genlab sample`, the sample metrics.
  A sampler with settings chosen at sample and eval time (a diffusion model's steps) declares them as
  `sampler_options` and takes them in `use_sampler(**settings)`; `sampler()` describes the one in use, and that
  description goes into every metric's protocol and the sample file names.
- Translates: `translate(x, direction)` maps an input image to an output; `translates = (input, target)` names
  the batch tensors -> `genlab translate`, the translation metrics.
- Upscales: a Translates whose output is `output_scale` times larger -> `genlab upscale`.
- ScoresDensity: `score(batch)` is a per-example score, higher = less likely (-log p(x), -ELBO) -> the ood and
  anomaly metrics; `score_is_8bit_nll` says it is -log p of the 8-bit image in nats (the complexity correction).
- Reconstructs: `reconstruct(x, labels)` passes images through an autoencoder -> `genlab reconstruct`.
"""

from __future__ import annotations

from abc import ABC
from dataclasses import dataclass


def _defines(cls: type, names: tuple[str, ...]):
    """True where cls (or a class it inherits, other than the GenerativeModel base and the stubs here) defines
    every name; False where one of them is set to None (a subclass that gives the capability up: CVAE's score);
    else NotImplemented (the ordinary rules then decide: inheriting the capability)."""
    found = True
    for name in names:
        owner = next((c for c in cls.__mro__ if name in c.__dict__), None)
        value = owner.__dict__[name] if owner is not None else None
        if owner is not None and value is None:
            return False
        stub = owner is None or owner.__name__ == "GenerativeModel" or owner.__module__ == __name__
        too_small = name == "output_scale" and not (isinstance(value, int) and value > 1)
        if stub or too_small:
            found = False
    return True if found else NotImplemented


class Capability(ABC):
    methods: tuple[str, ...] = ()
    label = ""
    command = ""

    @classmethod
    def __subclasshook__(cls, other):
        if "methods" not in cls.__dict__ or not cls.methods:  # a model class or Capability itself: the usual rules
            return NotImplemented
        return _defines(other, cls.methods)


@dataclass(frozen=True)
class SamplerOption:
    """A setting of a model's sampler, chosen at sample and eval time without retraining: `genlab sample RUN
    --NAME VALUE` and `genlab eval RUN --NAME VALUE` (e.g. a diffusion model's --steps 50)."""
    name: str  # the option is --NAME
    type: type  # int, float or str: the value's type on the command line
    help: str  # one line for `genlab list models`


class Samples(Capability):
    methods = ("sample",)
    label, command = "draw samples", "genlab sample"
    sampler_options: tuple[SamplerOption, ...] = ()  # settings of the sampler (none: a GAN's one forward pass)

    def sample(self, n: int, *, generator=None, labels=None):
        """n examples (images in [-1, 1]); noise drawn on the CPU from `generator`."""
        raise NotImplementedError

    def use_sampler(self, **settings) -> None:
        """Draw every later sample() with these settings (names of `sampler_options`, values of their types; the
        others at the run's own), after checking them: one GenlabError line for a value it cannot use. The
        commands call it before any sampling work, with only the settings the user gave."""
        if settings:  # the commands refuse undeclared settings before; this guards a direct call
            raise ValueError(f"{type(self).__name__} has no sampler settings, got {sorted(settings)}")

    def sampler(self) -> dict:
        """The sampler in use with all its settings, e.g. {"name": "ddim", "steps": 50, "eta": 0.0}: it goes into
        every metric's protocol. {} for a sampler with no settings."""
        return {}


class Translates(Capability):
    methods = ("translate",)
    label, command = "translate images", "genlab translate"

    def translate(self, x, direction: str = "AtoB"):
        """The output for a batch of inputs, in [-1, 1]."""
        raise NotImplementedError


class Upscales(Translates):
    methods = ("translate", "output_scale")  # output_scale > 1 (set by the class, or declared by inheriting)
    label, command = "up-scale images", "genlab upscale"


class ScoresDensity(Capability):
    methods = ("score",)
    label, command = "score how likely an example is", "genlab eval --metrics ood,anomaly"

    def score(self, batch):
        """A per-example score [N], higher = less likely (-log p(x), -ELBO)."""
        raise NotImplementedError


class Reconstructs(Capability):
    methods = ("reconstruct",)
    label, command = "reconstruct its inputs", "genlab reconstruct"

    def reconstruct(self, x, labels=None):
        """The model's reconstruction of a batch of inputs, in [-1, 1]."""
        raise NotImplementedError


ALL = (Samples, Translates, Upscales, ScoresDensity, Reconstructs)


def capabilities(model_or_class) -> list[type[Capability]]:
    """The capabilities a model (or model class) has, in the order of ALL; Upscales implies Translates, shown once."""
    cls = model_or_class if isinstance(model_or_class, type) else type(model_or_class)
    found = [c for c in ALL if issubclass(cls, c)]
    return [c for c in found if not (c is Translates and Upscales in found)]




def refusal(model_or_class, capability: type[Capability], name: str) -> str:
    """One line: model `name` lacks `capability`, and what it can do instead (with the commands)."""
    others = [c for c in capabilities(model_or_class) if c is not capability]
    instead = "; it can " + " and ".join(f"{c.label} (`{c.command}`)" for c in others) if others else ""
    return f"model {name} does not {capability.label}{instead}"
