"""The `genlab train` command: checks the whole command line, then hands it to Hydra (or to `--nproc` ranks)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import torch

from genlab.app import checks, compose, summary
from genlab.app.entry import train as hydra_train
from genlab.core import distributed, ranks
from genlab.core.errors import GenlabError
from genlab.train import launch, rundir


def run(ctx) -> None:
    nproc, args = _take_nproc(list(ctx.args))
    if nproc > 1 and ranks.world_size() > 1:
        raise GenlabError("--nproc starts its own processes; under torchrun leave it out (torchrun's "
                          "--nproc-per-node says how many)")
    distributed.PLANNED = nproc
    line = checks.check_command_line(args)
    if "--hydra-help" in line.flags:
        # Hydra composes this help without genlab's root config: an override of genlab's groups has nothing to
        # change there (and would be Hydra's traceback), and genlab's help template is asked for here
        line.overrides = [o for o in line.overrides if o.startswith("hydra")] + ["hydra/hydra_help=genlab"]
    if (nproc > 1 or ranks.world_size() > 1) and line.multirun:
        raise GenlabError("a data-parallel run is one job on several processes; for a sweep (-m) run each job as "
                          "its own `genlab train --nproc N ...` (or torchrun line)")
    folder = None
    if not line.informational:
        _print_start(line)
        folder = _claim(line)
        if nproc > 1:
            code = launch.spawn(nproc, line.hydra_argv(), folder)
            if code:
                rundir.remove_claimed()
            raise SystemExit(code)
    _run_hydra(line, folder)


def _print_start(line) -> None:
    """The table of changed values, once: by `--nproc` before it starts the ranks (which run with HELD_ENV set),
    else by rank 0."""
    if ranks.rank() == 0 and not os.environ.get(ranks.HELD_ENV) and not summary.quiet() \
            and line.first is not None:
        try:
            summary.print_start(line.first, line, line.swept)
        except Exception as err:  # noqa: BLE001  (a courtesy table: it never stops a run)
            print(f"(genlab could not list the changed values: "
                  f"{(str(err).splitlines() or [type(err).__name__])[0][:120]})")


def _claim(line) -> str:
    """Make the run (or sweep) folder before Hydra does: unique, and genlab knows what in it is its own. The
    line's run or sweep folder then names it."""
    key = "hydra.sweep.dir" if line.multirun else "hydra.run.dir"
    if ranks.world_size() > 1:  # a rank of a data-parallel job (torchrun, or --nproc below)
        distributed.init()
        held = os.environ.get(ranks.HELD_ENV)
        # the folder is decided once: by `--nproc` before it started the ranks, else by rank 0 for all
        folder = held or distributed.agree_on_folder(
            lambda: rundir.claim(line.out_dir, line.timestamped, line.resume, sweep=line.multirun,
                                 log_name=line.log_name))
        if ranks.rank() > 0:  # rank 0 writes .hydra/ and train.log
            line.overrides += ["hydra.output_subdir=null", "hydra/job_logging=genlab_rank"]
    else:
        folder = rundir.claim(line.out_dir, line.timestamped, line.resume, sweep=line.multirun,
                              log_name=line.log_name)
    line.overrides = [o for o in line.overrides if not o.startswith(f"{key}=")] + [f"{key}={_quote(folder)}"]
    return folder


def _run_hydra(line, folder) -> None:
    compose.LAUNCHED = line
    sys.argv = ["genlab train", *line.hydra_argv()]
    try:
        hydra_train()
        if line.multirun and not line.informational and ranks.rank() == 0 and not summary.quiet():
            print("next:\n" + "\n".join(f"  {c}" for c in summary.next_for_sweep(Path(folder))))
    except SystemExit as done:
        if done.code not in (0, None):  # Hydra failed (its own message is printed): leave no empty folder
            rundir.remove_claimed()
        raise
    finally:
        distributed.close()  # a data-parallel rank leaves its process group


def _take_nproc(args: list[str]) -> tuple[int, list[str]]:
    """`--nproc N` (or `--nproc=N`) out of the arguments; 1 where it is not given."""
    out, nproc, i = [], 1, 0
    while i < len(args):
        arg = args[i]
        if arg == "--nproc" or arg.startswith("--nproc="):
            value = arg.partition("=")[2] if "=" in arg else (args[i + 1] if i + 1 < len(args) else "")
            i += 1 if "=" in arg else 2
            if not value.isdigit() or int(value) < 1 or len(value) > 6:
                raise GenlabError(f"--nproc takes a number of processes, e.g. --nproc 2; got {value!r}")
            nproc = int(value)
            most = _process_limit()
            if nproc > most:
                raise GenlabError(f"--nproc {nproc}: at most {most} processes on this machine (two per CPU core, or "
                                  "one per GPU); for more, spread the run over machines with torchrun (docs/scale.md)")
            continue
        out.append(arg)
        i += 1
    return nproc, out


def _process_limit() -> int:
    """The most ranks `--nproc` starts here: two per CPU core (gloo ranks beyond that only wait for each other), or
    one per CUDA GPU where there are more."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return max(2 * (os.cpu_count() or 1), gpus, 1)


def _quote(path) -> str:
    """A path as one quoted Hydra override value: spaces, commas, brackets, quotes and `${` stay literal.
    In a quoted value Hydra halves only the backslashes before a quote (or the closing one)."""
    text = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, str(path))
    text = text.replace("'", "\\'").replace("${", "\\${")
    return f"'{text}'"
