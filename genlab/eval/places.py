"""Where a run's data is: the command line (`--data`, `--ood-data`) and genlab's defaults, never a checkpoint."""

from __future__ import annotations

from genlab.core.config import check_int, check_types, did_you_mean
from genlab.core.errors import GenlabError
from genlab.core.metrics import MetricUnavailable
from genlab.core.paths import config_dir, group_options
from genlab.core.registry import DATASETS
from genlab.data.base import check_normal_classes

# data.* keys that name a place on disk (a folder, a dataset folder under the root, a cache)
PLACE_KEYS = ("root", "folders", "train", "test", "dataset", "benchmark_root", "cache_dir")


# of those, the ones that name a folder under data.root: a checkpoint's plain relative name stays below the root the
# user (or genlab's default) gives, so it is kept; an absolute path or one that climbs out is not
UNDER_ROOT = ("train", "test", "dataset")


# data.* keys that make genlab write: off when a run's data is read back
WRITE_KEYS = {"download": False, "cache": False}


def parse_data_settings(text: str, flag: str, named: bool = False) -> list[str]:
    """`--data 'data.root=PATH ...'` (or `--ood-data 'NAME data.KEY=VALUE ...'`) -> its words, checked: one line
    for an empty value, unbalanced quotes or a word that is not data.KEY=VALUE."""
    import shlex

    try:
        words = shlex.split(text)
    except ValueError as err:
        raise GenlabError(f"{flag} {text!r}: {err}; quote a path with spaces as 'data.root=\"my folder\"'") from None
    if named and (not words or words[0].startswith("data.") or "=" in words[0]):
        raise GenlabError(f"{flag} takes a data option and data.KEY=VALUE settings, e.g. {flag} fashion_mnist "
                          f"or {flag} 'image_folder data.root=PATH'; got {text!r}")
    rest = words[1:] if named else words
    if not named and not rest:
        raise GenlabError(f"{flag} is empty: pass data.KEY=VALUE settings, e.g. {flag} 'data.root=PATH'")
    bad = [w for w in rest if not w.startswith("data.") or "=" not in w or w.startswith("data.name=")]
    if bad:
        what = "a data option and data.KEY=VALUE settings" if named else "data.KEY=VALUE settings"
        raise GenlabError(f"{flag} takes {what}, got {bad[0]!r}: e.g. {flag} "
                          f"'{words[0] + ' ' if named else ''}data.root=PATH'")
    return words


def data_config(name: str, settings: list[str], flag: str):
    """genlab's data option `name` (its YAML, read without composing: this also runs inside a training job) with
    data.KEY=VALUE settings from the command line, each of the type of the default it replaces and checked as
    `genlab train` checks data.*: one line for a mistake."""
    from omegaconf import OmegaConf

    options = group_options("data")
    if name not in options:
        raise GenlabError(f"{flag}: unknown data option {name!r}{did_you_mean(name, options)}; choose one of: "
                          f"{', '.join(options)}")
    defaults = OmegaConf.create({"data": OmegaConf.load(config_dir() / "data" / f"{name}.yaml")})
    for setting in settings:
        key = setting.partition("=")[0]
        if key.count(".") != 1 or key.split(".")[1] not in set(defaults.data.keys()):
            keys = [f"data.{k}" for k in defaults.data]
            raise GenlabError(f"{flag}: data={name} has no key {key}{did_you_mean(key, keys)}")
    try:
        cfg = OmegaConf.merge(defaults, OmegaConf.from_dotlist(settings))
    except Exception as err:  # noqa: BLE001  (OmegaConf's grammar errors)
        raise GenlabError(f"{flag}: {' '.join(str(err).split())[:160]}") from None
    try:
        check_types(cfg, defaults, settings)
        data = cfg.data
        if "size" in data:
            check_int(cfg, "data.size", minimum=8)
        check_int(cfg, "data.limit", minimum=1, optional=True)
        if "num_workers" in data:
            check_int(cfg, "data.num_workers", minimum=0)
        check_normal_classes(cfg, DATASETS[data.name])
        if hasattr(DATASETS[data.name], "check_config"):
            DATASETS[data.name].check_config(cfg)
    except GenlabError as err:
        raise GenlabError(f"{flag}: {err}") from None
    return cfg.data


