"""Shell completion: `genlab --install-completion` (bash, zsh, fish) through Typer.

Typer completes the subcommands and their options. This module adds what it cannot know:
- `genlab train`: Hydra overrides. `model=<TAB>` lists the models (each with its description where the shell
  shows one), `optim.<TAB>` the keys of the optimiser chosen so far on the line, `train.epochs=<TAB>` the
  current value, `train.resume=<TAB>` run folders, `-<TAB>` the flags genlab takes;
- the RUN argument of sample, eval, report, translate, upscale and reconstruct: run folders (report: multirun
  folders too), found under the folder typed so far.

Bash splits a word at `=` (COMP_WORDBREAKS), so it asks for `model=dc` as the words `model`, `=`, `dc` and
replaces only `dc`; zsh and fish keep the word whole and replace all of it. `train_items` answers each way.
Completion must never fail loudly: any error gives no completions (the shell then completes file names).
"""

from __future__ import annotations

import functools
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from genlab.app.books import names
from genlab.app.compose import LAUNCHER_PLUGINS, SWEEPER_PLUGINS, compose
from genlab.core.paths import config_dir, group_options
from genlab.train.rundir import is_run_folder as _is_run  # what `genlab report` takes for a run

# Hydra's own groups genlab ships presets for (configs/hydra/<group>/); `basic` is Hydra's built-in default
HYDRA_GROUPS = ("hydra/launcher", "hydra/sweeper")
TRAIN_FLAGS = {
    "-m": "a sweep: one job per combination of comma-separated values",
    "--multirun": "the same as -m",
    "--nproc": "one run on N processes (data-parallel)",
    "--cfg": "print the config instead of running: job | hydra | all",
    "--resolve": "with --cfg: resolve interpolations",
    "--info": "Hydra's information: all | config | defaults | defaults-tree | plugins | searchpath",
    "--config-dir": "add a folder of your own configs beside genlab's",
    "--help": "genlab train's help",
    "--hydra-help": "Hydra's flags and config groups",
}
SKIPPED_GROUPS = {"tuned"}  # chosen by the defaults list (model_data), not on the command line
RUN_KEYS = {"train.resume", "train.init_from"}
SEARCH_DEPTH = 3  # how far below a folder run folders are looked for


def _shell() -> str:
    """bash, zsh, fish or powershell: Typer's completion variable says which shell asked."""
    value = os.environ.get("_GENLAB_COMPLETE", "")
    return value.removeprefix("complete_").split("_")[0] if value.startswith("complete_") else ""


@dataclass
class Item:
    """One completion, as Typer's shell classes read it (value, help, type)."""

    value: str
    help: str | None = None
    type: str = "plain"


def _split(text: str) -> list[str]:
    """Words as the shell would split them; with an unfinished quote, split at the spaces."""
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def _bash_words() -> tuple[list[str], int] | None:
    if _shell() != "bash" or "COMP_WORDS" not in os.environ:
        return None
    try:
        return _split(os.environ["COMP_WORDS"]), int(os.environ["COMP_CWORD"])
    except ValueError:
        return None


def split_current(incomplete: str) -> tuple[str | None, str, bool]:
    """(key, value typed so far, bare) for a `key=value` word being completed; key None while it is still a
    key. bare: the shell replaces only the value (bash), so completions are the values alone."""
    words = _bash_words()
    if words is not None:
        cwords, cword = words
        current = cwords[cword] if cword < len(cwords) else ""
        before = cwords[cword - 1] if 0 < cword <= len(cwords) else ""
        if current == "=" and cword >= 2:  # `key=` with the cursor after `=`: bash asks for the word "="
            return cwords[cword - 1], "", True
        if before == "=" and cword >= 3:  # `key=val`
            return cwords[cword - 2], current, True
        return None, incomplete, True
    key, sep, value = incomplete.partition("=")
    if sep:
        return key, value, False
    return None, incomplete, False


def _typed_overrides() -> list[str]:
    """The overrides already on the command line (to compose the config the user is building)."""
    words = _bash_words()
    if words is not None:
        cwords, cword = words
        items, args, i = cwords[1:cword], [], 0
        while i < len(items):  # bash's `key`, `=`, `value` back into `key=value`
            if i + 1 < len(items) and items[i + 1] == "=":
                if i + 2 < len(items):
                    args.append(f"{items[i]}={items[i + 2]}")
                i += 3
            else:
                args.append(items[i])
                i += 1
    else:
        args = _split(os.environ.get("_TYPER_COMPLETE_ARGS", ""))
    return [a for a in args if "=" in a and not a.startswith("-")]


def _group_choices(typed: list[str]) -> list[str]:
    """The group choices typed so far (model=vae, data=...), the ones that name a real option."""

    out = []
    for override in typed:
        key, _, value = override.partition("=")
        if key in _groups() and value in group_options(key):
            out.append(override)
    return out


