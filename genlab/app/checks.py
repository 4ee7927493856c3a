"""The command line of `genlab train` checked whole before any folder exists: every composed config (each job of a
sweep), its launcher and sweeper, where its run goes, and the values of every group (train.validate)."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from genlab.app import objective
from genlab.app.compose import (
    LAUNCHER_PLUGINS,
    SWEEPER_PLUGINS,
    CommandLine,
    check_preset_folder,
    check_resolves,
    compose,
    one_line_of,
    own_model_loss,
    parse_command_line,
    safe_config,
    sweep_variants,
    swept_keys,
    with_loss,
)
from genlab.core.checkpoint import load_checkpoint
from genlab.core.config import check_writable
from genlab.core.errors import GenlabError
from genlab.core.registry import DATASETS
from genlab.core.safety import check_config_safety
from genlab.train.validate import validate


def checked_config(overrides: list[str], line: CommandLine, validate_values: bool = True) -> DictConfig:
    """Compose one job's config (Hydra's part included) and check it as a run would: the types of the values
    set, the shared and model keys, and that nothing in it would run code or write outside the run folder."""
    cfg = safe_config(overrides, line)
    if validate_values:
        validate(cfg)
    return cfg


def check_launcher(overrides: list[str]) -> None:
    """hydra/launcher=local|slurm|joblib|submitit_* and hydra/sweeper=optuna: one line naming the extra when the
    plugin is missing."""
    import importlib.util

    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key == "hydra/launcher" and value in LAUNCHER_PLUGINS:
            module, extra, what = LAUNCHER_PLUGINS[value], "launchers", "launcher"
        elif key == "hydra/sweeper" and value in SWEEPER_PLUGINS:
            (module, extra), what = SWEEPER_PLUGINS[value], "sweeper"
        else:
            continue
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            raise GenlabError(f"{key}={value} needs Hydra's {module.split('_')[-2]} {what}, which is not "
                              f"installed: pip install 'genlab[{extra}]'")


def check_sweeper(line: CommandLine, first: DictConfig) -> None:
    """An optimising sweeper (Optuna) needs a number from every job: the objective must be named and scorable,
    and the sweeper must go its way. genlab sets hydra.sweeper.direction where nothing set it (the `tune` preset
    leaves it null) or where it contradicts a direction genlab knows (the model's, the metric's, or
    train.objective_direction: PSNR is never minimised); one set on the command line against a known direction
    is refused. Its sqlite storage fails with SQLAlchemy 2: in-memory is the default."""

    target = str(OmegaConf.select(first, "hydra.sweeper._target_", default="") or "")
    if "optuna" not in target.lower():
        return
    name, direction, known = objective.spec_known(first)
    if name is None:
        raise GenlabError(f"hydra/sweeper=optuna optimises train.objective, and {first.model.name} states none: pass "
                          "train.objective=NAME, a logged scalar or an eval metric (e.g. train.objective=fd_domain)")
    objective.check(first)
    wanted = objective.optuna_direction(direction)
    composed = OmegaConf.select(first, "hydra.sweeper.direction", default=None)
    composed = None if composed is None else str(getattr(composed, "name", composed)).rpartition(".")[2]
    if composed not in (None, "minimize", "maximize"):
        raise GenlabError(f"hydra.sweeper.direction must be minimize or maximize, got {composed!r} (or leave it: "
                          f"genlab sets {wanted} for train.objective {name})")
    given = [o for o in line.overrides if o.lstrip("+").startswith("hydra.sweeper.direction=")]
    if given:
        if known and composed in ("minimize", "maximize") and composed != wanted:
            raise GenlabError(f"{given[-1]} but train.objective {name} is better "
                              f"{'lower' if direction == 'min' else 'higher'}: drop it (genlab sets "
                              f"hydra.sweeper.direction={wanted}), or set train.objective_direction")
        return
    if composed is None or (known and composed != wanted):
        line.overrides.append(f"hydra.sweeper.direction={wanted}")


def _own_model_line(line: CommandLine) -> list[str]:
    """The line's overrides with a loss group for a model YAML of the user's own that trains adversarially and
    composes none (compose.own_model_loss): what Hydra is handed, the same for every job of a sweep."""
    if not line.config_dir:
        return line.overrides
    jobs = sweep_variants(line.overrides) if line.multirun else [line.overrides]
    defaults = [own_model_loss(job, line.config_dir, line.config_name) for job in jobs]
    if len({d is None for d in defaults}) > 1:
        raise GenlabError("this sweep mixes a model YAML of yours that composes no loss group with models that do "
                          "need none added; sweep them apart, or add `defaults: [/loss: NAME]` to your YAML")
    return with_loss(line.overrides, defaults[0]) if defaults[0] else line.overrides


def check_command_line(args: list[str]) -> CommandLine:
    """Everything `genlab train ARGS` can get wrong before a run folder is made, as one GenlabError."""

    line = parse_command_line(args)
    check_launcher(line.overrides)
    if line.informational:  # Hydra prints and exits; what it composes must still be safe to compose
        _check_informational(line)
        return line
    try:
        line.overrides = _own_model_line(line)
        variants = _variants(line)
    except GenlabError:
        raise
    except Exception as err:  # noqa: BLE001  (a third party's error of any type becomes one line)
        raise GenlabError(one_line_of(err)) from None
    for overrides in variants:
        _check_job(overrides, line)
    return line


def _check_informational(line: CommandLine) -> None:
    """A line Hydra only prints from (--cfg, --info): its config composes safely, and resolves where printed so."""
    cfg = compose(line.overrides, line.config_dir, line.config_name, with_hydra=True, multirun=line.multirun)
    check_config_safety(cfg)
    if "--resolve" in line.flags:  # Hydra resolves what it prints: an unset variable is its traceback
        check_resolves(cfg)


def _variants(line: CommandLine) -> list[list[str]]:
    """The override lists to check: the line's own, or one per swept value (the sweeper checked, line.swept set)."""
    variants = sweep_variants(line.overrides) if line.multirun else [line.overrides]
    if line.multirun:  # a sweep preset's hydra.sweeper.params are swept values too
        first = compose(variants[0], line.config_dir, line.config_name, with_hydra=True, multirun=True)
        check_sweeper(line, first)
        params = OmegaConf.select(first, "hydra.sweeper.params") or {}
        given = {o.lstrip("+~").partition("=")[0] for o in line.overrides}
        preset = [f"{key}={value}" for key, value in params.items() if key not in given]
        if preset:
            variants = sweep_variants(line.overrides + preset)
        line.swept = swept_keys(line.overrides) + [key for key in params if key not in given]
    return variants


def _check_job(overrides: list[str], line: CommandLine) -> None:
    """One job's config, its data, the checkpoints it loads and its run folder; the first job's is kept in `line`."""
    cfg = checked_config(overrides, line)
    DATASETS[cfg.data.name].locate(cfg.data)
    resume = cfg.train.resume
    if resume == "auto" and line.multirun:
        raise GenlabError("train.resume=auto picks one earlier run; in a sweep (-m) pass each job its own "
                          "train.resume=RUN_FOLDER")
    for path in (resume if resume not in (None, "auto") else None, cfg.train.get("init_from")):
        if path is not None:
            load_checkpoint(path)  # a folder, a file, and one that loads safely: before any run folder exists
    key = "hydra.sweep.dir" if line.multirun else "hydra.run.dir"
    out = OmegaConf.select(cfg, key)
    check_writable(out)
    if line.config_dir:
        check_preset_folder(cfg, line, key)
    if line.out_dir is None:
        line.first = cfg
        line.out_dir, line.resume = str(out), resume
        line.log_name = f"{OmegaConf.select(cfg, 'hydra.job.name') or 'train'}.log"
        line.timestamped = "${now:" in str(OmegaConf.to_container(cfg.hydra, resolve=False)[key.split(".")[1]]["dir"])
