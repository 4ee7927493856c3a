"""Run folders: claimed before Hydra writes into them, locked while their run lives, and, when a start fails,
cleaned of what that run wrote and of nothing else.

`genlab train` claims the run folder (or a sweep's folder) before Hydra starts. A time-stamped folder is made
new with an exclusive mkdir, so two runs started in the same second get `<time>` and `<time>_2`. A folder the
user named may already exist: it may not hold anything a run writes (.hydra/, train.log, checkpoints/, ...: a
run would write over it), a sweep's folder must be empty, and a failed start removes only what this process
wrote there (genlab/core/files.py records each file and folder it makes, with its inode; Hydra's .hydra/ and
train.log are adopted when the job starts). Folders made on the way (outputs/<model>_<data>/) go too when a
failed start leaves them empty. While a run trains it holds an flock on its folder; a second run pointed at the
same folder is refused.
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
from pathlib import Path

from genlab.core import files
from genlab.core.errors import GenlabError, raise_if_stopped
from genlab.core.records import read_metrics

# The folder this `genlab train` made whole (a run folder, or the sweep folder holding its jobs). An environment
# variable, so that jobs a launcher starts in other processes know it too.
OWNED_ENV = "GENLAB_OWNED_FOLDER"
# what a run writes into its folder (Hydra: .hydra/, train.log; genlab: the rest; later commands: the last five)
RUN_ENTRIES = (".hydra", "train.log", "metrics.jsonl", "checkpoints", "samples", "tb", "wandb", "curves.png",
               "resumed_from.txt", "init_from.txt", "metrics.json", "eval", "generated", "reconstructions", "report")
HYDRA_ENTRIES = (".hydra", "train.log", "multirun.yaml")  # what Hydra writes itself (not through genlab/core/files.py)
# user-named folders that existed before this run: path -> the names they held then
_EXISTING: dict[str, frozenset[str]] = {}
_LOCKS: dict[str, int] = {}
_CLAIMED: list[Path] = []  # what claim() made or took in this process
_PARENTS: list[Path] = []  # folders claim() made above a run folder (outputs/, outputs/<model>_<data>/)


def _key(path: Path) -> str:
    return str(Path(path).absolute().resolve())


def _holds_run(folder: Path) -> bool:
    """A run's records, in the folder itself or (a sweep folder) in one of its job folders."""
    return any(any(folder.glob(pattern)) for pattern in
               ("metrics.jsonl", "checkpoints/last.pt", "*/metrics.jsonl", "*/checkpoints/last.pt"))


def check_path(path: str | os.PathLike, key: str = "hydra.run.dir") -> None:
    """A run folder's path must be a usable one: not empty, no newline or other control character."""
    text = str(path)
    if not text.strip():
        raise GenlabError(f"{key} is empty, which would write the run into the current folder: pass a folder, "
                          f"e.g. {key}=outputs/my_run")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise GenlabError(f"{key}={text!r} holds a newline or another control character: pass a folder name "
                          "without them")


def _make_parents(path: Path) -> None:
    """Make the folders above a run folder, remembering which this process made."""
    missing = []
    parent = path.parent
    while not os.path.lexists(parent) and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder)
            _PARENTS.append(folder)
        except FileExistsError:
            pass


def claim(path: str | os.PathLike, timestamped: bool, resume: str | None = None, sweep: bool = False,
          log_name: str = "train.log") -> Path:
    """Make and lock the run (or sweep) folder before Hydra writes into it; remember what genlab owns in it.
    `log_name`: the log file Hydra will write (${hydra.job.name}.log), which a folder of the user's may not hold."""

    key_name = "hydra.sweep.dir" if sweep else "hydra.run.dir"
    check_path(path, key_name)
    path = Path(path)
    try:
        for attempt in range(3):  # a parent another failed start removed meanwhile: make it again
            _make_parents(path)
            try:
                if timestamped:
                    folder = _claim_new(path)
                elif path.is_dir():
                    folder = _claim_existing(path, resume, sweep, log_name)
                else:
                    folder = _claim_new(path, exclusive=True)
                raise_if_stopped()
                return folder
            except FileNotFoundError:
                if attempt == 2:
                    raise
    except OSError as err:
        raise GenlabError(f"cannot make the run folder {path} ({err.strerror or err}); "
                          f"pass {key_name}=SOME/WRITABLE/PATH") from None


def _claim_new(path: Path, exclusive: bool = False) -> Path:
    candidate, n = path, 1
    while True:
        try:
            candidate.mkdir()
            break
        except FileExistsError:  # another run started in the same second
            if exclusive:
                what = "is a link" if path.is_symlink() else "is a file" if path.exists() else "appeared meanwhile"
                raise GenlabError(f"cannot make the run folder {path}: it {what}; pass another folder") from None
            n += 1
            candidate = path.with_name(f"{path.name}_{n}")
    lock(candidate)
    os.environ[OWNED_ENV] = _key(candidate)
    area = files.declare(candidate, replace=True, what="the run folder")
    files.adopt(area, candidate)
    _CLAIMED.append(candidate)
    return candidate