def _below_root(value) -> bool:
    """None, or a plain relative folder name that stays below data.root."""
    from pathlib import PurePath

    if value is None:
        return True
    if not isinstance(value, str) or not value or "${" in value:
        return False
    path = PurePath(value)
    return not path.is_absolute() and ".." not in path.parts and not value.startswith("~")


def place_settings(cfg) -> list[str]:
    """The data.KEY=VALUE settings (places on disk) where a run's own config differs from genlab's defaults:
    what `genlab eval RUN --data '...'` needs to find the run's data (the end of a run prints them; a sweep's
    objective passes its own). The cache folder is not among them: eval builds no cache."""
    from omegaconf import OmegaConf

    name = cfg.data.name
    if name not in group_options("data"):
        return []
    try:
        reference = data_config(name, [], "data")
    except GenlabError:
        return []
    out = []
    keys = set(reference.keys())
    for key in PLACE_KEYS:
        if key == "cache_dir" or key not in cfg.data or key not in keys:
            continue
        raw, default_raw = cfg.data._get_node(key)._value(), reference._get_node(key)._value()
        if isinstance(raw, str) and raw == default_raw and "${" in raw:
            continue  # the same interpolation as the default (benchmark_root: ${data.root})
        value = OmegaConf.select(cfg, f"data.{key}")
        default = None if OmegaConf.is_missing(reference, key) else OmegaConf.select(
            OmegaConf.create({"data": reference}), f"data.{key}")
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        if key in UNDER_ROOT and _below_root(value):
            continue  # kept from the run itself
        if value != default and value is not None:
            out.append(f"data.{key}={_setting_value(value)}")
    return out


def _setting_value(value) -> str:
    """A value as it is typed after data.KEY=: a list as [a,b], an item quoted where YAML needs it."""
    import json

    def item(v) -> str:
        text = str(v)
        return json.dumps(text) if any(c in text for c in " ,[]{}'\":#") else text

    return "[" + ",".join(item(v) for v in value) + "]" if isinstance(value, list) else item(value)


def run_data_config(cfg, settings: list[str]):
    """A run's data.* with the places (PLACE_KEYS) of genlab's defaults or of `--data`, and nothing that writes."""
    from omegaconf import OmegaConf

    name = cfg.data.name
    given = {s.partition("=")[0][len("data."):]: s.partition("=")[2] for s in settings}
    if name not in group_options("data"):  # a dataset registered by code (a test's): its config as it trained
        data = OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=True))
        _switch_off_writes(data)
        return data
    reference = data_config(name, settings, "--data")
    data = OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=True))
    whole = OmegaConf.create({"data": reference})
    keys = set(reference.keys())  # (`in` says False for a mandatory ??? value)
    for key in PLACE_KEYS:
        if key in data and key not in keys:
            del data[key]
        if key not in keys:
            continue
        if key in UNDER_ROOT and key not in given and _below_root(cfg.data.get(key)):
            continue  # the run's own folder name under the root (DIV2K_train_HR, maps, train)
        if OmegaConf.is_missing(reference, key):
            raise _missing_place(cfg, key)
        data[key] = OmegaConf.select(whole, f"data.{key}")
    for key in given:  # the user's own settings win
        data[key] = OmegaConf.select(whole, f"data.{key}")
    _switch_off_writes(data)
    if "num_workers" in data and (not isinstance(data.num_workers, int) or not 0 <= data.num_workers <= 64):
        data.num_workers = 0
    return data


def _switch_off_writes(data) -> None:
    """Set each key of WRITE_KEYS that the data config has to the value that writes nothing."""
    for key, value in WRITE_KEYS.items():
        if key in data:
            data[key] = value


def _missing_place(cfg, key: str) -> MetricUnavailable:
    """The error for a place genlab's defaults leave mandatory (???), with a --data hint from the run's value."""
    was = cfg.data.get(key)
    hint = f"data.{key}={was}" if was is not None and not isinstance(was, (list, dict)) else f"data.{key}=PATH"
    return MetricUnavailable(f"the run's data.{key} is not taken from its checkpoint (a checkpoint decides no "
                             f"read or write): pass --data '{hint}'")
