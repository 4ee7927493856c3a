"""Where the Hydra config tree is: inside the package for a wheel, at the repo root for a checkout."""

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent  # genlab/, above core/


def config_dir() -> Path:
    packaged = _PACKAGE / "configs"  # `pip install .` puts a copy here (see pyproject.toml)
    if packaged.is_dir():
        return packaged
    return _PACKAGE.parent / "configs"  # editable install / source checkout


def config_groups() -> set[str]:
    """The config groups of genlab's config tree (model, data, loss, ..., experiment, sweep)."""
    return {p.name for p in config_dir().iterdir() if p.is_dir() and p.name != "hydra"}


def group_options(group: str, extra_dirs: tuple[Path, ...] = ()) -> dict[str, str]:
    """Option name -> its description: the YAML's leading comment lines (after any `# @package`), joined whole,
    so a description that runs over several lines is not cut mid-sentence."""
    options: dict[str, str] = {}
    for root in (config_dir(), *extra_dirs):
        folder = Path(root) / group
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.yaml")):
            if not path.is_file():  # a FIFO or a folder named .yaml: not an option (and never read: it would block)
                continue
            try:
                with open(path, "rb") as f:
                    head = f.read(8192).decode("utf-8", "replace")
            except OSError:
                continue
            options.setdefault(path.stem, description(head))
    return dict(sorted(options.items()))


def description(text: str) -> str:
    """The leading block of comment lines of a YAML text, as one line."""
    lines = []
    for line in text.splitlines():
        if line.startswith("# @package") and not lines:
            continue
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(part for part in lines if part)


def root_defaults() -> dict[str, object]:
    """The group choices of the root config's defaults list (model: dcgan, logger: tensorboard, experiment:
    None, ...), read from config.yaml without composing it."""
    from omegaconf import OmegaConf

    root = OmegaConf.to_container(OmegaConf.load(config_dir() / "config.yaml"), resolve=False)
    out = {}
    for entry in root.get("defaults", []):
        if isinstance(entry, dict):
            for key, value in entry.items():
                if not str(key).startswith(("override", "optional")):
                    out[str(key)] = value
    return out


def model_defaults(model) -> dict[str, object]:
    """The group choices a model's own YAML composes (an adversarial model's loss: {"loss": "lsgan"}), read
    without composing; {} for a model genlab has no YAML of."""
    from omegaconf import OmegaConf

    path = config_dir() / "model" / f"{model}.yaml"
    if not isinstance(model, str) or model not in group_options("model") or not path.is_file():
        return {}
    own = OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
    out = {}
    for entry in own.get("defaults", []) if isinstance(own, dict) else []:
        if isinstance(entry, dict):
            for key, value in entry.items():
                out[str(key).removeprefix("override ").lstrip("/")] = value
    return out


def cache_dir() -> Path:
    """genlab's cache: GENLAB_CACHE, else $XDG_CACHE_HOME/genlab or ~/.cache/genlab (classifiers, features)."""
    root = os.environ.get("GENLAB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "genlab")
    return Path(root)
