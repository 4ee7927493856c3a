"""`genlab list`: the options of every config group, and the metrics."""

from __future__ import annotations

from genlab.core.errors import GenlabError
from genlab.core.paths import config_dir, group_options, root_defaults


def run(group) -> None:
    from rich.console import Console
    from rich.table import Table

    groups = sorted(p.name for p in config_dir().iterdir() if p.is_dir() and p.name != "hydra")
    if group is not None and group not in groups:
        raise GenlabError(f"unknown config group '{group}'; choose one of: {', '.join(groups)}, or metrics, or models")

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