def _claim_existing(path: Path, resume: str | None, sweep: bool, log_name: str = "train.log") -> Path:
    lock(path)  # first, so that what is checked below cannot change under us
    try:
        resuming_here = resume is not None and resume != "auto" and \
            Path(resume).expanduser().resolve().is_relative_to(path.resolve())
        key_name = "hydra.sweep.dir" if sweep else "hydra.run.dir"
        if _holds_run(path) and not resuming_here:
            raise GenlabError(f"{path} already holds a genlab run: continue it with train.resume={path}, or "
                              f"pass a new {key_name}")
        names = frozenset(os.listdir(path))
        if resuming_here:
            _no_links(path, log_name)
            files.declare(path, replace=True, what="the run folder")
        else:
            if sweep and names:
                raise GenlabError(f"{key_name}={path} is not empty: a sweep writes its jobs' folders into it; "
                                  "pass a new or empty folder")
            in_the_way = sorted(names & {*RUN_ENTRIES, log_name})
            if in_the_way:
                raise GenlabError(f"{path} already holds {in_the_way[0]}, which a run writes: genlab does not "
                                  f"replace files it did not make; pass a new {key_name}, or move it away")
            files.declare(path, replace=False, what="your folder",
                          hint="genlab does not replace a file it did not make; pass a new hydra.run.dir")
        _EXISTING[_key(path)] = names
    except BaseException:
        release(path)
        raise
    _CLAIMED.append(path)
    return path


def _no_links(run: Path, log_name: str = "train.log") -> None:
    """A run folder resumed in place: nothing a run writes or appends to may be a link (it would write elsewhere)."""
    for name in (*RUN_ENTRIES, log_name):
        entry = run / name
        if entry.is_symlink():
            raise GenlabError(f"{entry} is a link: genlab does not write through links inside a run folder; "
                              "replace it by the file or folder itself, or resume into a new folder")
        if entry.is_dir():
            for child in entry.iterdir():
                if child.is_symlink():
                    raise GenlabError(f"{child} is a link: genlab does not write through links inside a run folder; "
                                      "replace it by the file itself, or resume into a new folder")


def lock(run_dir: Path) -> None:
    """Hold the run folder for this process until release(); refuse a folder another live run holds. On a
    file system without flock (some NFS mounts) the run goes on unlocked."""
    key = _key(run_dir)
    if key in _LOCKS:
        return
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise GenlabError(f"another genlab run is writing into {run_dir}; wait for it or pass another "
                          "hydra.run.dir") from None
    except OSError:  # ENOLCK, ENOSYS: no locks here
        pass
    _LOCKS[key] = fd


def release(run_dir: Path) -> None:
    fd = _LOCKS.pop(_key(run_dir), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor drops the flock


def owned(run_dir: Path) -> bool:
    """Did this `genlab train` make `run_dir` (itself, or the sweep folder it is in)?"""
    root = os.environ.get(OWNED_ENV)
    if not root:
        return False
    key = _key(run_dir)
    return key == root or key.startswith(root + os.sep)


def adopt(run_dir: Path, sweep_job: bool = False, log_name: str = "train.log") -> None:
    """At a job's start (Hydra has made its folder, .hydra/ and train.log): record what of it this process made,
    so that a failed start removes exactly that. A sweep job's folder is new (its sweep folder was new or
    empty); in a job a launcher started in another process, the folder is declared here."""
    run_dir = Path(run_dir)
    try:
        area = files.area_of(run_dir)
    except GenlabError:
        area = None
    existing = _EXISTING.get(_key(run_dir))
    if area is None or (sweep_job and area.root != files.absolute(run_dir)):
        area = files.declare(run_dir, replace=True, what="the run folder")
        if sweep_job or owned(run_dir):  # a job folder in a sweep folder that was new or empty (claim)
            files.adopt(area, run_dir)
    for name in (".hydra", log_name):
        if existing is None or name not in existing:
            files.adopt(area, run_dir / name)


def trained(run_dir: Path) -> bool:
    """Did the run in `run_dir` save a checkpoint or log a training step? Then its folder stays."""
    if (run_dir / "checkpoints" / "last.pt").is_file():
        return True

    try:
        return any(r.get("step", 0) > 0 for r in read_metrics(run_dir / "metrics.jsonl"))
    except GenlabError:  # a metrics.jsonl genlab cannot read (a link, too large): not ours to remove
        return True


def remove_failed_start(run_dir: Path) -> None:
    """A run that stopped before it saved a checkpoint or logged a step leaves nothing behind that it made:
    the whole folder when genlab made it, else only what this run wrote into the user's folder. Never
    anything else."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or trained(run_dir):
        return
    logging.shutdown()  # close train.log before deleting it
    files.remove_made(run_dir)
    _remove_parents()


def remove_claimed() -> None:
    """After a stop outside any job (Ctrl-C or SIGTERM while Hydra starts, Hydra's own error): the claimed folder
    loses what this process wrote if it holds nothing of a run yet. A sweep folder keeps the jobs that saved
    checkpoints."""
    for folder in _CLAIMED:
        if not folder.is_dir() or trained(folder) or any(trained(job) for job in folder.iterdir()
                                                         if job.is_dir() and not job.is_symlink()):
            continue
        existing = _EXISTING.get(_key(folder))
        if existing is not None:  # Hydra wrote these before any job could adopt them
            area = files.area_of(folder)
            for name in HYDRA_ENTRIES:
                if name not in existing:
                    files.adopt(area, folder / name)
        remove_failed_start(folder)
    _remove_parents()


def _remove_parents() -> None:
    for folder in sorted(_PARENTS, key=lambda p: len(p.parts), reverse=True):
        try:
            os.rmdir(folder)  # only when empty: another run's folder keeps it
        except OSError:
            continue


def is_run_folder(path: Path) -> bool:
    """A folder a run wrote (its metrics.jsonl or its last checkpoint): what `genlab report` and completion take."""
    return (path / "metrics.jsonl").is_file() or (path / "checkpoints" / "last.pt").is_file()


def is_plain_folder(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False
