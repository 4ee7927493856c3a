"""`genlab book NAME`: run a report's book: its data checked, every run trained (a Hydra multirun each), evaluated,
then one page (bookpage.py).

Each run of the book is a multirun folder BOOK/runs/<id>/ with its jobs 0, 1, ... (one job unless the run sweeps).
BOOK/book.json records, per run, the command line it was trained with and what of it is done, so running the
book again re-uses what is finished, and a book stopped by Ctrl-C continues where it stopped: an interrupted
multirun continues job by job (a finished job is kept, a job with a checkpoint resumes from it in place, a job
that never started starts). Every command runs as its own `genlab` process, printed as the user would type it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import genlab.data  # fills DATASETS
from genlab.app import compose
from genlab.app.books import PLACEHOLDER, Book, Run
from genlab.app.commands.train import _quote as _hydra_quote
from genlab.core import files
from genlab.core.checkpoint import load_checkpoint
from genlab.core.errors import GenlabError, Interrupted
from genlab.core.registry import DATASETS

STATE = "book.json"
PLAIN = re.compile(r"^[A-Za-z0-9/._-]+$")
MARK = "genlab book"


@dataclass
class Plan:
    book: Book
    out: Path
    offline: bool = False
    quick: bool = False
    extra: list[str] = field(default_factory=list)  # overrides for every run (device=cuda, a launcher, ...)
    roots: dict[str, str] = field(default_factory=dict)  # dataset -> data.root
    nproc: int = 1
    missing: dict[str, str] = field(default_factory=dict)  # dataset -> why it is missing
    state: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what of the runs the page could not read

    def stand_in(self, run: Run) -> bool:
        return run.needs is not None and run.needs in self.missing

    def folder(self, run_id: str) -> Path:
        return self.out / "runs" / run_id

    def job(self, run_id: str, job: int = 0) -> Path:
        return self.folder(run_id) / str(job)

    def line(self, run: Run) -> list[str]:
        """The train overrides of `run` in this plan: the report's line (with its data root) or the stand-in, then
        --quick's additions and the book-wide overrides; {id} placeholders become job folders."""
        words = list(run.offline) if self.stand_in(run) else [*run.train, *self.root_overrides(run)]
        words += [*(run.quick if self.quick else []), *self.extra]
        return [PLACEHOLDER.sub(lambda m: _quote(self.job(m.group(1))), w) for w in words]

    def root_overrides(self, run: Run) -> list[str]:
        """Where --data-root or --data NAME=DIR puts the run's data (its `root` lines, {root} filled)."""
        if run.needs not in self.roots:
            return []
        root = self.roots[run.needs].rstrip("/") or "/"
        return [w.replace("{root}", root) for w in run.root]

    def argv(self, words: list[str], run_id: str, job: int = 0) -> list[str]:
        """An `after` command's words with {run} (this job's folder) and {id} (another run's job 0) filled."""
        here = self.job(run_id, job)
        return [PLACEHOLDER.sub(lambda m: str(here if m.group(1) == "run" else self.job(m.group(1))), w)
                for w in words]


def _quote(path) -> str:
    """A folder as a Hydra override's value: as it is where it is plain, else quoted (spaces, commas, quotes)."""
    return str(path) if PLAIN.match(str(path)) else _hydra_quote(path)


# ---- the book folder and its state ----------------------------------------------------------------------
def open_folder(plan: Plan) -> None:
    """BOOK: new, empty, or a book folder of this book; its book.json read back."""
    out = plan.out
    state_path = out / STATE
    if os.path.lexists(out) and not out.is_dir():
        raise GenlabError(f"{out} is not a folder: pass --out NEW_FOLDER")
    if out.is_dir() and any(os.scandir(out)) and not os.path.lexists(state_path):
        raise GenlabError(f"{out} already holds files and is not a book folder: pass --out NEW_FOLDER")
    if os.path.lexists(state_path):
        try:
            state = json.loads(files.read_bytes(state_path, files.MAX_TEXT, root=out, what="book state"))
        except ValueError:
            raise GenlabError(f"{state_path} is not a book's state (not JSON); pass --out NEW_FOLDER") from None
        if not isinstance(state, dict) or state.get("generator") != MARK or not isinstance(state.get("runs"), dict):
            raise GenlabError(f"{state_path} is not a genlab book's state; pass --out NEW_FOLDER")
        if state.get("book") != plan.book.name:
            raise GenlabError(f"{out} holds the book {state.get('book')!r}, not {plan.book.name!r}: pass --out "
                              "NEW_FOLDER")
        plan.state = state
    else:
        plan.state = {"generator": MARK, "book": plan.book.name, "runs": {}}
    files.declare(out, replace=True, what="the book folder")
    try:
        files.make_folder(out)
    except OSError as err:
        raise GenlabError(f"cannot make the book folder {out} ({err.strerror or err}); pass --out DIR") from None


def save_state(plan: Plan) -> None:
    text = json.dumps(plan.state, indent=1) + "\n"
    files.write(plan.out / STATE, lambda tmp: Path(tmp).write_text(text))


def run_state(plan: Plan, run: Run) -> dict:
    """What book.json says of `run`; a run trained with another line (another mode, other overrides) is refused."""
    line = plan.line(run)
    if run.id not in plan.state["runs"] or not os.path.lexists(plan.folder(run.id)):
        plan.state["runs"][run.id] = {"line": line}  # recorded before it trains: a stopped run keeps its line
        save_state(plan)
    state = plan.state["runs"][run.id]
    if state.get("line") != line:
        raise GenlabError(f"{plan.folder(run.id)} was trained with another command line ({' '.join(state['line'])}); "
                          f"this book now asks for {' '.join(line)}: pass a new --out, the same options as before, "
                          f"or move {plan.folder(run.id)} away to train it anew")
    return state


