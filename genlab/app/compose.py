"""Compose configs outside a Hydra run (`genlab config show`, and checking a command line before launching)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from genlab.core.config import check_types, did_you_mean
from genlab.core.errors import GenlabError
from genlab.core.paths import config_dir, config_groups, group_options, model_defaults, root_defaults
from genlab.core.safety import check_config_folder, check_config_safety, check_searchpath

# Hydra's flags that genlab supports. Those that print something and exit leave the command line to Hydra.
INFO_FLAGS = {"--cfg", "-c", "--info", "-i", "--hydra-help", "--help", "-h"}
FLAG_CHOICES = {"--cfg": ("job", "hydra", "all"), "-c": ("job", "hydra", "all"),
                "--info": ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath"),
                "-i": ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath")}
# Hydra flags that take a value, and where parse_command_line keeps it.
VALUE_FLAGS = {"--config-dir": "config_dir", "-cd": "config_dir", "--config-name": "config_name",
               "-cn": "config_name", "--package": "", "-p": ""}
PLAIN_FLAGS = {"-m", "--multirun", "-r", "--run", "--resolve"}
# Hydra's flags that genlab refuses, and why.
REFUSED_FLAGS = {
    "--experimental-rerun": "it unpickles the given file, which can run any code in it; continue a run with "
                            "`genlab train train.resume=RUN_FOLDER` instead",
    "--config-path": "it replaces genlab's config tree; use --config-dir DIR to add your own configs beside it",
    "-cp": "it replaces genlab's config tree; use --config-dir DIR to add your own configs beside it",
    "--shell-completion": "its script completes `python app.py`, not `genlab`; install genlab's completion (bash, "
                          "zsh, fish) with `genlab --install-completion`",
    "-sc": "its script completes `python app.py`, not `genlab`; install genlab's completion (bash, zsh, fish) "
           "with `genlab --install-completion`",
    "--version": "use `genlab --version`",
}


@dataclass
class CommandLine:
    """A parsed `genlab train` command line: Hydra's flags apart from the overrides."""

    overrides: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)  # Hydra's flags with their values, in the order given
    multirun: bool = False
    informational: bool = False
    config_dir: str | None = None
    config_name: str = "config"

    first: DictConfig | None = None  # the first job's composed config (check_command_line)
    swept: list[str] = field(default_factory=list)  # the keys a multirun sweeps
    out_dir: str | None = None  # the run (or sweep) folder the first job would get
    timestamped: bool = True  # that folder's pattern has ${now:...}: genlab may add a suffix to make it unique
    resume: str | None = None
    log_name: str = "train.log"  # the log file Hydra writes into the run folder: ${hydra.job.name}.log

    def hydra_argv(self) -> list[str]:
        """Flags first, then overrides: Hydra's argparse rejects a flag after the overrides have started."""
        return [*self.flags, *self.overrides]


LAUNCHED: CommandLine | None = None  # the line `genlab train` handed to Hydra (for the resume hint)


def shorthand(override: str) -> str:
    """The short forms genlab accepts: optim.schedule=cosine is optim.schedule.name=cosine."""
    key, sep, value = override.partition("=")
    if key == "optim.schedule" and sep and value and not value.startswith("{") and value != "null":
        return f"optim.schedule.name={value}"
    return override


def parse_command_line(args: list[str]) -> CommandLine:
    line = CommandLine()
    i = 0
    while i < len(args):
        arg = args[i]
        _check_arg(arg)
        name = arg.partition("=")[0]
        if arg in PLAIN_FLAGS:
            line.flags.append(arg)
            line.multirun |= arg in ("-m", "--multirun")
        elif name in INFO_FLAGS:
            i = _parse_info_flag(args, i, line)
        elif name in VALUE_FLAGS:
            i = _parse_value_flag(args, i, line)
        elif arg.startswith("-"):
            raise GenlabError(f"unknown option {arg}: `genlab train --help` lists the options")
        else:
            line.overrides.append(shorthand(arg))
            if arg.replace(" ", "") in ("hydra.mode=MULTIRUN", "++hydra.mode=MULTIRUN", "+hydra.mode=MULTIRUN"):
                line.multirun = True  # the same as -m: every swept value is checked, the sweeper too
        i += 1
    return line


