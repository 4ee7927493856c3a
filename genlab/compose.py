"""Compose configs outside a Hydra run (`genlab config show`, and checking a command line before launching)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from genlab.errors import GenlabError
from genlab.paths import CONFIG_GROUPS, config_dir, group_options

# Hydra flags that print something and exit; the command line is then Hydra's alone to handle.
INFO_FLAGS = {"--cfg", "-c", "--info", "-i", "--hydra-help", "--help", "-h", "--shell-completion", "-sc",
              "--version", "--experimental-rerun"}
VALUE_FLAGS = {"--config-dir": "config_dir", "-cd": "config_dir", "--config-name": "config_name",
               "-cn": "config_name", "--config-path": "config_path", "-cp": "config_path", "--package": None,
               "-p": None}


@dataclass
class CommandLine:
    overrides: list[str] = field(default_factory=list)
    multirun: bool = False
    informational: bool = False
    config_dir: str | None = None
    config_name: str = "config"


def parse_command_line(args: list[str]) -> CommandLine:
    line = CommandLine()
    i = 0
    while i < len(args):
        arg = args[i]
        name, _, value = arg.partition("=")
        if arg in ("-m", "--multirun"):
            line.multirun = True
        elif name in INFO_FLAGS:
            line.informational = True
        elif name in VALUE_FLAGS and arg.startswith("-"):
            if not value:
                i += 1
                value = args[i] if i < len(args) else ""
            if VALUE_FLAGS[name]:
                setattr(line, VALUE_FLAGS[name], value)
        elif arg == "--resolve":
            pass
        elif arg.startswith("-"):
            raise GenlabError(f"unknown option {arg}: `genlab train --help` lists the options")
        else:
            line.overrides.append(arg)
        i += 1
    return line


def _check_group_choices(overrides: list[str], extra_dirs: tuple[Path, ...]) -> None:
    """`model=foo` -> one line listing the real options (Hydra's own message spans several lines)."""
    groups = set(CONFIG_GROUPS) | {p.name for p in config_dir().iterdir() if p.is_dir() and p.name != "hydra"}
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        key = key.split("@")[0]
        if not sep or key not in groups or not value:
            continue
        options = group_options(key, extra_dirs)
        for choice in value.split(","):  # a multirun sweep lists several
            choice = choice.strip()
            if choice and choice not in options and not choice.startswith(("choice(", "range(", "glob(")):
                raise GenlabError(f"unknown {key} '{choice}'; choose one of: {', '.join(options)}")


def compose(overrides: list[str], config_dir_extra: str | None = None, config_name: str = "config",
            with_hydra: bool = False) -> DictConfig:
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
    _check_group_choices(overrides, extra)
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
    if "Could not find" in text:
        return f"{lines[0]}: `genlab list` shows the options"
    return " ".join(lines[:2])


def sweep_variants(overrides: list[str]) -> list[list[str]]:
    """For a multirun, enough single-run override lists to try each swept value once."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    values: list[list[str]] = []
    for override in parsed:
        key = override.get_key_element()
        if override.is_sweep_override():
            try:
                choices = [f"{key}={v}" for v in override.sweep_string_iterator()]
            except Exception:  # glob() and friends need the config to expand; Hydra checks them itself
                choices = []
        else:
            choices = [f"{key}={override.get_value_element_as_str()}"]
        values.append(choices)
    base = [v[0] for v in values if v]
    variants = [base]
    for i, choices in enumerate(values):
        for choice in choices[1:]:
            variant = list(base)
            variant[i] = choice
            variants.append(variant)
    return variants


def check_command_line(args: list[str]) -> CommandLine:
    """Everything `genlab train ARGS` can get wrong before a run folder is made, as one GenlabError."""
    from genlab.config import check_writable, validate
    from genlab.registry import DATASETS

    line = parse_command_line(args)
    if line.informational:
        return line
    try:
        variants = sweep_variants(line.overrides) if line.multirun else [line.overrides]
    except Exception as err:
        raise GenlabError(_one_line(err)) from None
    for overrides in variants:
        cfg = compose(overrides, line.config_dir, line.config_name, with_hydra=True)
        validate(cfg)
        DATASETS[cfg.data.name].locate(cfg.data)
        out = OmegaConf.select(cfg, "hydra.sweep.dir" if line.multirun else "hydra.run.dir")
        check_writable(out)
    return line
