"""`genlab book NAME`: a report's experiments, evaluations and page in one command (genlab/app/bookrun.py)."""

from __future__ import annotations

from pathlib import Path

from genlab.app import bookpage, bookrun, books
from genlab.core.errors import GenlabError

REFUSED = ("-m", "--multirun", "hydra.sweep.dir", "hydra.run.dir", "hydra.sweep.subdir", "train.resume")


def run(name, out, offline, quick, data_root, data, nproc, ctx) -> None:
    book = books.load(name)
    plan = bookrun.Plan(book, Path(out) if out else Path("books") / name, offline, quick, _extra(list(ctx.args)),
                        _roots(book, data_root, data or []), nproc)
    print(f"book {name}: {book.title} ({len(book.runs)} runs) in {plan.out}")
    bookrun.check_data(plan)  # before the book's folder is made: a book that cannot run leaves nothing
    bookrun.open_folder(plan)
    try:
        for i, run_ in enumerate(book.runs, start=1):
            print(f"[{i}/{len(book.runs)}] {run_.id}", flush=True)
            bookrun.train(plan, run_)
            bookrun.evaluate(plan, run_)
    except KeyboardInterrupt:  # Ctrl-C (the command in flight saved and stopped), SIGTERM, SIGHUP
        print(f"book {name} stopped; run the same command to continue (finished runs are kept)")
        raise
    page, missing = bookpage.write_page(plan)
    for note in plan.notes[:10]:
        print(f"left out {note}")
    for figure in missing:
        print(f"missing figure: {figure}")
    print(f"the book's page: {page}")


def _extra(args: list[str]) -> list[str]:
    """Overrides for every run of the book (device=cuda, hydra/launcher=slurm, ...); the book decides the rest."""
    for arg in args:
        key = arg.partition("=")[0].lstrip("+~")
        if arg in REFUSED or key in REFUSED:
            raise GenlabError(f"{arg}: the book decides its runs' folders, sweeps and resumes; leave it out")
        if arg.startswith("-"):
            raise GenlabError(f"no such option: {arg} (see `genlab book --help`)")
        if "=" not in arg:
            raise GenlabError(f"{arg!r} is not an override: pass KEY=VALUE for every run, e.g. device=cuda")
    return args


def _roots(book, data_root: Path | None, data: list[str]) -> dict[str, str]:
    """dataset -> data.root: --data-root DIR for every dataset of the book, --data NAME=DIR for one."""
    data_root = data_root.expanduser() if data_root else None
    roots = {dataset: str(data_root) for dataset in book.datasets} if data_root else {}
    for folder in [*([str(data_root)] if data_root else []), *(d.partition("=")[2] for d in data)]:
        if folder and not bookrun.PLAIN.match(folder):
            raise GenlabError(f"{folder!r}: a data folder here is letters, digits and / . _ - only; link the data "
                              "from a folder with a plain name")
    for item in data:
        dataset, sep, folder = item.partition("=")
        if not sep or not folder:
            raise GenlabError(f"--data {item!r}: pass NAME=FOLDER, e.g. --data celeba=/data/celeba_root")
        if dataset not in book.datasets:
            raise GenlabError(f"--data {dataset}: the book {book.name} reads {', '.join(book.datasets) or 'no dataset'}")
        roots[dataset] = str(Path(folder).expanduser())
    return roots