def _check_arg(arg: str) -> None:
    """Refuse a word with a control character in it, or one of Hydra's flags that genlab does not take."""
    if any(ord(c) < 32 or ord(c) == 127 for c in arg):
        raise GenlabError(f"{arg!r} holds a newline or another control character: write it on one line "
                          "(Hydra's grammar takes none)")
    name = arg.partition("=")[0]
    if name in REFUSED_FLAGS:
        raise GenlabError(f"genlab does not take Hydra's {name}: {REFUSED_FLAGS[name]}")


def _parse_info_flag(args: list[str], i: int, line: CommandLine) -> int:
    """Hydra's flag that prints and exits at args[i], with its value checked; returns the index of its last word."""
    arg = args[i]
    name, has_value, value = arg.partition("=")
    line.informational = True
    if name not in FLAG_CHOICES:
        line.flags.append(arg)
        return i
    if not has_value and i + 1 < len(args) and not args[i + 1].startswith("-") and "=" not in args[i + 1]:
        i += 1
        value, has_value = args[i], True
    if not has_value and name in ("--cfg", "-c"):
        raise GenlabError(f"{name} needs a value: {' | '.join(FLAG_CHOICES[name])}, e.g. {name} job")
    if has_value and value not in FLAG_CHOICES[name]:
        raise GenlabError(f"{name} takes one of {', '.join(FLAG_CHOICES[name])}; got {value!r}")
    line.flags += [name, value] if has_value else [name]
    return i


def _parse_value_flag(args: list[str], i: int, line: CommandLine) -> int:
    """Hydra's flag that takes a value at args[i] (its own word or after =); returns the index of its last word."""
    arg = args[i]
    name, has_value, value = arg.partition("=")
    if not has_value:
        if i + 1 >= len(args):
            raise GenlabError(f"{arg} needs a value, e.g. {arg} my_configs")
        i += 1
        value = args[i]
    if VALUE_FLAGS[name]:
        setattr(line, VALUE_FLAGS[name], value)
    line.flags += [name, value]
    return i


def _groups() -> set[str]:
    return config_groups()


MULTI_GROUPS = ("logger",)  # config groups whose options combine (logger=[tensorboard,wandb])


def _check_group_choices(overrides: list[str], extra_dirs: tuple[Path, ...], multirun: bool) -> None:
    """`model=foo` -> one line listing the real options (Hydra's own message spans several lines)."""
    groups = _groups()
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        key = key.split("@")[0]
        if sep and key in MULTI_GROUPS and value in ("null", ""):
            raise GenlabError(f"{override} chooses no {key}: pick logger=tensorboard, logger=wandb or both, "
                              "logger=[tensorboard,wandb]")
        if not sep or key not in groups or not value or value == "null":
            continue
        options = group_options(key, extra_dirs)
        if value.startswith("[") and value.endswith("]"):  # several options of one group at once: logger=[a,b]
            _check_listed_choices(override, key, value, options)
            continue
        if value not in options:
            _refuse_choice(override, key, value, options, multirun)


def _check_listed_choices(override: str, key: str, value: str, options) -> None:
    """`logger=[a,b]`: a group whose options combine, at least one option, each of them a real one."""
    if key not in MULTI_GROUPS:
        raise GenlabError(f"{override}: {key} takes one option (only {', '.join(MULTI_GROUPS)} combines "
                          f"several); to try each, sweep: genlab train -m {key}={value[1:-1]}")
    if not value[1:-1].strip():
        raise GenlabError(f"{override} chooses no {key}: pick logger=tensorboard, logger=wandb or both, "
                          "logger=[tensorboard,wandb]")
    for item in (v.strip() for v in value[1:-1].split(",") if v.strip()):
        if item not in options:
            raise GenlabError(f"unknown {key} '{item}'{did_you_mean(item, options)}; "
                              f"choose one of: {', '.join(options)}")


def _refuse_choice(override: str, key: str, value: str, options, multirun: bool) -> None:
    """Raise for a choice that is not an option of its group, saying how to list or sweep several values."""
    if "," in value and key in MULTI_GROUPS and not multirun:
        raise GenlabError(f"{override}: to use several {key}s at once, list them: {key}=[{value}] "
                          f"(with -m, {key}={value} would sweep over them instead)")
    if "," in value and not multirun:
        raise GenlabError(f"{override} lists several values: add -m to sweep over them "
                          f"(genlab train -m {override})")
    raise GenlabError(f"unknown {key} '{value}'{did_you_mean(value, options)}; "
                      f"choose one of: {', '.join(options)}")


