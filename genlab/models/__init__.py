"""Models, found by name in MODELS; one file per family."""

import importlib
import pkgutil

from genlab.core.errors import GenlabError
from genlab.core.registry import LOSSES, MODELS
from genlab.models.base import GenerativeModel

# every module in this folder is imported, so its @MODELS.register line is all a new family adds
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["GenerativeModel", "build_model"]


def build_model(cfg, spec):
    """MODELS[cfg.model.name](cfg.model, spec, loss=...): the loss of the `loss` group for a model that trains
    adversarially (its YAML composes the group), None for the others."""


    model = MODELS[cfg.model.name]
    if spec.kind not in model.accepts:  # train.validate said so already; this guards direct use
        raise GenlabError(f"model={cfg.model.name} trains on {' or '.join(model.accepts)} data, not {spec.kind}")
    loss = LOSSES[cfg.loss.name](cfg.loss) if model.adversarial else None  # the others compose no loss group
    return model(cfg.model, spec, loss=loss)
