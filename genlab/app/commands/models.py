"""`genlab list models`: every registered model, the data it trains on and what it can do (its capabilities)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

import genlab.models  # noqa: F401  (fills MODELS)
from genlab.core.registry import MODELS
from genlab.models.capabilities import capabilities


def run(group) -> None:
    table = Table(title="genlab models and what each can do")
    table.add_column("model", style="bold")
    table.add_column("trains on")
    table.add_column("can")
    table.add_column("commands")
    for name in MODELS.names():
        model = MODELS[name]
        found = capabilities(model)
        table.add_row(name, ", ".join(model.accepts), "; ".join(c.label for c in found),
                      ", ".join(["genlab eval", *(c.command for c in found if not c.command.startswith("genlab eval"))]))
    Console().print(table)
    for name in MODELS.names():
        for option in getattr(MODELS[name], "sampler_options", ()):
            print(f"{name} sampler: --{option.name} ({option.type.__name__}) {option.help}")
    print("Each model's options: `genlab list model`; train one with `genlab train model=NAME`.")
