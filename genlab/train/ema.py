"""train.ema: exponential moving averages of the networks a model names, kept by the trainer.

The averaged weights draw the samples and visuals during training, are saved in every checkpoint (resumed
exactly), and are what `genlab sample` and `genlab eval` use. The average is kept as plain tensors beside the
live ones rather than as a torch.optim.swa_utils.AveragedModel: that deep-copies the module, and a model whose
network is the model itself (the VAE) would copy its optimisers too. The update is the same lerp, with the
usual warm-up: decay_t = min(decay, (1 + t) / (10 + t)), so a short run is not pulled back to its start.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from genlab.core.errors import GenlabError


def _named(module: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers by name: what the average keeps, and how a checkpoint matches it back."""
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}


class EMA:
    def __init__(self, networks: dict[str, nn.Module], decay: float):
        self.networks, self.decay, self.updates = networks, float(decay), 0
        self.shadow = {name: {k: t.detach().clone() for k, t in _named(net).items()} for name, net in networks.items()}

    @torch.no_grad()
    def update(self) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, net in self.networks.items():
            live, shadow = _named(net), self.shadow[name]
            floats = [k for k, s in shadow.items() if s.is_floating_point()]
            if floats:
                torch._foreach_lerp_([shadow[k] for k in floats], [live[k].detach() for k in floats], 1.0 - decay)
            for k, s in shadow.items():
                if not s.is_floating_point():
                    s.copy_(live[k])  # counters such as BatchNorm's num_batches_tracked
        self.updates += 1

    @contextlib.contextmanager
    def applied(self):
        """The averaged weights in the live networks inside the block; the trained ones after it."""
        saved = {name: {k: t.detach().clone() for k, t in _named(net).items()} for name, net in self.networks.items()}
        self.copy_to_networks()
        try:
            yield
        finally:
            self._copy(saved)

    def copy_to_networks(self) -> None:
        self._copy(self.shadow)

    @torch.no_grad()
    def _copy(self, source: dict[str, dict[str, torch.Tensor]]) -> None:
        for name, net in self.networks.items():
            for k, t in _named(net).items():
                t.copy_(source[name][k])

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        shadow = state["shadow"]
        for name, tensors in self.shadow.items():
            theirs = shadow.get(name, {})
            bad = sorted(set(tensors) ^ set(theirs)) or [k for k in tensors if theirs[k].shape != tensors[k].shape]
            if bad:
                raise GenlabError(f"the checkpoint's EMA of {name!r} does not fit this model (first mismatch: "
                                  f"{bad[0]}); use the same model.* settings")
        self.shadow = {n: {k: shadow[n][k].to(t.device) for k, t in tensors.items()} for n, tensors in self.shadow.items()}
        self.updates = int(state["updates"])


def build_ema(model, decay: float | None) -> EMA | None:
    if decay is None:
        return None
    names = tuple(model.ema_networks)
    if not names:
        raise GenlabError(f"train.ema: {type(model).__name__} names no network to average; drop train.ema")
    networks = model.networks()
    return EMA({name: networks[name] for name in names}, decay)
