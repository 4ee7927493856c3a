"""What `genlab train` says around a run: the values that differ from the defaults at its start, and the next
commands to run at its end (with the run's own path).

"Defaults" are what the chosen groups give by themselves, the tuned file of the model and dataset included: so
the table shows what the command line and any preset (experiment=, sweep=) changed, each beside the value it
replaced.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from genlab.app.compose import compose
from genlab.core.paths import config_groups, model_defaults, root_defaults
from genlab.models.capabilities import Reconstructs, Samples, Translates, Upscales
from genlab.train.loggers import DEFAULT, selected

ROOT_GROUPS = ("model", "data", "loss", "optim", "device")


def _flat(node, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flat(value, path + "."))
        else:
            out[path] = value
    return out


def _text(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def changed_values(cfg: DictConfig, line) -> list[tuple[str, str, str]]:
    """(key, value, default) for every key whose value differs from the defaults of the groups chosen, and
    (group, option, default option) for the groups chosen away from the root config's defaults."""

    choices = OmegaConf.to_container(cfg.hydra.runtime.choices) if "hydra" in cfg else {}
    base_overrides = [f"{g}={choices[g]}" for g in ROOT_GROUPS if choices.get(g)]
    base_overrides += [o for o in line.overrides if o.partition("=")[0] == "logger"]
    base = compose(base_overrides, line.config_dir, line.config_name)

    own = model_defaults(choices.get("model")) or model_defaults(OmegaConf.select(cfg, "model.name"))
    root_choices = {**root_defaults(), **own}  # its loss: the model's own (genlab's YAML of the model it names)
    rows = []
    for group in (*ROOT_GROUPS, "experiment", "sweep"):
        if group in config_groups() and choices.get(group) != root_choices.get(group):
            rows.append((group, _text(choices.get(group)), _text(root_choices.get(group))))

    if list(selected(cfg)) != list(DEFAULT):
        rows.append(("logger", ",".join(selected(cfg)), ",".join(DEFAULT)))
    keep = [k for k in cfg if k != "hydra"]
    now = _flat(OmegaConf.to_container(OmegaConf.masked_copy(cfg, keep), resolve=True))
    before = _flat(OmegaConf.to_container(base, resolve=True))
    for key, value in now.items():
        if key not in before or before[key] != value:
            if key.endswith(".name") and key.split(".")[0] in ROOT_GROUPS:
                continue  # the group's row says it
            rows.append((key, _text(value), _text(before.get(key, "(new)")) if key in before else "(new)"))
    return rows


def print_start(cfg: DictConfig, line, swept: list[str]) -> None:
    """The table of changed values on stdout, beside the run's log (a terminal gets rich's table, a log plain
    lines)."""
    rows = changed_values(cfg, line)
    if not rows and not swept:
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=not sys.stdout.isatty())
    title = "set on this command line (the first job's values)" if swept else "set on this command line"
    if sys.stdout.isatty():
        table = Table(title=title, title_justify="left")
        for column in ("key", "value", "default"):
            table.add_column(column, style="bold" if column == "key" else None, overflow="fold")
        for key, value, default in rows:
            table.add_row(key, value, default)
        console.print(table)
    else:
        console.print(f"{title}:")
        width = max((len(k) for k, _, _ in rows), default=0)
        for key, value, default in rows:
            console.print(f"  {key:<{width}}  {value}  (default {default})")
    if swept:
        console.print(f"swept: {', '.join(swept)}")


def _shown(path: Path) -> str:
    """A path as short as it can be typed from here: relative where it is below the current folder."""
    path = Path(path).resolve()
    try:
        relative = path.relative_to(Path.cwd().resolve())
        return str(relative) if str(relative) != "." else "."
    except ValueError:
        return str(path)


def _aligned(pairs: list[tuple[str, str]]) -> list[str]:
    width = max(len(command) for command, _ in pairs)
    return [f"{command:<{width}}  # {why}" if why else command for command, why in pairs]


def next_commands(run_dir: Path, model, kind: str, loggers: list[str], data: list[str] = ()) -> list[str]:
    """The commands a user runs next on this run, with its path (and, for eval, where its data is: `--data`, as
    genlab reads no data place from a checkpoint)."""
    import shlex

    run = shlex.quote(_shown(run_dir))
    pairs = []
    if kind == "superres" or isinstance(model, Upscales):  # what it can do (models/capabilities.py)
        pairs.append((f"genlab upscale {run} IMAGE_OR_FOLDER OUTPUT", "up-scale images"))
    elif isinstance(model, Translates):
        pairs.append((f"genlab translate {run} IMAGE_OR_FOLDER OUTPUT", "translate images"))
    elif isinstance(model, Samples):
        pairs.append((f"genlab sample {run} -n 64", "new samples"))
    if isinstance(model, Reconstructs):
        pairs.append((f"genlab reconstruct {run} IMAGES", "inputs beside their reconstructions"))
    where = f" --data {shlex.quote(' '.join(data))}" if data else ""
    pairs.append((f"genlab eval {run}{where}", "metrics with their protocol, into metrics.json"))
    pairs.append((f"genlab report {run}", "the report's figures and index.html"))
    if "tensorboard" in loggers:
        pairs.append((f"tensorboard --logdir {shlex.quote(_shown(Path(run_dir) / 'tb'))}", "the curves, live"))
    if "wandb" in loggers:
        pairs.append((f"wandb sync {shlex.quote(_shown(Path(run_dir) / 'wandb'))}/offline-run-*",
                      "upload the offline wandb run"))
    return _aligned(pairs)


def next_for_sweep(sweep_dir: Path) -> list[str]:
    import shlex

    folder = shlex.quote(_shown(sweep_dir))
    pairs = [(f"genlab report {folder}", "the jobs' parameters against their final numbers")]
    if (Path(sweep_dir) / "optimization_results.yaml").is_file():
        pairs.append((f"cat {folder}/optimization_results.yaml", "the sweeper's best parameters and value"))
    return _aligned(pairs)


def quiet() -> bool:
    """GENLAB_QUIET=1: no start table and no next commands (scripts that parse the output)."""
    return os.environ.get("GENLAB_QUIET", "0") not in ("", "0")
