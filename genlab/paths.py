"""Where the Hydra config tree is: inside the package for a wheel, at the repo root for a checkout."""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def config_dir() -> Path:
    packaged = _PACKAGE / "configs"  # `pip install .` puts a copy here (see pyproject.toml)
    if packaged.is_dir():
        return packaged
    return _PACKAGE.parent / "configs"  # editable install / source checkout


CONFIG_GROUPS = ("model", "data", "loss", "optim", "device")


def group_options(group: str, extra_dirs: tuple[Path, ...] = ()) -> dict[str, str]:
    """Option name -> its one-line description (the YAML's first comment line)."""
    options: dict[str, str] = {}
    for root in (config_dir(), *extra_dirs):
        folder = Path(root) / group
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.yaml")):
            comments = [line for line in path.read_text().splitlines()[:3]
                        if line.startswith("#") and not line.startswith("# @package")]
            text = comments[0].lstrip("#").strip() if comments else ""
            options.setdefault(path.stem, text)
    return dict(sorted(options.items()))
