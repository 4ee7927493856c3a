"""Running the metrics of a run and storing them in RUN/metrics.json, each number with its protocol."""

from __future__ import annotations

import math
import os
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING

import torch

import genlab
from genlab.core import files
from genlab.core.errors import GenlabError
from genlab.core.files import atomic_write
from genlab.core.metrics import MetricUnavailable, not_applicable, ordered
from genlab.core.registry import METRICS
from genlab.eval.context import Context

if TYPE_CHECKING:
    from genlab.train.runs import Run


def _finite(value):
    """A JSON-ready copy: NaN and infinities become None (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def run_header(run: Run) -> dict:
    """The top of a metrics.json: which run, checkpoint, step and weights its numbers are of."""

    return {"genlab_version": genlab.__version__, "run": str(run.path), "checkpoint": str(run.checkpoint),
            "step": run.step, "model": run.cfg.model.name, "data": run.cfg.data.name,
            "weights": "ema" if run.ema else "trained"}


def merge_metrics(path: Path, header: dict, result: dict) -> dict:
    """Write RUN/metrics.json with this call's numbers merged into those already there: each metric output keeps
    its own value, protocol, time, checkpoint, step and weights, so `eval --metrics a` then `--metrics b` leaves
    both. A metric scored again replaces its old outputs; a damaged file is replaced whole. Returns the record."""
    import json
    from datetime import datetime

    old: dict = {}
    if os.path.lexists(path):
        try:  # read as untrusted input: a link or an oversized file is not read (and the write says so)
            old = json.loads(files.read_bytes(path, files.MAX_TEXT, root=path.parent, what="metrics file"))
        except (GenlabError, ValueError, RecursionError):  # not JSON, a number too long, a nesting too deep
            old = {}
    old = old if isinstance(old, dict) else {}
    when = datetime.now(UTC).isoformat(timespec="seconds")
    stamp = {"time": when, "checkpoint": header.get("checkpoint"), "step": header.get("step"),
             "weights": header.get("weights")}
    fresh = {name: {**entry, **stamp} for name, entry in result["metrics"].items()}
    ran = set(result.get("ran", ()))  # only a metric scored now replaces its old numbers (not one skipped now)
    # an entry from before entries carried their own stamp gets the old file's: it was scored then, not now
    old_stamp = {key: old.get(key) for key in ("time", "checkpoint", "step", "weights")}
    kept = {name: {**old_stamp, **entry} for name, entry in (old.get("metrics") or {}).items()
            if isinstance(entry, dict) and name not in fresh and entry.get("metric") not in ran}
    skipped = {name: why for name, why in (old.get("skipped") or {}).items() if name not in ran}
    figures = {**(old.get("figures") or {}), **result.get("figures", {})}
    record = {**header, "time": when, "metrics": {**kept, **fresh}, "skipped": {**skipped, **result["skipped"]}}
    if figures:
        record["figures"] = figures
    text = json.dumps(_finite(record), indent=2, allow_nan=False) + "\n"
    try:
        atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    except OSError as err:
        raise GenlabError(f"cannot write {path} ({err.strerror or err})") from None
    return record


def evaluate_run(run: Run, names: list[str] | None, n: int, seed: int, device: torch.device, log=print,
                 ood_data: str | None = None, anomaly: bool = False, data: list[str] | None = None) -> dict:
    """Run each metric; a metric asked for by name that cannot run is an error, a default one is skipped
    with its reason, and one that does not apply to this run (another data kind, no --ood-data) is left out.
    Returns {"metrics": {name: {value, protocol}}, "skipped": {metric: reason}, "figures": {name: PNG bytes}}."""
    explicit = names is not None
    for name in names or []:
        METRICS[name]  # unknown names: one line listing the valid ones
    ctx = Context(run, n, seed, device, log, ood_name=ood_data, anomaly=anomaly, data_settings=list(data or []))
    _check_metric_options(names, ctx, ood_data, anomaly)
    results, skipped, ran = {}, {}, []
    for name in names or ordered():
        why = not_applicable(name, ctx)
        if why is not None:
            if explicit:
                raise GenlabError(f"{name} does not apply to this run: {why}")
            continue
        try:
            scores = METRICS[name](ctx)
            clash = sorted(set(scores) & set(results))
            if clash:
                raise GenlabError(f"metric {name} reports {clash[0]}, which another metric reported already: "
                                  "give the family's metric outputs names of their own")
            results.update({key: {**entry, "metric": name} for key, entry in scores.items()})
            ran.append(name)
        except MetricUnavailable as why:
            if explicit:
                raise GenlabError(f"{name}: {why}") from None
            skipped[name] = str(why)
    return {"metrics": results, "skipped": skipped, "figures": ctx.figures, "ran": ran}


def _check_metric_options(names: list[str] | None, ctx: Context, ood_data: str | None, anomaly: bool) -> None:
    """--anomaly and --ood-data only with the metric that reads them, and --ood-data only where that metric applies."""
    if anomaly and "anomaly" not in (names or ["anomaly"]):
        raise GenlabError("--anomaly is read only by the anomaly metric: add it to --metrics")
    if ood_data is not None and "ood" not in (names or ["ood"]):
        raise GenlabError("--ood-data is read only by the ood metric: add it to --metrics")
    if ood_data is not None and names is None and not_applicable("ood", ctx):
        raise GenlabError(f"--ood-data: the ood metric does not apply to this run: {not_applicable('ood', ctx)}")
