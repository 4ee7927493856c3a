"""`genlab`'s entry point: signals, one line for every mistake, exit codes; the commands are in cli.py."""

from __future__ import annotations

import os
import sys

from genlab.app.cli import app
from genlab.core import ranks
from genlab.core.errors import GenlabError, handled, interrupt_exit_code, raise_if_stopped, raise_interrupted
from genlab.train import rundir


def main() -> None:
    import signal

    # SIGTERM (timeout, SLURM pre-emption, kill) and SIGHUP (a closed terminal or SSH session) are a Ctrl-C: a
    # run stops cleanly and saves, a start leaves nothing behind (a SIGHUP that nohup ignores stays ignored)
    signal.signal(signal.SIGTERM, raise_interrupted)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, raise_interrupted)
    sys.unraisablehook = _unraisable
    _check_completion_request()
    try:
        # prog_name: also under `python -m genlab`, completion scripts are for `genlab`. Not standalone: a
        # mistake Typer finds (an unknown command or option, a missing argument) is one line here, not a box
        code = app(prog_name="genlab", standalone_mode=False)
        if isinstance(code, int) and code:  # typer.Exit(code), or Ctrl-C (130) while parsing
            raise SystemExit(code)

        raise_if_stopped()  # a stop dropped on its way (in a finaliser) still ends the command as a stop
    except GenlabError as err:
        if ranks.rank() == 0:  # every rank of a torchrun job meets the same error: one says it
            print(f"genlab: {err}", file=sys.stderr)
        rundir.remove_claimed()
        sys.exit(err.exit_code)
    except KeyboardInterrupt as err:
        handled()
        rundir.remove_claimed()
        sys.exit(interrupt_exit_code(err))
    except SystemExit as done:
        if done.code == 130:  # Typer turns a KeyboardInterrupt (or our SIGTERM) into exit code 130
            rundir.remove_claimed()
            sys.exit(interrupt_exit_code(KeyboardInterrupt()))
        raise
    except Exception as err:
        _exit_on_abort_or_usage_error(err)
        raise


def _exit_on_abort_or_usage_error(err: Exception) -> None:
    """Exit for Click's Abort or a command-line mistake, each as standalone Click would; return for anything else."""
    if type(err).__name__ == "Abort":  # Click's Abort (an EOF at a prompt): what standalone Click prints
        print("Aborted!", file=sys.stderr)
        rundir.remove_claimed()
        sys.exit(1)
    if not _usage_error(err):
        return
    if type(err).__name__ == "NoArgsIsHelpError":  # `genlab`, `genlab config`: their help, exit 2 as before
        app(prog_name="genlab", args=[*sys.argv[1:], "--help"], standalone_mode=False)
        sys.exit(2)
    print(f"genlab: {_usage_line(err)}", file=sys.stderr)
    sys.exit(2)


def _unraisable(info) -> None:
    """A stop signal that lands while Python runs a finaliser is dropped there ("Exception ignored"): say nothing;
    the next step of the command raises it again (errors.raise_if_stopped). Anything else as Python says it."""
    if isinstance(info.exc_value, KeyboardInterrupt):
        return
    sys.__unraisablehook__(info)


def _check_completion_request() -> None:
    """A shell's completion request (Typer's protocol) names the word under the cursor by its index: one that is
    not a number is one line here, not Typer's traceback in the shell."""
    if not os.environ.get("_GENLAB_COMPLETE"):
        return
    for name in ("COMP_CWORD",):
        value = os.environ.get(name)
        if value is not None and not (value.isdigit() and len(value) < 7):
            print(f"genlab: completion: {name} must be the index of a word, got {value[:40]!r}", file=sys.stderr)
            sys.exit(2)


def _usage_error(err: Exception) -> bool:
    """A mistake on the command line as Typer (its Click) reports it: a message and an exit code of 2 (or 1 for
    an Abort, which is no mistake: it propagates)."""
    return callable(getattr(err, "format_message", None)) and getattr(err, "exit_code", None) == 2


def _usage_line(err: Exception) -> str:
    """`No such option: --metric (Possible options: --device, --metrics)` -> one line with where to look."""
    message = " ".join(str(err.format_message()).split())
    ctx = getattr(err, "ctx", None)
    path = getattr(ctx, "command_path", None) or "genlab"
    message = message[0].lower() + message[1:] if message[:1].isupper() and message[1:2].islower() else message
    command = path.removeprefix("genlab").strip()
    return f"{command + ': ' if command else ''}{message.rstrip('.')} (see `{path} --help`)"