def compose(overrides: list[str], config_dir_extra: str | None = None, config_name: str = "config",
            with_hydra: bool = False, multirun: bool = False) -> DictConfig:
    """Compose the config as `genlab train OVERRIDES` would; any mistake becomes one GenlabError line."""
    default = own_model_loss(overrides, config_dir_extra, config_name)
    overrides = with_loss(overrides, default) if default else overrides
    return _compose(overrides, config_dir_extra, config_name, with_hydra, multirun)


def own_model_loss(overrides: list[str], config_dir_extra: str | None, config_name: str = "config") -> str | None:
    """A model YAML of the user's own (--config-dir) for a model that trains adversarially, written before the loss
    group moved into genlab's model YAMLs, composes no loss group: its model's default loss (genlab's YAML of the
    model it names), which `with_loss` adds; None for any other line."""
    if not config_dir_extra:
        return None
    try:
        cfg = _compose([o for o in overrides if not _is_loss(o)], config_dir_extra, config_name)
    except GenlabError:
        return None  # the line's own mistake: said by the compose that follows
    return None if "loss" in cfg else model_defaults(OmegaConf.select(cfg, "model.name")).get("loss")


def with_loss(overrides: list[str], default: str) -> list[str]:
    """The overrides with the loss group added: the user's `loss=NAME` as `+loss=NAME`, else `+loss=DEFAULT`."""
    given = [f"+loss={o.lstrip('+~').partition('=')[2]}" for o in overrides if _is_loss(o)]
    return [o for o in overrides if not _is_loss(o)] + (given or [f"+loss={default}"])


def _is_loss(override: str) -> bool:
    return override.lstrip("+~").partition("=")[0] == "loss"


def _compose(overrides: list[str], config_dir_extra: str | None = None, config_name: str = "config",
             with_hydra: bool = False, multirun: bool = False) -> DictConfig:
    import yaml
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    extra = (Path(config_dir_extra).expanduser().resolve(),) if config_dir_extra else ()
    for folder in extra:
        if not folder.is_dir():
            raise GenlabError(f"--config-dir {folder} is not a folder")
        check_config_folder(folder)  # before Hydra reads any of it: links out, alias bombs, searchpath imports
    check_searchpath(overrides)
    _check_group_choices(overrides, extra, multirun)
    overrides = [shorthand(o) for o in overrides]
    if extra:
        overrides.append(f"hydra.searchpath=[file://{extra[0]}]")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name="train"):
            cfg = hydra_compose(config_name=config_name, overrides=overrides, return_hydra_config=with_hydra)
    except (HydraException, OmegaConfBaseException, ValueError, yaml.YAMLError) as err:
        text = str(err)
        if "Cannot find primary config" in text:
            raise GenlabError(f"no root config named '{config_name}' (--config-name): genlab's own is 'config'; "
                              f"yours must be {config_name}.yaml in the --config-dir folder") from None
        if text.startswith("Could not override 'loss'"):
            raise GenlabError(_no_loss_group(overrides)) from None
        message = one_line_of(err)
        if message.startswith("unknown key "):
            key = message.split()[2].rstrip(":")
            known = _leaf_keys(_compose(selections(overrides), config_dir_extra, config_name))
            message = (f"unknown key {key}{did_you_mean(key, known)}: `genlab config show` prints every key")
            logger = key.split(".")[1] if key.startswith("logger.") and key.count(".") >= 1 else None
            chosen = [o.partition("=")[2] for o in overrides if o.partition("=")[0] == "logger"]
            chosen = chosen[-1].strip("[]").replace(" ", "").split(",") if chosen else ["tensorboard"]
            if logger not in chosen and logger in group_options("logger", tuple(Path(d) for d in [config_dir_extra]
                                                                                  if d)):
                message = (f"unknown key {key}: the {logger} logger's settings exist once it is chosen: add "
                           f"logger={logger} (or logger=[tensorboard,{logger}])")
        raise GenlabError(message) from None
    finally:
        GlobalHydra.instance().clear()
    _check_added_keys(cfg, overrides, config_dir_extra, config_name)
    return cfg


def _no_loss_group(overrides: list[str]) -> str:
    """loss=NAME for a model that trains no adversarial loss: its config has no loss group to switch."""
    model = next((o.partition("=")[2] for o in reversed(overrides) if o.partition("=")[0] in ("model", "+model")),
                 root_defaults().get("model"))
    given = next((o for o in overrides if o.lstrip("+~").partition("=")[0].split("@")[0] == "loss"), "loss=...")
    adversarial = [m for m in group_options("model") if "loss" in model_defaults(m)]
    return (f"{given}: model={model} trains no adversarial loss, so its config has no loss group; drop {given} "
            f"(the loss group belongs to {', '.join(adversarial)})")


