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
