"""`genlab list metrics`: every registered metric (families register their own) and what it scores."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

import genlab.eval  # noqa: F401  (registers the shared metrics; genlab.models, imported by it, the families')
from genlab.core.metrics import metric_help, ordered


def run(group) -> None:
    table = Table(title="genlab eval metrics")
    table.add_column("metric", style="bold")
    table.add_column("what it measures (the data it scores)")
    for name in ordered():
        table.add_row(name, metric_help(name))
    Console().print(table)
    print("Run them with `genlab eval RUN` (all that apply) or `genlab eval RUN --metrics a,b`.")
