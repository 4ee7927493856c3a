"""`genlab weights`: the pretrained weights files genlab can use, and adding one found elsewhere."""

from __future__ import annotations

import os

import genlab.eval
import genlab.models  # noqa: F401  (registers the families' weights: VGG19)
from genlab.core import weights
from genlab.core.progress import bar


def list_files(ctx) -> None:
    if ctx.invoked_subcommand is not None:
        return
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False, soft_wrap=True)  # paths and URLs whole, whatever the width
    for entry in weights.known():
        found = entry.find()
        if found is None:
            status = "[red]missing[/red]"
        else:
            with bar(f"checking {found.name}", total=found.stat().st_size) as advance:
                digest = weights.sha256_of(found, advance)
            status = ("[green]ok[/green]: the published file" if digest.startswith(entry.sha256_prefix) else
                      f"[yellow]not the published file[/yellow] (sha256 {digest[:8]}..., published "
                      f"{entry.sha256_prefix}...): its numbers are not comparable with published ones")
        console.print(f"[bold]{entry.name}[/bold]  {entry.file} (~{entry.megabytes} MB)  {status}")
        console.print(f"  used by:     {escape(entry.used_by)}")
        (how, path), = entry.places()
        console.print(f"  looked for:  {escape(str(path))} ({how})")
        if os.environ.get(entry.env) is None:
            console.print(f"  {'':12} (or set {entry.env}=FILE)")
        if found is None and os.environ.get(entry.env):
            console.print(f"  get it:      download {entry.url}, then point {entry.env} at it (or unset "
                          f"{entry.env} and run `genlab weights add FILE`)")
        elif found is None:
            console.print(f"  get it:      download {entry.url}, then `genlab weights add FILE`")


def add(file) -> None:
    size = file.expanduser().stat().st_size if file.expanduser().is_file() else None
    with bar(f"checking {file.name}", total=size) as advance:
        entry, target, copied = weights.add(file, advance)
    if copied:
        print(f"{entry.name}: checksum ok; copied to {target}")
    else:
        print(f"{entry.name}: {target} is already this file; nothing to do")
