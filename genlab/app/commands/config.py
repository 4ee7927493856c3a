"""`genlab config show`: the composed, checked configuration."""

from __future__ import annotations

import sys

from genlab.app.compose import parse_command_line, safe_config
from genlab.core.errors import GenlabError


def run(ctx) -> None:
    from omegaconf import OmegaConf
    from rich.console import Console
    from rich.syntax import Syntax

    line = parse_command_line(list(ctx.args))
    # the types and the safety `genlab train` checks; not its ranges, the GPU or the data (so a user can look
    # at `data=image_folder` to learn that it needs data.root)
    cfg = safe_config(line.overrides, line)
    cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    try:
        text = OmegaConf.to_yaml(cfg, resolve=True)
    except Exception as err:  # noqa: BLE001  (an unresolvable interpolation, e.g. a missing environment variable)
        raise GenlabError(f"the config does not resolve: {str(err).splitlines()[0]}") from None
    if sys.stdout.isatty():
        Console().print(Syntax(text, "yaml", theme="ansi_dark"))
    else:
        print(text, end="")
