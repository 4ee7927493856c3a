"""Compose configs outside a Hydra run (`genlab config show`, and checking a command line before launching)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from genlab.errors import GenlabError
from genlab.paths import config_dir, group_options

# Hydra flags that print something and exit; the command line is then Hydra's alone to handle.
INFO_FLAGS = {"--cfg", "-c", "--info", "-i", "--hydra-help", "--help", "-h", "--shell-completion", "-sc",
              "--version", "--experimental-rerun"}
# Hydra flags that take a value, and where parse_command_line keeps it.
VALUE_FLAGS = {"--config-dir": "config_dir", "-cd": "config_dir", "--config-name": "config_name",
               "-cn": "config_name", "--config-path": "config_path", "-cp": "config_path", "--package": "",
               "-p": ""}
PLAIN_FLAGS = {"-m", "--multirun", "-r", "--run", "--resolve"}


@dataclass
class CommandLine:
    overrides: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)  # Hydra's flags with their values, in the order given
    multirun: bool = False
    informational: bool = False
    config_dir: str | None = None
    config_name: str = "config"

    def hydra_argv(self) -> list[str]:
        """Flags first, then overrides: Hydra's argparse rejects a flag after the overrides have started."""
        return [*self.flags, *self.overrides]


def parse_command_line(args: list[str]) -> CommandLine:
    line = CommandLine()
    i = 0
    while i < len(args):
        arg = args[i]
        name, has_value, value = arg.partition("=")
        if arg in PLAIN_FLAGS:
            line.flags.append(arg)
            line.multirun |= arg in ("-m", "--multirun")
        elif name in INFO_FLAGS:
            line.flags.append(arg)
            line.informational = True
            if name in ("--cfg", "-c", "--info", "-i", "--shell-completion", "-sc") and not has_value:
                if i + 1 < len(args) and not args[i + 1].startswith("-") and "=" not in args[i + 1]:
                    i += 1
                    line.flags.append(args[i])
        elif name in VALUE_FLAGS:
            if not has_value:
                if i + 1 >= len(args):
                    raise GenlabError(f"{arg} needs a value, e.g. {arg} my_configs")
                i += 1
                value = args[i]
            if VALUE_FLAGS[name] == "config_path":
                raise GenlabError(f"{name} replaces genlab's config tree; use --config-dir DIR to add your own "
                                  "configs beside it")
            if VALUE_FLAGS[name]:
                setattr(line, VALUE_FLAGS[name], value)
            line.flags += [name, value]
        elif arg.startswith("-"):
            raise GenlabError(f"unknown option {arg}: `genlab train --help` lists the options")
        else:
            line.overrides.append(arg)
        i += 1
    return line


def _groups() -> set[str]:
    return {p.name for p in config_dir().iterdir() if p.is_dir() and p.name != "hydra"}


def _check_group_choices(overrides: list[str], extra_dirs: tuple[Path, ...], multirun: bool) -> None:
    """`model=foo` -> one line listing the real options (Hydra's own message spans several lines)."""
    groups = _groups()
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        key = key.split("@")[0]
        if not sep or key not in groups or not value or value == "null":
            continue
        options = group_options(key, extra_dirs)
        if value not in options:
            if "," in value and not multirun:
                raise GenlabError(f"{override} lists several values: add -m to sweep over them "
                                  f"(genlab train -m {override})")
            raise GenlabError(f"unknown {key} '{value}'; choose one of: {', '.join(options)}")


