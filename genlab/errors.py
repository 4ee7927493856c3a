"""The one exception genlab shows to users: a single line saying what is wrong and how to fix it."""


class GenlabError(Exception):
    """A user-facing error. The CLI prints `genlab: <message>` on stderr and exits with code 2."""

    exit_code = 2
