"""`genlab eval`: score a run, print a table, merge the numbers into RUN/metrics.json."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from genlab.app.commands.common import check_setting_names, device_for, output_area, use_sampler_settings
from genlab.core.errors import GenlabError
from genlab.core.files import atomic_write
from genlab.eval.places import parse_data_settings
from genlab.eval.store import evaluate_run, merge_metrics, run_header
from genlab.train.runs import load_run


def run(run, metrics, n, seed, device, data, ood_data, anomaly, ctx) -> None:
    logging.getLogger("genlab").setLevel(logging.WARNING)
    device = device_for(device)
    names = [m for m in metrics.replace(" ", "").split(",") if m] if metrics else None
    if anomaly and names is None:  # the other metrics score samples or likelihoods: ask for them by name
        names = ["anomaly"] + (["ood"] if ood_data is not None else [])
    settings = parse_data_settings(data, "--data") if data is not None else []
    check_setting_names(ctx)  # a mistyped option of the command: one line before the run is read
    target = load_run(run, device)
    use_sampler_settings(ctx, target, "eval")  # a sampler's settings (--steps 50): into every metric's protocol
    output_area(None, target, True)  # metrics.json and eval/ inside the run folder
    console = Console(stderr=True)
    result = evaluate_run(target, names, n, seed, torch.device(device), log=lambda line: console.print(line),
                          ood_data=ood_data, anomaly=anomaly, data=settings)
    _write_figures(target, result)
    path = target.path / "metrics.json"
    merge_metrics(path, run_header(target), result)
    _print_tables(target.name, result, path)
    _print_notes(target, result, path)


def _write_figures(target, result: dict) -> None:
    """A metric's figures (ROC, PR, score histograms): RUN/eval/<name>.png, each written whole."""
    figures = result.pop("figures", {})
    if not figures:
        return
    result["figures"] = {}
    for name, png in figures.items():
        figure = target.path / "eval" / f"{name}.png"
        try:
            atomic_write(figure, lambda tmp, data=png: Path(tmp).write_bytes(data))
        except OSError as err:
            raise GenlabError(f"cannot write {figure} ({err.strerror or err})") from None
        result["figures"][name] = str(figure.relative_to(target.path))


def _print_tables(title: str, result: dict, path: Path) -> None:
    """One table of every number with its counts and split, and a pivot table for each metric's own table."""
    table = Table(title=title, caption=f"full protocols in {path}")
    for column in ("metric", "value", "generated", "real", "split"):
        table.add_column(column, style="bold" if column == "metric" else None,
                         justify="left" if column in ("metric", "split") else "right")
    grouped: dict[str, dict[str, dict[str, float]]] = {}  # a metric's own tables: protocol table / row / column
    for name, entry in result["metrics"].items():
        protocol = entry["protocol"]
        if {"table", "row", "column"} <= set(protocol):
            grouped.setdefault(protocol["table"], {}).setdefault(protocol["row"], {})[protocol["column"]] = \
                entry["value"]
            continue
        split = protocol.get("real_split") or protocol.get("split") or ""
        table.add_row(name, f"{entry['value']:.4g}", str(protocol.get("n_generated", "")),
                      str(protocol.get("n_real", protocol.get("n_images", ""))), split)
    if table.row_count:
        Console().print(table)
    for name, rows in grouped.items():
        Console().print(_pivot(name, rows, path))


def _pivot(title: str, rows: dict[str, dict[str, float]], path: Path) -> Table:
    columns = list(dict.fromkeys(column for cells in rows.values() for column in cells))
    pivot = Table(title=title, caption=f"protocol in {path}")
    pivot.add_column("", style="bold")
    for column in columns:
        pivot.add_column(column, justify="right")
    for row, cells in rows.items():
        pivot.add_row(row, *[f"{cells[c]:.4f}" if c in cells and abs(cells[c]) < 1.5 else
                             f"{cells[c]:.2f}" if c in cells else "" for c in columns])
    return pivot


def _print_notes(target, result: dict, path: Path) -> None:
    reasons: dict[str, list[str]] = {}
    for name, why in result["skipped"].items():
        reasons.setdefault(why, []).append(name)
    for why, skipped in reasons.items():
        print(f"skipped {', '.join(skipped)}: {why}")
    for figure in result.get("figures", {}).values():
        print(f"wrote {target.path / figure}")
    print(f"wrote {path}")
