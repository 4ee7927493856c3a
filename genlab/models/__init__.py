"""Models, found by name in MODELS; one file per family."""

from genlab.models import acgan, cgan, cvae, gan, infogan, vae, vqvae  # noqa: F401  (registers the models)
from genlab.models.base import GenerativeModel

__all__ = ["GenerativeModel", "build_model"]


def build_model(cfg, spec):
    """MODELS[cfg.model.name](cfg.model, spec, loss=LOSSES[cfg.loss.name](cfg.loss))."""
    from genlab.registry import LOSSES, MODELS, load_all

    load_all()

    loss = LOSSES[cfg.loss.name](cfg.loss)
    return MODELS[cfg.model.name](cfg.model, spec, loss=loss)
