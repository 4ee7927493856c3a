"""What a composed config may ask of Python: genlab builds objects only from its own registries.

A config folder passed with `--config-dir`, a preset in it, or an override on the command line is data. Hydra
would turn some of that data into code: `_target_` (instantiate any callable), `hydra.callbacks`, logging
handlers built by `logging.config.dictConfig` (its `()` key calls any factory, its `class` key any class),
`hydra.job.env_set` (environment for child processes, e.g. LD_PRELOAD). `check_config_safety` refuses all of
that with one line, except Hydra's own launcher and sweeper plugins and the standard logging classes, and it
keeps every file Hydra writes inside the run folder.
"""

from __future__ import annotations

import functools
import pickle
import re
from pathlib import PurePath
from typing import Any, ClassVar

from omegaconf import DictConfig, ListConfig, OmegaConf

from genlab.core import files
from genlab.core.errors import GenlabError
from genlab.core.paths import config_dir

# where `_target_` may stand, and what it may name there: Hydra's own plugins (basic, joblib, submitit, optuna...)
_TARGET_PLACES = ("hydra.launcher", "hydra.sweeper")
_TARGET_MODULES = ("hydra._internal.core_plugins.", "hydra_plugins.", "optuna.samplers.", "optuna.pruners.")
# logging.config.dictConfig builds these from names; nothing else is imported or called
_LOG_CLASSES = {"logging.StreamHandler", "logging.FileHandler", "logging.NullHandler",
                "logging.handlers.RotatingFileHandler", "logging.handlers.TimedRotatingFileHandler",
                "logging.handlers.WatchedFileHandler", "logging.Formatter", "rich.logging.RichHandler"}
_LOG_FACTORIES = {"colorlog.ColoredFormatter"}  # hydra-colorlog's `()` formatter
_LOG_STREAMS = {"ext://sys.stdout", "ext://sys.stderr"}
_RUN_DIR = "${hydra.runtime.output_dir}/"
# under hydra.*, an interpolation may read Hydra's own keys or the time, never build a node from a string
_INTERPOLATION = re.compile(r"\$\{([^}]*)\}")
_SAFE_INTERPOLATIONS = ("hydra.", "hydra:", "now:")
_NODE_BUILDERS = ("oc.create", "oc.decode")
# the parts of Hydra's config that it instantiates or hands to logging.config.dictConfig
_HYDRA_BUILDS = ("hydra.launcher", "hydra.sweeper", "hydra.callbacks", "hydra.job_logging", "hydra.hydra_logging",
                 "hydra.job.env_set")


def _walk(node: Any, path: str):
    """(dotted path, key, raw value) for every entry, without resolving interpolations."""
    if isinstance(node, DictConfig):
        for key in node:
            child = node._get_node(key)
            where = f"{path}.{key}" if path else str(key)
            raw = child._value() if not OmegaConf.is_config(child) else child
            yield where, str(key), raw
            if OmegaConf.is_config(child):
                yield from _walk(child, where)
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            child = node._get_node(i)
            where = f"{path}[{i}]"
            if OmegaConf.is_config(child):
                yield from _walk(child, where)


def _raw(node: DictConfig, dotted: str) -> Any:
    """The value at a dotted path as written (interpolations unresolved), or None."""
    for key in dotted.split("."):
        if not isinstance(node, DictConfig) or key not in node:
            return None
        node = node._get_node(key)
    return node if OmegaConf.is_config(node) else node._value()


def _inside(path: str, places: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p + ".") for p in places)


def _plain_relative(value: str) -> bool:
    parts = PurePath(value).parts
    return bool(parts) and not PurePath(value).is_absolute() and ".." not in parts and "${" not in value


# what a `_target_` at each place must build: Hydra's Launcher or Sweeper, and under a sweeper (its sampler,
# pruner and their parts) an Optuna sampler or pruner
_TARGET_BASES = {"hydra.launcher._target_": (("hydra.plugins.launcher", "Launcher"),),
                 "hydra.sweeper._target_": (("hydra.plugins.sweeper", "Sweeper"),)}
_NESTED_BASES = (("optuna.samplers", "BaseSampler"), ("optuna.pruners", "BasePruner"))


