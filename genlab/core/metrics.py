"""The metric contract: @metric registers fn(ctx) -> {name: {"value", "protocol"}} in METRICS; MetricUnavailable is
"this metric cannot run here", one line saying why. A family registers its own metrics in its model file with it."""

from __future__ import annotations

from genlab.core.registry import METRICS


class MetricUnavailable(Exception):
    """A metric that cannot run for this run (no labels, no weights...): one line saying why and what to do."""


def metric(name: str, kinds: tuple[str, ...] | None = ("images",), when=None, better: str | None = None):
    """Register a metric: fn(ctx) -> {name: {"value", "protocol"}}. `kinds`: the data kinds it scores (None:
    any); `when(ctx)`: None where it applies, else the reason it does not; `better`: "min" or "max" where its
    number of the same name ranks runs (a sweeper's train.objective=NAME then knows its direction). `genlab eval` runs every registered
    metric that applies, quietly leaving out the others; a metric asked for by name that does not apply is one
    line. A family registers its own in its model file; the docstring's first line is its `genlab list
    metrics` help."""

    def add(fn):
        fn.kinds, fn.when, fn.better = kinds, when, better
        return METRICS.register(name)(fn)

    return add


def not_applicable(name: str, ctx) -> str | None:
    """Why metric `name` does not apply to this run, or None."""
    fn = METRICS[name]
    kind = ctx.run.spec.kind
    if name in getattr(ctx.run.model, "replaces_metrics", ()):
        return f"{ctx.run.cfg.model.name} is scored by its own metric instead"
    if fn.kinds is not None and kind not in fn.kinds:
        return f"it scores {' or '.join(fn.kinds)} data and {ctx.run.cfg.data.name} is {kind}"
    return fn.when(ctx) if fn.when is not None else None


def metric_help(name: str) -> str:
    fn = METRICS[name]
    line = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
    kinds = "any data" if fn.kinds is None else ", ".join(fn.kinds) + " data"
    return f"{line} ({kinds})" if line else f"({kinds})"


# the shared metrics (genlab/eval) in the order `genlab eval` runs and prints them and `genlab list metrics` lists
# them: sample quality first, then likelihoods, translations and rankings
SHARED_ORDER = ("fd_domain", "precision_recall", "ms_ssim", "fid", "kid", "is", "translation_fid", "likelihood",
                "translation", "ood", "anomaly")


def ordered() -> list[str]:
    """Every registered metric: the shared ones in SHARED_ORDER, then each family's in the order registered."""
    names = METRICS.in_order()
    return [n for n in SHARED_ORDER if n in names] + [n for n in names if n not in SHARED_ORDER]