# ---- the data --------------------------------------------------------------------------------------------
def check_data(plan: Plan, say=print) -> None:
    """One line per dataset the book reads: found, or missing and what happens instead (--offline), or a stop."""
    for dataset in plan.book.datasets:
        run = next(r for r in plan.book.runs if r.needs == dataset)
        try:
            words = [w for w in run.train if not PLACEHOLDER.search(w)]  # another run's folder: not data
            cfg = compose.compose(words + plan.root_overrides(run))
            DATASETS[cfg.data.name].locate(cfg.data)
            say(f"{dataset}: found")
        except GenlabError as err:
            plan.missing[dataset] = str(err)
            stand_ins = sorted({data_of(r.offline) for r in plan.book.runs if r.needs == dataset})
            then = f"--offline trains on {', '.join(stand_ins)} instead" if plan.offline else \
                "give its folder with --data-root DIR or --data NAME=DIR, or add --offline for the stand-in"
            say(f"{dataset}: missing ({str(err).rstrip('.')}); {then}")
    if plan.missing and not plan.offline:
        raise GenlabError(f"the book {plan.book.name} needs {', '.join(plan.missing)}, not found (above): give the "
                          "folders (--data-root DIR, or --data NAME=DIR), or run the stand-ins with --offline")


def data_of(words: list[str]) -> str:
    """The stand-in line's dataset as the user reads it: its data=NAME, else its preset."""
    for key in ("data=", "experiment="):
        found = [w.partition("=")[2] for w in words if w.startswith(key)]
        if found:
            return found[-1]
    return "the stand-in"


# ---- running ---------------------------------------------------------------------------------------------
def genlab(args: list[str], say=print) -> None:
    """One genlab command in its own process, printed as typed; Ctrl-C reaches it too (it saves and stops), and
    then the book stops with it."""
    say("$ genlab " + shlex.join(args))
    process = subprocess.Popen([sys.executable, "-m", "genlab", *args])
    try:
        code = process.wait()
    except KeyboardInterrupt as err:
        signum = getattr(err, "signum", signal.SIGINT)
        if signum != signal.SIGINT:  # SIGTERM or SIGHUP sent to the book alone: its command stops the same way
            process.send_signal(signum)
        _wait_out(process)
        raise Interrupted(signum) from None
    if code in (130, -signal.SIGINT):
        raise Interrupted(signal.SIGINT)
    if code:
        raise GenlabError(f"`genlab {shlex.join(args[:3])} ...` failed (exit {code}, its message is above); the book "
                          "stops here; run the same `genlab book` command again to continue once it is fixed")


def _wait_out(process) -> int:
    """The command got the same Ctrl-C (one terminal, one process group): let it save its checkpoint."""
    while True:
        try:
            return process.wait()
        except KeyboardInterrupt:
            continue


def train(plan: Plan, run: Run, say=print) -> None:
    state = run_state(plan, run)
    if state.get("trained"):
        say(f"{run.id}: trained before, re-used ({plan.folder(run.id)})")
        return
    line = plan.line(run)
    folder = plan.folder(run.id)
    if not os.path.lexists(folder) and plan.nproc == 1:
        genlab(["train", "-m", *line, f"hydra.sweep.dir={_quote(folder)}"], say)
    else:
        for i, variant in enumerate(compose.sweep_variants(line)):
            _train_job(plan, variant, folder / str(i), say)
    state["trained"] = True
    save_state(plan)


def _train_job(plan: Plan, variant: list[str], job: Path, say) -> None:
    """One job of a run, alone: kept when finished, resumed in place from its checkpoint, or started."""
    nproc = ["--nproc", str(plan.nproc)] if plan.nproc > 1 else []
    if (job / "checkpoints" / "last.pt").is_file():
        if _finished(job):
            say(f"{job}: finished before, re-used")
            return
        genlab(["train", *nproc, *variant, f"hydra.run.dir={_quote(job)}", f"train.resume={_quote(job)}"], say)
    elif os.path.lexists(job):
        raise GenlabError(f"{job} holds an unfinished job without a checkpoint: move it away and run the book again")
    else:
        genlab(["train", *nproc, *variant, f"hydra.run.dir={_quote(job)}"], say)


def _finished(job: Path) -> bool:
    state = load_checkpoint(job)
    t = state["config"]["train"]
    total = t["steps"] if t.get("steps") is not None else t["epochs"] * state["batches_per_epoch"]
    return state["step"] >= total


def jobs(plan: Plan, run: Run) -> list[Path]:
    folder = plan.folder(run.id)
    found = [p for p in folder.iterdir() if p.name.isdigit() and p.is_dir() and not p.is_symlink()] \
        if folder.is_dir() else []
    return sorted(found, key=lambda p: int(p.name))


def evaluate(plan: Plan, run: Run, say=print) -> None:
    """`genlab eval` of each job, then the run's `after` commands; each once (book.json)."""
    state = run_state(plan, run)
    steps = [["eval", str(job), *run.eval] for job in jobs(plan, run)] if run.eval is not None else []
    steps += [plan.argv(words, run.id) for words in run.after]
    for args in steps:
        key = shlex.join(args)
        if key in state.setdefault("done", []):
            continue
        genlab(args, say)
        state["done"].append(key)
        save_state(plan)