@functools.lru_cache(maxsize=64)
def _plugin_class(name: str, path: str) -> bool:
    """`module.Class`: the module under one of _TARGET_MODULES, the class defined there and a subclass of what
    that place builds (a Launcher, a Sweeper, an Optuna sampler or pruner). A prefix alone is not enough: Hydra's
    locate follows attributes (`hydra_plugins.x._impl.logging.os.system` is os.system), and other classes of
    Hydra's internals import modules by name."""
    import importlib
    import inspect

    module_name, _, attribute = name.rpartition(".")
    if not module_name or not attribute.isidentifier() or not (module_name + ".").startswith(_TARGET_MODULES):
        return False
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:  # a path through attributes, or a plugin that is not installed
        if err.name and module_name.startswith(err.name):
            return False
        raise GenlabError(f"{path}={name}: importing {module_name} failed ({err})") from None
    except Exception as err:  # noqa: BLE001  (a broken install of a real plugin: say so, not "forbidden")
        raise GenlabError(f"{path}={name}: importing {module_name} failed "
                          f"({(str(err).splitlines() or [type(err).__name__])[0][:160]})") from None
    obj = getattr(module, attribute, None)
    if not inspect.isclass(obj) or not (obj.__module__ + ".").startswith(_TARGET_MODULES):
        return False
    for base_module, base_name in _TARGET_BASES.get(path, _NESTED_BASES):
        try:
            base = getattr(importlib.import_module(base_module), base_name)
        except (ImportError, AttributeError):
            continue
        if issubclass(obj, base):
            return True
    return False


# a Hydra search path entry genlab lets through: a folder of YAML files (pkg:// imports a module by name, so its
# top-level code runs; structured:// imports one too)
_SEARCHPATH_SCHEMES = ("file://",)
_JOB_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
MAX_CONFIG_FILES = 5000


def check_searchpath(overrides: list[str]) -> None:
    """`hydra.searchpath=[pkg://module]` makes Hydra import that module while it composes, before any check of
    the composed config could run; Hydra's grammar also unescapes `pkg\\://`, so no reading of the words is safe:
    a search path on the command line is refused whole (--config-dir adds a folder of configs)."""
    for override in overrides:
        key = override.lstrip("+~").partition("=")[0].strip()
        if key == "hydra.searchpath":
            raise GenlabError(f"{override}: genlab takes no hydra.searchpath on the command line (a pkg:// entry "
                              "makes Hydra import a module, which runs its code); add a folder of configs with "
                              "--config-dir DIR")
        if key.startswith("hydra.runtime"):
            raise GenlabError(f"{override}: hydra.runtime.* is what Hydra records of the run it starts; it is not "
                              "set from the command line")


def _check_searchpath_entries(value, where: str) -> None:
    """Search path entries written in a YAML file (no escapes there): each must be a file:// folder."""
    entries = value if isinstance(value, list) else [value]
    for entry in entries:
        entry = str(entry).strip()
        if not entry.startswith(_SEARCHPATH_SCHEMES):
            raise GenlabError(f"{where}: {entry}: a search path of another kind than file:// makes Hydra import "
                              "a module by name, which runs its code; add a folder of configs with --config-dir DIR")


def check_config_folder(folder) -> None:
    """A --config-dir folder is read by Hydra file by file as it composes: before that, every YAML file Hydra can
    read there (the root configs, and the files of the config groups, below linked folders too) must be a regular
    file of the folder (a link out of it, to a system file or another folder, is refused), of ordinary size,
    valid YAML with safe tags, not nested deeper than 100, no alias bomb, and no search path that imports a
    module. Other folders (a project's own YAML) are not read."""
    import os
    from pathlib import Path

    root = Path(folder).resolve()
    groups = {p.name for p in config_dir().iterdir() if p.is_dir()}
    count, seen = 0, set()

    def inside(path: Path) -> Path:
        real = path.resolve()
        if not real.is_relative_to(root):
            raise GenlabError(f"{path} is a link to {real}, outside --config-dir {folder}: genlab reads configs only "
                              "from the folder itself; copy them in")
        return real

    def scan(directory: Path, depth: int) -> None:
        nonlocal count
        real = inside(directory)
        if real in seen or depth > 8:
            return
        seen.add(real)
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            path = Path(entry.path)
            if entry.is_dir():
                if depth == 0 and entry.name not in groups:
                    continue  # not a config group: Hydra never reads it
                scan(path, depth + 1)
                continue
            if not entry.name.endswith((".yaml", ".yml")):
                continue
            count += 1
            if count > MAX_CONFIG_FILES:
                raise GenlabError(f"--config-dir {folder} holds more than {MAX_CONFIG_FILES:,} YAML files: point it "
                                  "at your folder of configs")
            _check_config_file(path, inside(path))

    scan(Path(folder), 0)