def compose(overrides: list[str], config_dir_extra: str | None = None, config_name: str = "config",
            with_hydra: bool = False, multirun: bool = False) -> DictConfig:
    """Compose the config as `genlab train OVERRIDES` would; any mistake becomes one GenlabError line."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    extra = (Path(config_dir_extra).expanduser().resolve(),) if config_dir_extra else ()
    for folder in extra:
        if not folder.is_dir():
            raise GenlabError(f"--config-dir {folder} is not a folder")
    _check_group_choices(overrides, extra, multirun)
    overrides = list(overrides)
    if extra:
        overrides.append(f"hydra.searchpath=[file://{extra[0]}]")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name="train"):
            return hydra_compose(config_name=config_name, overrides=overrides, return_hydra_config=with_hydra)
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        raise GenlabError(_one_line(err)) from None
    finally:
        GlobalHydra.instance().clear()


def _one_line(err: Exception) -> str:
    text = str(err).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if text.startswith("Could not override") or "is not in struct" in text:
        key = text.split("'")[1] if "'" in text else "?"
        if "is not in struct" in text or "To append" in text:
            suggestion = text.split("use ", 1)[1].split()[0] if "use +" in text else f"+{key}=VALUE"
            return (f"unknown key {key}: check the spelling (`genlab config show` prints every key), "
                    f"or add a new one with {suggestion}")
        return f"could not set {key}: {' '.join(lines[1:]) or text}"
    if text.startswith("Ambiguous value"):
        key = text.split("'")[1] if "'" in text else "KEY"
        return f"{key} lists several values: add -m to sweep over them, or quote a list as {key}=[a,b]"
    if "Could not find" in text:
        return f"{lines[0]}: `genlab list` shows the options"
    return " ".join(lines[:2]) if lines else type(err).__name__


def sweep_variants(overrides: list[str]) -> list[list[str]]:
    """For a multirun, enough single-run override lists to try each swept value once."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    choices_per_override: list[list[str]] = []
    for raw, override in zip(overrides, parsed):
        choices = [raw]
        if override.is_sweep_override():
            prefix = raw.split("=", 1)[0]
            try:
                choices = [f"{prefix}={value}" for value in override.sweep_string_iterator()] or [raw]
            except Exception:  # glob() and interval() need the config or a sampler; Hydra expands them itself
                choices = []
        choices_per_override.append(choices)
    base = [choices[0] for choices in choices_per_override if choices]
    positions = [i for i, choices in enumerate(choices_per_override) if choices]
    variants = [base]
    for slot, i in enumerate(positions):
        for choice in choices_per_override[i][1:]:
            variant = list(base)
            variant[slot] = choice
            variants.append(variant)
    return variants


def _check_types(cfg: DictConfig, defaults: DictConfig, overrides: list[str]) -> None:
    """A value set on the command line must have the type of the default it replaces (ints stay ints)."""
    for override in overrides:
        key, sep, _ = override.partition("=")
        if not sep or key.startswith(("~", "+", "hydra.")) or key in _groups():
            continue
        old = OmegaConf.select(defaults, key, default=None, throw_on_missing=False)
        new = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if old is None or new is None or OmegaConf.is_config(old):
            continue
        if isinstance(old, bool):
            ok = isinstance(new, bool)
            hint = f"{key}=true"
        elif isinstance(old, int):
            ok = isinstance(new, int) and not isinstance(new, bool)
            hint = f"{key}={old}"
        elif isinstance(old, float):
            ok = isinstance(new, (int, float)) and not isinstance(new, bool)
            hint = f"{key}={old}"
        elif isinstance(old, str):
            ok = isinstance(new, str)
            hint = f"{key}={old}"
        else:
            continue
        if not ok:
            kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[type(old)]
            raise GenlabError(f"{key} must be {kind}, got {new!r}: pass e.g. {hint}")


def check_command_line(args: list[str]) -> CommandLine:
    """Everything `genlab train ARGS` can get wrong before a run folder is made, as one GenlabError."""
    from genlab.checkpoint import find_checkpoint
    from genlab.config import check_writable, validate
    from genlab.registry import DATASETS

    line = parse_command_line(args)
    if line.informational:
        return line
    try:
        variants = sweep_variants(line.overrides) if line.multirun else [line.overrides]
        if line.multirun:  # a sweep preset's hydra.sweeper.params are swept values too
            first = compose(variants[0], line.config_dir, line.config_name, with_hydra=True, multirun=True)
            params = OmegaConf.select(first, "hydra.sweeper.params") or {}
            given = {o.lstrip("+~").partition("=")[0] for o in line.overrides}
            preset = [f"{key}={value}" for key, value in params.items() if key not in given]
            if preset:
                variants = sweep_variants(line.overrides + preset)
    except GenlabError:
        raise
    except Exception as err:
        raise GenlabError(_one_line(err)) from None
    group_keys = _groups()
    for overrides in variants:
        cfg = compose(overrides, line.config_dir, line.config_name, with_hydra=True, multirun=line.multirun)
        selections = [o for o in overrides if o.lstrip("+~").partition("=")[0].split("@")[0] in group_keys]
        defaults = compose(selections, line.config_dir, line.config_name)
        _check_types(cfg, defaults, overrides)
        validate(cfg)
        DATASETS[cfg.data.name].locate(cfg.data)
        resume = cfg.train.resume
        if resume == "auto" and line.multirun:
            raise GenlabError("train.resume=auto picks one earlier run; in a sweep (-m) pass each job its own "
                              "train.resume=RUN_FOLDER")
        if resume not in (None, "auto"):
            find_checkpoint(resume)
        out = OmegaConf.select(cfg, "hydra.sweep.dir" if line.multirun else "hydra.run.dir")
        check_writable(out)
    return line
