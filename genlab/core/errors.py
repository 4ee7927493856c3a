"""The exceptions genlab shows to users: a single line saying what is wrong and how to fix it."""

import signal


class GenlabError(Exception):
    """A user-facing error. The CLI prints `genlab: <message>` on stderr and exits with code 2."""

    exit_code = 2


class TrainingStopped(GenlabError):
    """The run trained and then had to stop (a non-finite loss): one line, and its folder stays."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM (what `timeout`, SLURM pre-emption and `kill` send) or SIGHUP (a closed terminal or SSH
    session) stopped genlab."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_received: list[int] = []
_handled: list[int] = []  # the stops that reached a handler of genlab's (the run saved, or its start was undone)


def raise_interrupted(signum, frame):
    """A signal handler: SIGTERM (timeout, SLURM pre-emption, kill) and SIGHUP stop genlab like Ctrl-C does."""
    _received.append(signum)
    if signum == signal.SIGHUP:
        detach_from_terminal()
    raise Interrupted(signum)


def detach_from_terminal() -> None:
    """After SIGHUP the terminal is gone and writing to it fails (EIO): the console goes to /dev/null, so the run
    can still save; train.log keeps every line, the way to continue it included."""
    import os

    for fd in (1, 2):
        try:
            if os.isatty(fd):
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, fd)
                os.close(null)
        except OSError:
            continue


def handled() -> None:
    """The stop received so far has been acted on (by the trainer's save, or by undoing a start)."""
    _handled[:] = list(_received)


def raise_if_stopped() -> None:
    """A stop signal arrived and its Interrupted did not get through: Python drops an exception raised while a
    finaliser or a weakref callback runs (and some libraries catch everything). Raised again here, at the steps
    of a start, so a stop is never lost."""
    if len(_received) > len(_handled):
        raise Interrupted(_received[-1])


def interrupt_exit_code(err: KeyboardInterrupt) -> int:
    """128 + the signal that stopped genlab (a library may re-raise a plain KeyboardInterrupt on the way)."""
    if isinstance(err, Interrupted):
        return err.exit_code
    return 128 + (_received[-1] if _received else signal.SIGINT)
