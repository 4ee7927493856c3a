"""What several commands share: the device option, the output area of a command, image inputs and outputs."""

from __future__ import annotations

import difflib
from pathlib import Path

from typer._click.exceptions import NoSuchOption  # the Click inside Typer, whose errors main() formats

from genlab.core import files
from genlab.core.config import did_you_mean
from genlab.core.device import for_command
from genlab.core.errors import GenlabError
from genlab.core.files import atomic_write
from genlab.core.registry import MODELS
from genlab.data.folders import IMAGE_SUFFIXES, list_images
from genlab.train.runs import to_pil, write_named_pngs


def device_for(name: str) -> str:
    """--device cpu|cuda|auto -> the device to use, or one line saying why not (core/device.py decides)."""
    return for_command(name)


def output_area(out: Path | None, target, overwrite: bool) -> Path | None:
    """Declare where a command that reads a run writes (genlab/core/files.py). A path the user named may replace an
    existing file only with --overwrite, and one inside the run folder has the run folder as its root, so the
    run folder's links are refused there too. The default path is inside the run folder, which genlab made; a
    checkpoint outside any run folder sits in a folder of the user's, where nothing is replaced."""

    run_dir = files.absolute(target.path)
    made = target.checkpoint.parent.name == "checkpoints"  # <run>/checkpoints/x.pt: a run folder genlab made
    if out is None:
        if made:
            files.declare(run_dir, replace=True, what="the run folder")
        else:
            files.declare(run_dir, replace=False, what="the checkpoint's folder",
                          hint="it is not in a run folder, and genlab does not replace a file beside a loose "
                               "checkpoint: pass -o, or move the checkpoint into a folder of its own")
        return None
    out = out.expanduser()
    absolute = files.absolute(out)
    root = run_dir if run_dir in absolute.parents else absolute.parent
    files.declare(root, replace=overwrite, what="the run folder" if root == run_dir else "the output folder")
    return out


def image_inputs(source: Path, out: Path, overwrite: bool, target) -> list[Path]:
    """The image inputs a translate/upscale command reads, and the checks on OUTPUT that go with them (it may
    replace an existing file only with --overwrite)."""

    source = source.expanduser()
    if source.is_dir():
        inputs = list_images(source)
        if not inputs:
            raise GenlabError(f"no images in {source} ({', '.join(sorted(IMAGE_SUFFIXES))})")
    elif source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES:
        inputs = [source]
    else:
        raise GenlabError(f"{source} is not an image ({', '.join(sorted(IMAGE_SUFFIXES))}) or a folder of images")
    if source.is_file() and out.suffix.lower() != ".png":
        raise GenlabError(f"one image makes one .png: pass OUTPUT as a file name ending in .png, not {out}")
    if source.is_dir() and out.suffix.lower() == ".png":
        raise GenlabError(f"a folder makes a folder: pass OUTPUT as a new folder, not {out}")
    if out.expanduser().resolve() in {f.resolve() for f in inputs} or out.expanduser().resolve() == source.resolve():
        raise GenlabError(f"{out} is an input: write the outputs somewhere else")
    if len({f.stem for f in inputs}) != len(inputs):
        raise GenlabError(f"{source} holds inputs with the same name and different suffixes: rename them first")
    output_area(out, target, overwrite)
    files.check_target(out.expanduser(), folder=source.is_dir())
    return inputs


def write_outputs(source: Path, out: Path, outputs, total: int | None = None) -> int:
    """One image file in: OUTPUT.png written atomically; a folder in: a new folder, all or nothing."""

    if source.expanduser().is_file():
        (_, image), = list(outputs)
        try:
            atomic_write(out.expanduser(), lambda tmp: to_pil(image).save(tmp, format="PNG"))
        except OSError as err:
            raise GenlabError(f"cannot write {out} ({err.strerror or err})") from None
        return 1
    return write_named_pngs(outputs, out.expanduser(), total=total)


TYPE_WORDS = {int: "a whole number", float: "a number", str: "a word"}


def _own_options(ctx) -> list[str]:
    """The command's own long options (--seed, --device, ...)."""
    return [o for p in ctx.command.params for o in getattr(p, "opts", ()) if o.startswith("--")]


def _sampler_settings_of_all() -> set[str]:
    """Every setting name any registered model's sampler declares."""
    return {o.name for m in MODELS.names() for o in getattr(MODELS[m], "sampler_options", ())}


def check_setting_names(ctx) -> None:
    """Before the run is read: a word after a `sample`/`eval` command's options that names no setting of any
    model's sampler is a mistyped option of the command, answered as Click answers one (the settings of the
    run's own model are checked once it is loaded, by use_sampler_settings)."""
    known, own = _sampler_settings_of_all(), _own_options(ctx)
    for word in ctx.args:
        key = word[2:].partition("=")[0]
        if word.startswith("--") and key and key not in known:
            close = difflib.get_close_matches(f"--{key}", own)  # as Click suggests, and a sampler's near misses
            close += difflib.get_close_matches(f"--{key}", [f"--{k}" for k in sorted(known)], cutoff=0.8)
            raise NoSuchOption(f"--{key}", possibilities=close, ctx=ctx)


def use_sampler_settings(ctx, target, command: str) -> dict:
    """The words after a `sample`/`eval` command's own options (ctx.args) as the settings of the run's sampler
    (`Samples.sampler_options`: --NAME VALUE or --NAME=VALUE), checked and handed to `model.use_sampler` before any
    sampling work; one line for anything else. Returns the settings given, typed."""
    model, name = target.model, target.cfg.model.name
    options = {o.name: o for o in getattr(model, "sampler_options", ())}
    own = _own_options(ctx)
    words, settings = list(ctx.args), {}
    while words:
        word = words.pop(0)
        if not word.startswith("--") or len(word) < 3:
            raise GenlabError(f"unexpected argument {word!r}: genlab {command} takes one RUN and options "
                              f"(genlab {command} --help)")
        key, eq, value = word[2:].partition("=")
        if key not in options:
            raise GenlabError(_no_such_option(f"--{key}", name, options, own))
        if not eq:
            if not words:
                raise GenlabError(f"--{key} needs a value: {TYPE_WORDS[options[key].type]}")
            value = words.pop(0)
        if key in settings:
            raise GenlabError(f"--{key} is given twice: give it once")
        try:
            settings[key] = options[key].type(value)
        except ValueError:
            raise GenlabError(f"--{key} takes {TYPE_WORDS[options[key].type]}, got {value!r}") from None
    use = getattr(model, "use_sampler", None)  # a model that only draws (Samples by its own sample()) has none
    if use is not None and settings:
        use(**settings)
    return settings


def _no_such_option(word: str, name: str, options: dict, own: list[str]) -> str:
    known = [f"--{k}" for k in options]
    hint = did_you_mean(word, own + known)
    if known:
        return f"no such option {word}{hint}: a {name} run's sampler takes {', '.join(known)}"
    others = [m for m in MODELS.names() if word[2:] in {o.name for o in getattr(MODELS[m], "sampler_options", ())}]
    where = f" ({word} is a setting of the {', '.join(others)} sampler)" if others else ""
    return f"no such option {word}{hint}: a {name} run's sampler has no settings{where}"
