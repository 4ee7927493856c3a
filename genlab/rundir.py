"""Run folders: claimed before Hydra writes into them, locked while their run lives, and, when a start fails,
cleaned of what that run added and of nothing else.

`genlab train` claims the run folder (or a sweep's folder) before Hydra starts. A time-stamped folder is made
new with an exclusive mkdir, so two runs started in the same second get `<time>` and `<time>_2`. A folder the
user named may already exist: what it holds is recorded, and a failed start removes only what it added. While
a run trains it holds an flock on its folder; a second run pointed at the same folder is refused.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from pathlib import Path

from genlab.errors import GenlabError

# The folder this `genlab train` made whole (a run folder, or the sweep folder holding its jobs). An environment
# variable, so that jobs a launcher starts in other processes know it too.
OWNED_ENV = "GENLAB_OWNED_FOLDER"
# user-named folders that existed before this run: path -> the names they held then
_EXISTING: dict[str, frozenset[str]] = {}
_LOCKS: dict[str, int] = {}
_CLAIMED: list[Path] = []  # what claim() made or took in this process


def _key(path: Path) -> str:
    return str(Path(path).absolute().resolve())


def _holds_run(folder: Path) -> bool:
    """A run's records, in the folder itself or (a sweep folder) in one of its job folders."""
    return any(any(folder.glob(pattern)) for pattern in
               ("metrics.jsonl", "checkpoints/last.pt", "*/metrics.jsonl", "*/checkpoints/last.pt"))


def claim(path: str | os.PathLike, timestamped: bool, resume: str | None = None) -> Path:
    """Make and lock the run (or sweep) folder before Hydra writes into it; remember what genlab owns in it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if timestamped:
            candidate, n = path, 1
            while True:
                try:
                    candidate.mkdir()
                    break
                except FileExistsError:  # another run started in the same second
                    n += 1
                    candidate = path.with_name(f"{path.name}_{n}")
            lock(candidate)
            os.environ[OWNED_ENV] = _key(candidate)
            _CLAIMED.append(candidate)
            return candidate
        if path.is_dir():
            lock(path)  # first, so that what is recorded below cannot change under us
            resuming_here = resume is not None and Path(resume).expanduser().resolve().is_relative_to(path.resolve())
            if _holds_run(path) and not resuming_here:
                release(path)
                raise GenlabError(f"{path} already holds a genlab run: continue it with train.resume={path}, or "
                                  "pass a new hydra.run.dir")
            _EXISTING[_key(path)] = frozenset(os.listdir(path))
            _CLAIMED.append(path)
            return path
        path.mkdir()
        lock(path)
        os.environ[OWNED_ENV] = _key(path)
        _CLAIMED.append(path)
        return path
    except OSError as err:
        raise GenlabError(f"cannot make the run folder {path} ({err.strerror or err}); "
                          "pass hydra.run.dir=SOME/WRITABLE/PATH") from None


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


def trained(run_dir: Path) -> bool:
    """Did the run in `run_dir` save a checkpoint or log a training step? Then its folder stays."""
    if (run_dir / "checkpoints" / "last.pt").is_file():
        return True
    from genlab.tracking import read_metrics

    return any(r.get("step", 0) > 0 for r in read_metrics(run_dir / "metrics.jsonl"))


def remove_failed_start(run_dir: Path) -> None:
    """A run that stopped before it saved a checkpoint or logged a step leaves nothing behind that it made:
    the whole folder when genlab made it, else only the entries this run added to the user's folder. Never
    anything else."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or trained(run_dir):
        return
    logging.shutdown()  # close train.log before deleting it
    existing = _EXISTING.get(_key(run_dir))
    if existing is not None:
        for entry in set(os.listdir(run_dir)) - existing:
            target = run_dir / entry
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
    elif owned(run_dir) or run_dir.name not in _EXISTING.get(_key(run_dir.parent), {run_dir.name}):
        shutil.rmtree(run_dir, ignore_errors=True)  # genlab made it (a sweep job's folder in the user's folder too)


def remove_claimed() -> None:
    """After a stop outside any job (Ctrl-C or SIGTERM while Hydra starts): the claimed folder goes if it holds
    nothing of a run yet. A sweep folder keeps the jobs that saved checkpoints."""
    for folder in _CLAIMED:
        if folder.is_dir() and not trained(folder) and not any(trained(job) for job in folder.iterdir() if job.is_dir()):
            remove_failed_start(folder)


def is_run_folder(path: Path) -> bool:
    """A folder a run wrote (its metrics.jsonl or its last checkpoint): what `genlab report` and completion take."""
    return (path / "metrics.jsonl").is_file() or (path / "checkpoints" / "last.pt").is_file()
