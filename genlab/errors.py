"""The exceptions genlab shows to users: a single line saying what is wrong and how to fix it."""

import signal


class GenlabError(Exception):
    """A user-facing error. The CLI prints `genlab: <message>` on stderr and exits with code 2."""

    exit_code = 2


class TrainingStopped(GenlabError):
    """The run trained and then had to stop (a non-finite loss): one line, and its folder stays."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM (what `timeout`, SLURM pre-emption and `kill` send) stopped genlab."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_received: list[int] = []


def raise_interrupted(signum, frame):
    """A signal handler: SIGTERM (timeout, SLURM pre-emption, kill) stops genlab like Ctrl-C does."""
    _received.append(signum)
    raise Interrupted(signum)


def interrupt_exit_code(err: KeyboardInterrupt) -> int:
    """128 + the signal that stopped genlab (a library may re-raise a plain KeyboardInterrupt on the way)."""
    if isinstance(err, Interrupted):
        return err.exit_code
    return 128 + (_received[-1] if _received else signal.SIGINT)
