"""`genlab report`: a run's (or a sweep's) figures and index.html."""

from __future__ import annotations

from genlab.app.report import build_report
from genlab.core.errors import GenlabError


def run(runs, out, epochs, overwrite) -> None:
    from rich.console import Console
    from rich.table import Table

    wanted = None
    if epochs is not None:
        try:
            wanted = [int(e) for e in epochs.replace(" ", "").split(",") if e != ""]
        except ValueError:
            raise GenlabError(f"--epochs must be epoch numbers separated by commas, e.g. 0,10,20; got {epochs!r}") from None
        if not wanted or min(wanted) < 0 or len(wanted) > 100:
            raise GenlabError(f"--epochs must be up to 100 epoch numbers of 0 or more, e.g. 0,10,20; got {epochs!r}")
    built, index = build_report(list(runs), out, wanted, overwrite)
    for title, header, rows in built.console_tables:
        # one column per job, one row per parameter or number: sweeps have few jobs and many scalars
        table = Table(title=title, caption="final values; the same table is in sweep.csv and sweep.md")
        table.add_column("", style="bold", no_wrap=True, min_width=max(len(h) for h in header))
        for row in rows:
            table.add_column(f"job {row[0]}", justify="right", overflow="fold")
        for i, name in enumerate(header[1:], start=1):
            table.add_row(name, *[row[i] for row in rows])
        Console().print(table)
    for note in built.notes[:20]:  # what of the runs could not be read, and so is not in the report
        print(f"left out {note}")
    if len(built.notes) > 20:
        print(f"left out {len(built.notes) - 20} more file(s)")
    figures = sum(len(section.figures) for section in built.sections)
    print(f"{figures} figures in {built.out}; open {index}")