@functools.lru_cache(maxsize=1)
def _groups() -> dict[str, dict[str, str]]:
    """Group -> {option: description}, genlab's groups and the Hydra groups it has presets for."""

    groups = {p.name: group_options(p.name) for p in sorted(config_dir().iterdir())
              if p.is_dir() and p.name != "hydra" and p.name not in SKIPPED_GROUPS}
    import importlib.util

    def installed(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            return False

    plugins = {"hydra/launcher": {name: module for name, module in LAUNCHER_PLUGINS.items()},
               "hydra/sweeper": {name: module for name, (module, _) in SWEEPER_PLUGINS.items()}}
    for group in HYDRA_GROUPS:
        options = {"basic": "Hydra's default: one job after another"} if group == "hydra/launcher" else \
            {"basic": "Hydra's default: every combination of the swept values"}
        options.update(group_options(group))
        for name, module in plugins[group].items():  # the plugins' own options, where they are installed
            if name not in options and installed(module):
                options[name] = f"Hydra's {name} plugin"
        groups[group] = dict(sorted(options.items()))
    return groups


def _leaves(typed: list[str]) -> dict[str, object]:
    """Every key of the config `genlab train TYPED` composes -> its value (dotted), without hydra.*."""
    from omegaconf import OmegaConf

    cfg = compose(_group_choices(typed))
    flat: dict[str, object] = {}

    def walk(node, prefix):
        for key in node:
            value = node._get_node(key)
            path = f"{prefix}{key}"
            if OmegaConf.is_dict(value):
                flat[path + "."] = None
                walk(value, path + ".")
            else:
                flat[path] = OmegaConf.to_container(OmegaConf.create({"v": value}), resolve=False)["v"] \
                    if not OmegaConf.is_missing(node, key) else "???"

    walk(cfg, "")
    return flat


def _text(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        import json

        return json.dumps(value).replace(" ", "")
    return str(value)


# flags that take a value: what completes it (None: nothing of genlab's, so the shell completes file names)
FLAG_VALUES = {"--cfg": ("job", "hydra", "all"), "-c": ("job", "hydra", "all"),
               "--info": ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath"),
               "-i": ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath"),
               "--config-dir": None, "-cd": None, "--config-name": None, "-cn": None, "--nproc": None,
               "--package": None, "-p": None}


def _previous_word() -> str:
    words = _bash_words()
    if words is not None:
        cwords, cword = words
        return cwords[cword - 1] if 0 < cword <= len(cwords) else ""
    args = _split(os.environ.get("_TYPER_COMPLETE_ARGS", ""))
    typed = os.environ.get("_TYPER_COMPLETE_ARGS", "")
    if args and not typed.endswith(" "):
        args = args[:-1]  # the last word is the one being completed
    return args[-1] if args else ""


def train_items(incomplete: str) -> list[tuple[str, str]]:
    """(completion, help) pairs for the word being typed after `genlab train`."""
    previous = _previous_word()
    if previous in FLAG_VALUES:  # the value of a flag: its choices, or the shell's own file completion
        return [(c, "") for c in FLAG_VALUES[previous] or () if c.startswith(incomplete)]
    items = _train_items(incomplete)
    if _shell() == "zsh":  # zsh puts a space after any word picked from its menu: offer whole overrides there
        items = _whole(items)
    return items


def _whole(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    groups, out = _groups(), []
    leaves = None
    for word, text in items:
        if word.endswith("=") and word[:-1] in groups:
            out += [(word + option, help_) for option, help_ in groups[word[:-1]].items()]
        elif word.endswith("=") and word[:-1] in RUN_KEYS:
            out += [(word, text), (word + "auto", "")] if word[:-1] == "train.resume" else [(word, text)]
        elif word.endswith("="):  # the bare key too: with two words zsh inserts what they share, with no space
            leaves = _leaves(_typed_overrides()) if leaves is None else leaves
            out += [(word, ""), (word + _text(leaves.get(word[:-1])), text)]
        else:
            out.append((word, text))
    return list(dict(out).items())


def _train_items(incomplete: str) -> list[tuple[str, str]]:
    key, value, bare = split_current(incomplete)
    if key is None and value.startswith("-"):
        return [(flag, text) for flag, text in TRAIN_FLAGS.items() if flag.startswith(value)]
    groups = _groups()
    typed = _typed_overrides()
    if key is not None:  # a value
        prefix = "" if bare else f"{key}="
        if key in groups:
            return [(prefix + option, text) for option, text in groups[key].items() if option.startswith(value)]
        if key in RUN_KEYS:
            found = ["auto"] if key == "train.resume" and "auto".startswith(value) else []
            return [(prefix + p, "") for p in found + run_folders(value)]
        leaves = _leaves(typed)
        if key in leaves and key + "." not in leaves:
            current = _text(leaves[key])
            options = ["true", "false"] if isinstance(leaves[key], bool) else [current]
            return [(prefix + o, "the current value" if o == current else "") for o in options if o.startswith(value)]
        return []
    # a key: groups (`model=`), and the config's keys (`train.epochs=`) and nodes (`optim.`), one level at a time
    leaves = _leaves(typed)
    items = [(f"{group}=", "one of: " + ", ".join(options)) for group, options in groups.items()
             if group.startswith(value)]
    items += _below(value, leaves)
    for _ in range(8):  # a lone `key=` or `node.` would get a space after it from the shell: open it instead
        if len(items) != 1 or not items[0][0].endswith(("=", ".")):
            break
        word = items[0][0]
        if word.endswith("="):
            key = word[:-1]
            if key in groups:
                items = [(f"{key}={option}", text) for option, text in groups[key].items()] or items
            else:
                items = [(word, ""), (word + _text(leaves.get(key)), "the current value")]
            break
        items = _below(word, leaves) or items
    return items


def _below(prefix: str, leaves: dict[str, object]) -> list[tuple[str, str]]:
    """The keys (`optim.lr=`) and nodes (`optim.schedule.`) one level below what is typed."""
    out = []
    start = prefix.rpartition(".")[0] + "." if "." in prefix else ""
    for path, current in leaves.items():
        rest = path[len(start):].rstrip(".")
        if not path.startswith(prefix) or path == prefix or "." in rest:
            continue
        out.append((path, "") if path.endswith(".") else (f"{path}=", f"now {_text(current)}"))
    return out


def complete_train(ctx, incomplete: str):
    """The Typer/Click hook of `genlab train` (see TrainCommand in cli.py)."""
    try:
        items = train_items(incomplete)
    except Exception:  # noqa: BLE001  (a broken config on the line: complete nothing rather than fail)
        return []
    return [Item(value, help=_short(text)) for value, text in items]


def _short(text: str, width: int = 60) -> str | None:
    """A help text for one line of the shell's menu (Typer's zsh/fish output must not wrap)."""
    text = " ".join(text.split())
    return None if not text else text if len(text) <= width else text[: width - 3].rstrip() + "..."


# ---- run folders -------------------------------------------------------------------------------------------------
def _is_multirun(path: Path) -> bool:
    """A sweep folder: Hydra's multirun.yaml (basic sweeper) or optimization_results.yaml (Optuna), or jobs."""
    if (path / "multirun.yaml").is_file() or (path / "optimization_results.yaml").is_file():
        return True
    try:
        return any(c.name.isdigit() and _is_run(c) for c in path.iterdir())
    except OSError:
        return False


class _Budget:
    """At most this many folders looked into per TAB: a TAB at / or in a big home stays quick."""

    left = 0


def _holds_runs(path: Path, depth: int, multirun: bool) -> bool:
    if depth < 0 or _Budget.left <= 0:
        return False
    _Budget.left -= 1
    try:
        children = [c for c in path.iterdir() if not c.name.startswith(".") and c.is_dir()]
    except OSError:
        return False
    return any(_is_run(c) or (multirun and _is_multirun(c)) or _holds_runs(c, depth - 1, multirun)
               for c in children)


def run_folders(incomplete: str, multirun: bool = False, budget: int = 400) -> list[str]:
    """Run folders (and, with multirun, sweep folders) that start with what is typed, as typed; folders that
    only hold runs end in `/`, and a lone one is opened for the user (no space after it from the shell). At most
    `budget` folders are looked into below each candidate."""
    typed_dir, _, partial = incomplete.rpartition("/")
    base = typed_dir + "/" if typed_dir or incomplete.startswith("/") else ""
    folder = Path(base or ".").expanduser()
    out = []
    try:
        children = sorted(c for c in folder.iterdir() if c.is_dir())
    except OSError:
        return []
    for child in children:
        if not child.name.startswith(partial) or (child.name.startswith(".") and not partial.startswith(".")):
            continue
        _Budget.left = budget  # each folder its own: a big sibling does not hide the runs beside it
        if _is_run(child) or (multirun and _is_multirun(child)):
            out.append(base + child.name)
            if multirun and _is_multirun(child):
                out.append(base + child.name + "/")  # its jobs, one by one
        elif _holds_runs(child, SEARCH_DEPTH, multirun):
            out.append(base + child.name + "/")
    if len(out) == 1 and out[0].endswith("/"):
        deeper = run_folders(out[0], multirun, budget)
        return deeper or out
    return out


def complete_run(incomplete: str) -> list[str]:
    """Typer autocompletion for a RUN argument."""
    try:
        return run_folders(incomplete)
    except Exception:  # noqa: BLE001
        return []


def complete_run_or_sweep(incomplete: str) -> list[str]:
    """Typer autocompletion for `genlab report`'s arguments: runs and multirun folders."""
    try:
        return run_folders(incomplete, multirun=True)
    except Exception:  # noqa: BLE001
        return []


def complete_book(incomplete: str) -> list[str]:
    """Typer autocompletion for `genlab book`'s NAME: the books' names."""
    return [name for name in names() if name.startswith(incomplete)]
