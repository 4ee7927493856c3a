"""`genlab list books`: each report's book, what it reads (and its offline stand-ins) and how long it takes."""

from __future__ import annotations

from genlab.app import books
from genlab.app.bookrun import data_of


def run(group) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="genlab books: a report's experiments, figures and numbers in one command")
    for column in ("book", "report", "runs", "reads (offline: stand-ins)", "time"):
        table.add_column(column, style="bold" if column == "book" else None)
    for name in books.names():
        book = books.load(name)
        stand: dict[str, list[str]] = {}
        for run in book.runs:
            if run.needs:
                stand.setdefault(run.needs, []).append(data_of(run.offline))
        reads = ", ".join(f"{d} ({'/'.join(dict.fromkeys(s))})" for d, s in stand.items()) or "shipped data only"
        time = "; ".join(f"{k}: {v}" for k, v in book.time.items())
        table.add_row(name, f"{book.report}: {book.title}", str(len(book.runs)), reads, time)
    Console().print(table)
    print("Run one with `genlab book NAME` (--offline for the stand-ins, --quick for a first look in minutes).")
