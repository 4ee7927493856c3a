"""`genlab train --nproc N`: N ranks of this machine's Python, started, watched and stopped together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from genlab.core.ranks import HELD_ENV


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn(nproc: int, argv: list[str], folder) -> int:
    """`genlab train --nproc N`: N ranks of `python -m genlab train ARGV` on this machine, rendezvous on a free
    local port, the claimed run folder passed down (this process keeps it locked). The ranks run in a process
    group of their own and this process passes each SIGINT, SIGTERM, SIGHUP and SIGQUIT on to every rank, so
    Ctrl-C stops them after a step and a second Ctrl-C quits at once, as in one process. When one rank fails,
    the others are stopped (a rank blocked in a collective is killed after 20 s). Returns the job's exit code:
    that of the first rank seen failing (a rank that only saw its peer die says 1), else the ranks' own."""
    procs: list[subprocess.Popen] = []
    forwarded: list[int] = []

    def forward(signum, frame):
        forwarded.append(signum)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in PASSED_ON}
    failed = None
    try:
        _start(nproc, argv, folder, procs, forwarded)
        failed = _watch(procs, forwarded, forward)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for p in procs:  # (this process is leaving on an error of its own: no rank stays behind)
            if p.poll() is None:
                p.kill()
                p.wait()
    return _exit_code(procs, failed)


PASSED_ON = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def _start(nproc: int, argv: list[str], folder, procs: list, forwarded: list) -> None:
    port, cores = free_port(), os.cpu_count() or 1
    for r in range(nproc):
        env = dict(os.environ, RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(nproc),
                   LOCAL_WORLD_SIZE=str(nproc), GROUP_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                   **{HELD_ENV: str(folder)})
        env.setdefault("OMP_NUM_THREADS", str(max(1, cores // nproc)))  # the ranks share the cores
        procs.append(subprocess.Popen([sys.executable, "-m", "genlab", "train", *argv], env=env,
                                      start_new_session=True))
        if forwarded:  # a signal came while the ranks were starting
            procs[-1].send_signal(forwarded[-1])


def _watch(procs: list, forwarded: list, forward) -> int | None:
    """Wait for every rank; at the first failure stop the others (killed 20 s later). The failing code, or None."""
    failed, failed_at = None, None
    stopped = {128 + s for s in PASSED_ON}  # what a rank stopped by a passed-on signal exits with
    while any(p.poll() is None for p in procs):
        if failed is None:
            codes = [p.returncode for p in procs if p.returncode not in (None, 0)
                     and not (forwarded and p.returncode in stopped)]
            # (a rank that saw its peer die exits 1 at once: the cause is the other code, where both are in)
            failed = next((c for c in codes if c != 1), codes[0]) if codes else None
            if failed is not None:
                failed_at = time.monotonic()
                forward(signal.SIGTERM, None)
        elif time.monotonic() - failed_at > 20:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        time.sleep(0.1)
    return failed


def _exit_code(procs: list, failed: int | None) -> int:
    for r, p in enumerate(procs):
        if p.returncode < 0:
            print(f"genlab: rank {r} was killed by {signal.Signals(-p.returncode).name}", file=sys.stderr)
    codes = [p.returncode if p.returncode >= 0 else 128 - p.returncode for p in procs]
    if failed is None:
        failed = next((c for c in codes if c not in (0, 1)), next((c for c in codes if c), 0))
    return failed if failed >= 0 else 128 - failed
