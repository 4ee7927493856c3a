"""How a run's records look: sample grids, scatter plots, curves.png, metrics.jsonl reading, TensorBoard hparams.

runwriter.RunWriter is what writes them into a run folder; `genlab report` reads them back."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from genlab.core.files import MAX_TEXT, read_lines

# Scalars that describe the run rather than the model; kept out of curves.png.
NOT_CURVES = {"step", "epoch", "time", "img_per_s", "data_wait", "epoch_img_per_s", "epoch_data_wait"}


def read_metrics(path: Path, root: Path | None = None, notes: list | None = None) -> list[dict]:
    """The records of a metrics.jsonl, read as untrusted input (genlab/core/files.py: streamed, no link, capped): a torn,
    binary or over-long line (a killed run, a damaged file) is skipped, as is a record whose step is not a count;
    values that are not numbers are dropped. A link or a file too large is one GenlabError line."""

    records = []
    if not os.path.lexists(path):
        return records
    if notes is not None and os.path.isfile(path) and os.path.getsize(path) > MAX_TEXT:
        notes.append(f"{Path(path).name}: {os.path.getsize(path):,} bytes; only its first {MAX_TEXT >> 20} MiB read")
    for line in read_lines(path, root=root):
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # JSONDecodeError, an integer too long, a nesting too deep
            continue
        record = _record(record)
        if record is not None:
            records.append(record)
    return records


def _record(record) -> dict | None:
    """One metrics.jsonl record as genlab wrote it: an integer step, numbers (or null) for the rest."""
    if not isinstance(record, dict):
        return None
    step = record.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < 2**62:
        return None
    out = {"step": step}
    for key, value in record.items():
        if key == "step" or not isinstance(key, str) or len(key) > 200:
            continue
        if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                             and (not isinstance(value, float) or math.isfinite(value))):
            out[key] = value
    return out


MAX_PANELS = 24  # curves.png draws at most this many panels (a run's records are read as untrusted input)


def _hparam_value(text: str):
    """An override's value as TensorBoard's HParams tab wants it: a number, a bool, or a string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return float(text)
    except ValueError:
        return text


def hparams_of(overrides: list[str], final: dict[str, float]) -> tuple[dict, dict[str, float]]:
    """A sweep job's task overrides as hyper-parameters (numbers, bools or strings; not hydra.*) and its final
    scalars as their metrics, final/<name>; ({}, {}) when there is nothing to compare."""
    params = {}
    for override in overrides:
        key, _, value = override.partition("=")
        key = key.lstrip("+~")
        if key and not key.startswith("hydra.") and not key.startswith("hydra/"):
            params[key] = _hparam_value(value)
    metrics = {f"final/{k}": float(v) for k, v in final.items() if isinstance(v, (int, float)) and math.isfinite(v)}
    if not params or not metrics:
        return {}, {}
    return params, metrics


def final_scalars(records: list[dict]) -> dict[str, float]:
    """The last logged value of every model scalar (not step, time or speed) in metrics.jsonl's records."""
    final: dict[str, float] = {}
    for record in records:
        final.update({k: v for k, v in record.items() if k not in NOT_CURVES})
    return final
