"""Progress bars for the waits outside the training loop (its own bar is trainer.Progress).

`with bar("training the classifier", total=20) as advance: ... advance(1)` shows a rich bar on stderr while
the wait runs, and leaves nothing behind when it ends. Off a terminal (a log file, CI, a test) it draws nothing:
the caller's own log line says what is happening. Bars do not nest: rich shows one live display at a time,
so an inner wait inside an outer one advances nothing and draws nothing.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

_ACTIVE = False


def shown() -> bool:
    """Whether a bar would be drawn now: stderr is a terminal, no bar is up, GENLAB_PROGRESS is not 0."""
    return not _ACTIVE and sys.stderr.isatty() and os.environ.get("GENLAB_PROGRESS", "1") != "0"


@contextmanager
def bar(label: str, total: float | None = None, unit: str = ""):
    """A transient bar for one wait; yields advance(amount=1). total=None: a spinner with the elapsed time."""
    global _ACTIVE
    if not shown():
        yield lambda amount=1: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn()]
    if total is not None:
        columns += [MofNCompleteColumn(), TextColumn(unit)] if unit else [MofNCompleteColumn()]
    columns += [TimeElapsedColumn()] + ([TextColumn("eta"), TimeRemainingColumn()] if total is not None else [])
    _ACTIVE = True
    try:
        with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task(label, total=total)
            yield lambda amount=1: progress.advance(task, amount)
    finally:
        _ACTIVE = False
