"""The `genlab` command. Every subcommand is thin: it parses, checks, and hands over."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from genlab.errors import GenlabError

app = typer.Typer(
    name="genlab",
    help="Train, sweep and report deep generative models from one line of Hydra overrides.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Look at the composed configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.command(context_settings=PASS_THROUGH)
def train(ctx: typer.Context) -> None:
    """Train a model. Everything after `train` goes to Hydra: overrides, `-m` for sweeps, `--cfg job`.

    Examples:

    * `genlab train` : DCGAN on scikit-learn's digits, a few minutes on a laptop CPU

    * `genlab train model=vae model.latent_dim=2 train.epochs=40`

    * `genlab train model=dcgan data=celeba train.batch_size=128 device=cuda`

    * `genlab train -m optim.lr=1e-4,2e-4 train.epochs=5` : a sweep, one job folder per value

    * `genlab train train.resume=outputs/dcgan_digits/2026-01-01_12-00-00 train.epochs=60` : continue a run

    Runs go to `outputs/<model>_<data>/<time>/` (sweeps: `outputs/multirun/<time>/<job>/`).
    `genlab list` shows every option; `genlab config show ...` the resolved config;
    `genlab train --hydra-help` Hydra's own flags.
    """
    from genlab.compose import check_command_line

    line = check_command_line(list(ctx.args))
    from genlab.entry import train as hydra_train

    sys.argv = ["genlab train", *line.hydra_argv()]
    hydra_train()


@app.command("list")
def list_options(group: Optional[str] = typer.Argument(None, help="Only this config group (model, data, ...).")) -> None:
    """Show the options of every config group with a one-line description."""
    from rich.console import Console
    from rich.table import Table

    from genlab.paths import config_dir, group_options

    groups = sorted(p.name for p in config_dir().iterdir() if p.is_dir() and p.name != "hydra")
    if group is not None and group not in groups:
        raise GenlabError(f"unknown config group '{group}'; choose one of: {', '.join(groups)}")
    defaults = _defaults()
    table = Table(title="genlab config groups (* = default)", show_lines=False)
    table.add_column("group", style="bold cyan")
    table.add_column("option", style="bold")
    table.add_column("description")
    for name in [group] if group else groups:
        for i, (option, text) in enumerate(group_options(name).items()):
            mark = " *" if defaults.get(name) == option else ""
            table.add_row(name if i == 0 else "", option + mark, text)
        table.add_section()
    Console().print(table)
    print("Pick one with GROUP=OPTION, e.g. `genlab train model=vae data=fashion_mnist`; "
          "set any key with KEY=VALUE, e.g. `train.epochs=5`.")


def _defaults() -> dict[str, str]:
    from omegaconf import OmegaConf

    from genlab.paths import config_dir

    root = OmegaConf.to_container(OmegaConf.load(config_dir() / "config.yaml"), resolve=False)
    out = {}
    for entry in root.get("defaults", []):
        if isinstance(entry, dict):
            for key, value in entry.items():
                if not str(key).startswith(("override", "optional")):
                    out[str(key)] = value
    return out


@config_app.command("show", context_settings=PASS_THROUGH)
def config_show(ctx: typer.Context) -> None:
    """Print the resolved config that `genlab train OVERRIDES` would run, e.g. `genlab config show model=vae`."""
    from omegaconf import OmegaConf
    from rich.console import Console
    from rich.syntax import Syntax

    from genlab.compose import compose, parse_command_line

    line = parse_command_line(list(ctx.args))
    cfg = compose(line.overrides, line.config_dir, line.config_name)
    try:
        text = OmegaConf.to_yaml(cfg, resolve=True)
    except Exception as err:  # an unresolvable interpolation, e.g. a missing environment variable
        raise GenlabError(f"the config does not resolve: {str(err).splitlines()[0]}") from None
    if sys.stdout.isatty():
        Console().print(Syntax(text, "yaml", theme="ansi_dark"))
    else:
        print(text, end="")


@app.callback(invoke_without_command=True)
def _root(version: bool = typer.Option(False, "--version", help="Print genlab's version and exit.")) -> None:
    if version:
        from genlab import __version__

        print(f"genlab {__version__}")
        raise typer.Exit()


def main() -> None:
    try:
        app()
    except GenlabError as err:
        print(f"genlab: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
