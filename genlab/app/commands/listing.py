"""`genlab list`: the options of every config group, and the metrics."""

from __future__ import annotations

from genlab.core.errors import GenlabError
from genlab.core.metrics import metric_help
from genlab.core.paths import config_dir, group_options, root_defaults
from genlab.core.registry import METRICS


def run(group) -> None:
    from rich.console import Console
    from rich.table import Table

    groups = sorted(p.name for p in config_dir().iterdir() if p.is_dir() and p.name != "hydra")
    if group == "metrics":
        return _list_metrics()
    if group is not None and group not in groups:
        raise GenlabError(f"unknown config group '{group}'; choose one of: {', '.join(groups)}, or metrics")

    defaults = root_defaults()
    table = Table(title="genlab config groups (* = default)", show_lines=False)
    table.add_column("group", style="bold cyan")
    table.add_column("option", style="bold")
    table.add_column("description")
    for name in [group] if group else groups:
        for i, (option, text) in enumerate(group_options(name).items()):
            mark = " *" if defaults.get(name) == option else ""
            table.add_row(name if i == 0 else "", option + mark, text)
        table.add_section()
    Console().print(table)
    print("Pick one with GROUP=OPTION, e.g. `genlab train model=vae data=fashion_mnist`; "
          "set any key with KEY=VALUE, e.g. `train.epochs=5`.")


def _list_metrics() -> None:
    """`genlab list metrics`: every registered metric (families register their own) and what it scores."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="genlab eval metrics")
    table.add_column("metric", style="bold")
    table.add_column("what it measures (the data it scores)")
    for name in METRICS.in_order():
        table.add_row(name, metric_help(name))
    Console().print(table)
    print("Run them with `genlab eval RUN` (all that apply) or `genlab eval RUN --metrics a,b`.")
