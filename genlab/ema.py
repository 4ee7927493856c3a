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

from genlab.errors import GenlabError


def _tensors(module: nn.Module) -> list[torch.Tensor]:
    return [*module.parameters(), *module.buffers()]


class EMA:
    def __init__(self, networks: dict[str, nn.Module], decay: float):
        self.networks, self.decay, self.updates = networks, float(decay), 0
        self.shadow = {name: [t.detach().clone() for t in _tensors(net)] for name, net in networks.items()}

    @torch.no_grad()
    def update(self) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, net in self.networks.items():
            pairs = list(zip(self.shadow[name], _tensors(net)))
            floats = [(s, t) for s, t in pairs if s.is_floating_point()]
            if floats:
                torch._foreach_lerp_([s for s, _ in floats], [t.detach() for _, t in floats], 1.0 - decay)
            for s, t in pairs:
                if not s.is_floating_point():
                    s.copy_(t)  # counters such as BatchNorm's num_batches_tracked
        self.updates += 1

    @contextlib.contextmanager
    def applied(self):
        """The averaged weights in the live networks inside the block; the trained ones after it."""
        saved = {name: [t.detach().clone() for t in _tensors(net)] for name, net in self.networks.items()}
        self.copy_to_networks()
        try:
            yield
        finally:
            with torch.no_grad():
                for name, net in self.networks.items():
                    for t, s in zip(_tensors(net), saved[name]):
                        t.copy_(s)

    @torch.no_grad()
    def copy_to_networks(self) -> None:
        for name, net in self.networks.items():
            for t, s in zip(_tensors(net), self.shadow[name]):
                t.copy_(s)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        if set(state["shadow"]) != set(self.shadow) or any(
                len(state["shadow"][n]) != len(self.shadow[n]) for n in self.shadow):
            raise GenlabError("the checkpoint's EMA does not fit this model's networks")
        device = next(iter(self.shadow.values()))[0].device if self.shadow else "cpu"
        self.shadow = {n: [t.to(device) for t in tensors] for n, tensors in state["shadow"].items()}
        self.updates = int(state["updates"])


def build_ema(model, decay: float | None) -> EMA | None:
    if decay is None:
        return None
    names = tuple(model.ema_networks)
    if not names:
        raise GenlabError(f"train.ema: {type(model).__name__} names no network to average; drop train.ema")
    networks = model.networks()
    return EMA({name: networks[name] for name in names}, decay)
