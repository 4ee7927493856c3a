"""The flows' timing (seed 001): how much longer a flow takes to sample a batch than to train on one.

MAF computes the density in one pass and samples one dimension at a time; IAF the other way round. The report
measured a MAF's sampling at about 854 training batches. `genlab eval RUN --metrics flow_timing` times the run's
own flow and its mirror image, the same layers the other way round (an IAF for a MAF run, a MAF for an IAF run),
built untrained: a pass costs the same whatever the weights, so the mirror needs no run of its own.
"""

from __future__ import annotations

import math
import time

import torch

from genlab.core.metrics import metric
from genlab.models.flows import IAF, MAF, Flow, MADEDensity


def _seconds(fn, repeats: int, device: torch.device) -> float:
    """The fastest of `repeats` calls, after one warm-up call where there are several (the least disturbed by a busy
    machine); one call alone for a pass that takes a dimension at a time (seconds or minutes, warm anyway)."""
    if repeats > 1:
        fn()
    best = math.inf
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def sequential(model: Flow) -> str | None:
    """Which pass takes one dimension at a time: "sampling" (MAF, MADE), "density" (IAF), or None (RealNVP)."""
    if isinstance(model, IAF):
        return "density"
    return "sampling" if isinstance(model, (MAF, MADEDensity)) else None


def time_flow(model: Flow, batch: int, device: torch.device) -> dict[str, float]:
    """Seconds of a training batch (forward and backward of -log p, no optimiser step) and of sampling a batch."""
    images = torch.randint(0, 256, (batch, *model.shape), generator=torch.Generator().manual_seed(0))
    images = (images.float() / 127.5 - 1).to(device)

    def train_batch():
        with model.evaluating():
            model.nll(images, torch.Generator().manual_seed(0))["nll"].mean().backward()
        model.zero_grad(set_to_none=True)

    slow = sequential(model)
    train_s = _seconds(train_batch, 1 if slow == "density" else 3, device)
    sample_s = _seconds(lambda: model.sample(batch, generator=torch.Generator().manual_seed(0)),
                        1 if slow == "sampling" else 3, device)
    return {"train": train_s, "sample": sample_s}


def _mirror(model: Flow, cfg, spec) -> Flow | None:
    """The same layers the other way round, untrained: an IAF for a MAF, a MAF for an IAF."""
    if not isinstance(model, MAF):
        return None
    mirror = MAF(cfg.model, spec) if isinstance(model, IAF) else IAF(cfg.model, spec)
    return mirror.to(model.device)


@metric("flow_timing", kinds=("images",),
        when=lambda ctx: None if isinstance(ctx.run.model, Flow) else "only for flow runs")
def flow_timing(ctx) -> dict:
    """Seconds to sample a batch over seconds of a training batch, of the flow and of its mirror (seed 001's MAF)."""
    model, cfg = ctx.run.model, ctx.run.cfg
    batch = int(cfg.train.batch_size)
    protocol = {"batch": batch, "dimensions": model.dim, "layers": int(cfg.model.get("layers", 1) or 1),
                "hidden": cfg.model.get("hidden"), "device": str(ctx.device), "threads": torch.get_num_threads(),
                "training_batch": "forward and backward of the batch's -log p (no optimiser step, no data loading)",
                "repeats": "fastest of 3 after a warm-up; one call for the pass that takes a dimension at a time",
                "definition": "seconds to sample a batch / seconds of a training batch, the same batch size"}
    own = time_flow(model, batch, ctx.device)
    out = {"flow_train_batch_s": {"value": own["train"], "protocol": protocol},
           "flow_sample_batch_s": {"value": own["sample"], "protocol": protocol},
           "flow_sample_train_ratio": {"value": own["sample"] / own["train"], "protocol": protocol}}
    mirror = _mirror(model, cfg, ctx.run.spec)
    if mirror is not None:
        name = type(mirror).__name__
        times = time_flow(mirror, batch, ctx.device)
        detail = {**protocol, "model": f"{name}: the run's layers the other way round, untrained (a pass costs the "
                                       "same whatever the weights)"}
        out["mirror_train_batch_s"] = {"value": times["train"], "protocol": detail}
        out["mirror_sample_batch_s"] = {"value": times["sample"], "protocol": detail}
        out["mirror_sample_train_ratio"] = {"value": times["sample"] / times["train"], "protocol": detail}
    return out