def _check_config_file(path, real) -> None:
    """One YAML file of a --config-dir folder (`real`: where its link leads): text, safe YAML, a file:// searchpath."""
    data = files.read_bytes(real, files.MAX_YAML, what="config file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise GenlabError(f"{path} is not a text file: a config must be YAML") from None
    files.check_yaml_text(text, path)
    loaded = files._safe_load(text) if "searchpath" in text else None
    if isinstance(loaded, dict) and isinstance(loaded.get("hydra"), dict) and "searchpath" in loaded["hydra"]:
        _check_searchpath_entries(loaded["hydra"]["searchpath"], str(path))


def check_config_safety(cfg: DictConfig) -> None:
    """Raise GenlabError for anything in the composed config (hydra part included) that would run code or
    write outside the run folder."""
    for path, key, value in _walk(cfg, ""):
        if isinstance(value, str) and "${" in value:
            _check_interpolation(path, value)
        if key == "_target_":
            if not _inside(path, _TARGET_PLACES):
                raise GenlabError(
                    f"{path}={value}: genlab builds objects only from its own registries and does not "
                    "instantiate _target_ from configs; remove it (pick a model with model=NAME)")
            if not (isinstance(value, str) and _plugin_class(value, path)):
                raise GenlabError(f"{path}={value}: a launcher or sweeper (or an Optuna sampler or pruner) must be "
                                  f"a class defined in a Hydra plugin (hydra_plugins.*) or in optuna, not {value!r}")
    hydra = cfg.get("hydra") if isinstance(cfg, DictConfig) and "hydra" in cfg else None
    if hydra is None:
        return
    _check_hydra_code(hydra)
    _check_hydra_places(hydra)


def _check_hydra_code(hydra: DictConfig) -> None:
    """Hydra settings that would run code or change the environment: callbacks, search-space functions,
    study storage, env_set, the job name (it names the log file), searchpath."""
    callbacks = hydra.get("callbacks")
    if callbacks:
        raise GenlabError(f"hydra.callbacks ({', '.join(map(str, callbacks))}): genlab runs no Hydra callbacks "
                          "from configs; remove them")
    custom = _raw(hydra, "sweeper.custom_search_space")
    if custom is not None:
        raise GenlabError(f"hydra.sweeper.custom_search_space={custom}: it names a Python function for the sweeper "
                          "to import and call; genlab runs no code named in configs: give the search space as "
                          "hydra.sweeper.params (e.g. 'optim.lr=tag(log,interval(1e-5,1e-3))')")
    storage = _raw(hydra, "sweeper.storage")
    if storage is not None:
        raise GenlabError(f"hydra.sweeper.storage={storage}: a study database is written outside the sweep folder "
                          "(and optuna's sqlite storage fails with SQLAlchemy 2); leave it null: the study is in "
                          "memory and the best trial is written to the sweep folder's optimization_results.yaml")
    env = OmegaConf.select(hydra, "job.env_set")
    if env:
        raise GenlabError(f"hydra.job.env_set ({', '.join(map(str, env))}): genlab sets no environment variables "
                          "from configs; set them in your shell before `genlab train`")
    job_name = _raw(hydra, "job.name")
    if job_name is not None and not (isinstance(job_name, str) and _JOB_NAME.match(job_name) and ".." not in job_name):
        raise GenlabError(f"hydra.job.name={job_name}: it names the run's log file, so it must be a plain name "
                          "(letters, digits, _ . -), e.g. train")
    searchpath = _raw(hydra, "searchpath")
    if searchpath is not None:
        _check_searchpath_entries(OmegaConf.to_container(searchpath) if OmegaConf.is_config(searchpath)
                                  else searchpath, "hydra.searchpath")


def _check_hydra_places(hydra: DictConfig) -> None:
    """Hydra settings that name folders: the launchers', the record's, the sweep's jobs', the log handlers'."""
    for key, base in (("launcher.submitit_folder", "${hydra.sweep.dir}/"), ("launcher.temp_folder", None)):
        value = _raw(hydra, key)
        if value is None:
            continue
        rest = str(value)[len(base):] if base and str(value).startswith(base) else None
        if rest is None or not _plain_relative(rest.replace("%j", "job").replace("%A", "a").replace("%a", "a")):
            raise GenlabError(f"hydra.{key}={value}: the launcher writes files there, which must be inside the sweep "
                              f"folder" + (f", e.g. {base}.submitit/%j" if base else "; leave it null"))
    subdir = _raw(hydra, "output_subdir")
    if subdir is not None and subdir != ".hydra":
        raise GenlabError(f"hydra.output_subdir={subdir}: Hydra's record of a run is its .hydra folder (or null for "
                          "none); genlab knows no other name, so it could write over a folder of yours")
    sweep_subdir = _raw(hydra, "sweep.subdir")
    if isinstance(sweep_subdir, str) and not _plain_relative(sweep_subdir.replace("${hydra.job.num}", "0")
                                                             .replace("${hydra.job.id}", "0")):
        raise GenlabError(f"hydra.sweep.subdir={sweep_subdir} must be a folder name inside the sweep folder, "
                          "e.g. ${hydra.job.num}")
    for section in ("job_logging", "hydra_logging"):
        logging_cfg = hydra.get(section)
        if logging_cfg is not None:
            _check_logging(logging_cfg, f"hydra.{section}")


def _check_interpolation(path: str, value: str) -> None:
    """`${oc.create:{...}}` would hide a whole node (a `_target_`, a logging class) from this check, and under
    hydra.* an interpolation of a task key could bring one in: refuse both."""
    for inner in _INTERPOLATION.findall(value):
        inner = inner.strip()
        if inner.startswith(_NODE_BUILDERS):
            raise GenlabError(f"{path}={value}: genlab does not build config nodes from strings "
                              f"({inner.split(':')[0]}); write the values out in YAML")
        if _inside(path, _HYDRA_BUILDS) and not inner.startswith(_SAFE_INTERPOLATIONS):
            raise GenlabError(f"{path}={value}: Hydra's plugin and logging settings may interpolate only hydra.* "
                              "keys and now:, "
                              f"not ${{{inner}}}")


LOG_FILE = _RUN_DIR + "${hydra.job.name}.log"  # the one file a logging config may write: the run's own log
_FILE_HANDLER_KEYS = {"class", "formatter", "filename", "level", "encoding", "delay", "errors", "filters"}


def _check_logging(node: DictConfig, where: str) -> None:
    for path, key, value in _walk(node, where):
        if key == "()":
            if value not in _LOG_FACTORIES:
                raise GenlabError(f"{path}={value}: a logging config may not call factories; use class: "
                                  "logging.FileHandler or logging.StreamHandler")
        elif key == "class":
            if value not in _LOG_CLASSES:
                raise GenlabError(f"{path}={value}: logging handlers must be standard ones "
                                  f"({', '.join(sorted(_LOG_CLASSES))})")
        elif isinstance(value, str) and value.startswith("ext://") and value not in _LOG_STREAMS:
            raise GenlabError(f"{path}={value}: a logging config may name only ext://sys.stdout or ext://sys.stderr")
        elif key == "filename" and ".handlers." in path:
            # one name, appended to: a file the run folder's claim knows (rundir), never a user's (${hydra.job.name}
            # is a plain name: check_config_safety), never truncated (mode) or rotated into other names
            _check_log_file(node, where, path, value)


def _check_log_file(node: DictConfig, where: str, path: str, value) -> None:
    """A handler's filename is the run's own log, written by a plain appending logging.FileHandler."""
    if value != LOG_FILE:
        raise GenlabError(f"{path}={value}: a log file must be the run's own, {LOG_FILE} (name it with "
                          "hydra.job.name)")
    handler = path.rpartition(".")[0]
    settings = _raw(node, handler[len(where) + 1:]) if handler.startswith(where + ".") else None
    if isinstance(settings, DictConfig):
        extra = sorted(set(map(str, settings.keys())) - _FILE_HANDLER_KEYS)
        if extra or _raw(settings, "class") != "logging.FileHandler":
            what = f"{handler}.{extra[0]}" if extra else f"{handler}.class={_raw(settings, 'class')}"
            raise GenlabError(f"{what}: the run's log file is written by a plain logging.FileHandler that "
                              "appends (no mode, no rotation)")


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds only what data files really hold: dicts, lists, strings, bytes, numbers and
    numpy arrays. Any other global (os.system, builtins.eval, ...) is refused before it is looked up."""

    ALLOWED: ClassVar[set] = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # protocol 5
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3's protocol-2 pickles store bytes
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a data file")
        if module.startswith("numpy.core"):
            import numpy

            if hasattr(numpy, "_core"):  # numpy 2 moved numpy.core to numpy._core
                module = module.replace("numpy.core", "numpy._core", 1)
        return super().find_class(module, name)


def safe_pickle_load(f, encoding: str = "latin1"):
    return RestrictedUnpickler(f, encoding=encoding).load()