def _leaf_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    keys = []
    for key in cfg:
        if key == "hydra" and not prefix:
            continue
        node = cfg._get_node(key)
        path = f"{prefix}{key}"
        keys.append(path)
        if isinstance(node, DictConfig):
            keys += _leaf_keys(node, path + ".")
    return keys


def selections(overrides: list[str]) -> list[str]:
    """The group choices among the overrides (model=vae, +experiment=x): what decides which keys exist."""
    groups = _groups()
    return [o for o in overrides if o.lstrip("+~").partition("=")[0].split("@")[0] in groups]


def _check_added_keys(cfg: DictConfig, overrides: list[str], config_dir_extra, config_name) -> None:
    """`+train.foo=1` adds a key that nothing reads: refuse it, naming the nearest real key."""
    added = [o.lstrip("+").partition("=")[0] for o in overrides if o.startswith("+") and "=" in o]
    added = [k for k in added if k.split("@")[0] not in _groups() and not k.startswith("hydra.")]
    if not added:
        return
    known = _leaf_keys(compose(selections(overrides), config_dir_extra, config_name))
    for key in added:
        if key not in known:
            raise GenlabError(f"unknown key {key}{did_you_mean(key, known)}: genlab reads no such key, so adding "
                              "it would change nothing; `genlab config show` prints every key")


def check_preset_folder(cfg: DictConfig, line: CommandLine, key: str) -> None:
    """The run (or sweep) folder is the command line's to name, or genlab's default pattern: a file of a
    --config-dir folder that moves it (to a folder of the user's, say their home) is refused."""
    given = any(o.lstrip("+~").startswith(f"{key}=") for o in line.overrides)
    if given:
        return
    section = key.split(".")[1]  # run | sweep
    mine = OmegaConf.to_container(_default_hydra(line.multirun), resolve=False)[section]["dir"]
    theirs = OmegaConf.to_container(cfg.hydra, resolve=False)[section]["dir"]
    if theirs != mine:
        raise GenlabError(f"{key} is set by your --config-dir files (to {theirs}): genlab takes the run folder from "
                          f"the command line only; pass {key}=... there, or drop it from the preset")


@functools.lru_cache(maxsize=2)
def _default_hydra(multirun: bool) -> DictConfig:
    return compose([], None, "config", with_hydra=True, multirun=multirun).hydra


def check_preset_keys(cfg: DictConfig, overrides: list[str]) -> None:
    """A key that a file of the user's --config-dir adds and genlab's own config for the same model, data and
    loss does not have is read by nothing (a typo such as train.epochz): one line naming it and its file's
    choice, with the nearest real key."""

    names = {group: OmegaConf.select(cfg, f"{group}.name") for group in ("model", "data", "loss")}
    choices = [f"{group}={name}" for group, name in names.items()
               if isinstance(name, str) and name in group_options(group)]
    try:
        reference = compose(choices)
    except GenlabError:
        return
    known = set(_leaf_keys(reference))
    for group in ("optim", "device", "logger"):  # options of these groups are generic: any of their keys
        for option in group_options(group):
            try:
                known |= {k for k in _leaf_keys(compose([f"{group}={option}"])) if k.startswith(f"{group}.")}
            except GenlabError:
                continue
    given = {o.lstrip("+~").partition("=")[0] for o in overrides}
    for key in _leaf_keys(cfg):
        if key in known or key in given or any(key.startswith(k + ".") for k in given):
            continue
        parent = key.rpartition(".")[0]
        if parent and (parent not in known or _is_open(reference, parent)):
            continue  # inside a mapping genlab leaves open (optim.<network>, logger.wandb.tags, ...)
        chosen = [o for o in overrides if o.partition("=")[0].lstrip("+") in ("experiment", "sweep", "model", "data",
                                                                              "loss", "optim", "device")]
        where = f" (set by your --config-dir files{': ' + ' '.join(chosen) if chosen else ''})"
        raise GenlabError(f"unknown key {key}{did_you_mean(key, known)}{where}: genlab reads no such key, so it "
                          "would change nothing; `genlab config show` prints every key")


def _is_open(reference: DictConfig, key: str) -> bool:
    """A mapping of genlab's config whose keys are the user's to name (empty there: additional_parameters: {})."""
    node = OmegaConf.select(reference, key, default=None, throw_on_missing=False)
    return isinstance(node, DictConfig) and len(node) == 0


def one_line_of(err: Exception) -> str:
    text = str(err).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if text.startswith("Could not override") or "is not in struct" in text:
        key = text.split("'")[1] if "'" in text else "?"
        if "is not in struct" in text or "To append" in text:
            return f"unknown key {key}: check the spelling"
        return f"could not set {key}: {' '.join(lines[1:]) or text}"
    if text.startswith("Could not append to config"):
        key = text.split("'")[1] if "'" in text else "KEY"
        return f"{key} already exists: set it without the +, as {key}=VALUE"
    if text.startswith("Multiple values for"):
        group = text.split()[3].rstrip(".") if len(text.split()) > 3 else "GROUP"
        return f"{group} is already chosen: pick another with {group}=NAME (no +)"
    if text.startswith("Ambiguous value"):
        key = text.split("'")[1] if "'" in text else "KEY"
        return f"{key} lists several values: add -m to sweep over them, or quote a list as {key}=[a,b]"
    if "Could not find" in text:
        return f"{lines[0]}: `genlab list` shows the options"
    return " ".join(lines[:2]) if lines else type(err).__name__


def swept_keys(overrides: list[str]) -> list[str]:
    """The keys of the overrides that sweep (a,b / range() / interval() / choice())."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    return [raw.split("=", 1)[0] for raw, override in zip(overrides, parsed) if override.is_sweep_override()]


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
            except Exception:  # noqa: BLE001  (glob() and interval() need the config or a sampler; Hydra expands them itself)
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


# hydra/launcher options and the module each needs (the `launchers` extra installs them)
LAUNCHER_PLUGINS = {"local": "hydra_plugins.hydra_joblib_launcher", "joblib": "hydra_plugins.hydra_joblib_launcher",
                    "slurm": "hydra_plugins.hydra_submitit_launcher",
                    "submitit_local": "hydra_plugins.hydra_submitit_launcher",
                    "submitit_slurm": "hydra_plugins.hydra_submitit_launcher"}


SWEEPER_PLUGINS = {"optuna": ("hydra_plugins.hydra_optuna_sweeper", "optuna")}


# Hydra's own settings genlab reads or Hydra resolves before a run starts
RESOLVED_HYDRA_KEYS = ("hydra.run.dir", "hydra.sweep.dir", "hydra.sweep.subdir", "hydra.job.name",
                       "hydra.output_subdir")


def check_resolves(cfg: DictConfig) -> None:
    """Every interpolation of the config resolves (an unset ${oc.env:NAME}, a key that is not there): one line
    naming the key, before anything reads it."""
    from omegaconf.errors import OmegaConfBaseException

    def reason(err: Exception) -> str:
        text = " ".join(str(err).split("\n")[0].split())
        if "Environment variable" in text and "not found" in text:
            name = text.split("Environment variable")[1].split("'")[1] if "'" in text else "?"
            return f"the environment variable {name} is not set: set it, or write the value itself"
        return text[:200]

    try:
        OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "a value"
        raise GenlabError(f"{key} could not be resolved: {reason(err)}") from None
    if "hydra" in cfg:
        for key in RESOLVED_HYDRA_KEYS:
            try:
                OmegaConf.select(cfg, key, throw_on_missing=False)
            except OmegaConfBaseException as err:
                if "hydra.job.num" in str(err) or "hydra.runtime" in str(err):  # set by Hydra when the job runs
                    continue
                raise GenlabError(f"{key} could not be resolved: {reason(err)}") from None


def safe_config(overrides: list[str], line: CommandLine) -> DictConfig:
    """One job's config (Hydra's part included), checked without loading torch: nothing in it runs code or writes
    outside the run folder, it resolves, the values set have their defaults' types, and a preset of the user's
    adds no key genlab does not read (`genlab config show`; `genlab train` adds train.validate)."""
    cfg = compose(overrides, line.config_dir, line.config_name, with_hydra=True, multirun=line.multirun)
    check_config_safety(cfg)
    check_resolves(cfg)
    defaults = compose(selections(overrides), line.config_dir, line.config_name)
    check_types(cfg, defaults, overrides)
    if line.config_dir:
        check_preset_keys(cfg, overrides)
    return cfg
