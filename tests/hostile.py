"""Hostile run folders for the trust tests: tiny trained runs of each command's kind, ways to damage or craft each
file a command reads, a canary folder that every link points at, and `genlab` run in this process.

The crafted inputs are the ones a hostile user would try (docs/reliability.md lists them with their answers):
links out of the run folder, files that are not what their name says, checkpoints whose fields have the wrong
type, huge lines and bombs. tests/test_trust.py and tests/test_properties.py use them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

DCGAN = ["model.ngf=8", "model.ndf=8", "data.limit=64", "train.batch_size=32", "train.steps=4", "train.n_samples=4",
         "train.progress=none", "train.log_every=1", "train.keep_every=0"]
VAE = ["model=vae", "model.latent_dim=2", "data.limit=64", "train.batch_size=32", "train.steps=4",
       "train.n_samples=4", "train.progress=none", "train.log_every=1", "train.keep_every=0"]
PIX2PIX = ["model=pix2pix", "data=paired", "data.dataset=pairs", "data.size=16", "data.load_size=18",
           "model.ngf=4", "model.ndf=4", "model.d_layers=1", "train.batch_size=4", "train.steps=2",
           "train.n_samples=2", "train.progress=none", "train.keep_every=0"]
SRRESNET = ["model=srresnet", "model.n_blocks=1", "model.width=4", "data=sr_folder", "data.train=hr",
            "data.test=null", "data.size=16", "data.repeat=2", "train.batch_size=2", "train.steps=2",
            "train.n_samples=2", "train.progress=none", "train.keep_every=0", "eval.tile=8"]


@dataclass
class Ran:
    returncode: int | None
    stdout: str
    stderr: str
    escaped: BaseException | None = None  # an exception that got out of main(): a traceback for a user


def run_here(args, cwd) -> Ran:
    """`genlab ARGS` in this process: the same main(), its exit code and its output. Everything main() changes
    for the process (signal handlers, the folders it may write, log levels, the current folder) is put back."""
    from genlab.app import main as cli
    from genlab.core import errors, files
    from genlab.train import rundir

    out, err = io.StringIO(), io.StringIO()
    saved_argv, saved_cwd = sys.argv, os.getcwd()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    levels = {name: logging.getLogger(name).level for name in ("genlab", "")}
    root_handlers = list(logging.getLogger().handlers)  # a `train` in this process configures Hydra's logging
    areas = list(files._AREAS)
    sys.argv = ["genlab", *map(str, args)]
    os.chdir(cwd)
    code, escaped = None, None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main()
                code = 0
            except SystemExit as done:
                code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except Exception as exc:  # noqa: BLE001  (what a user would see as a traceback)
        escaped = exc
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        for handler in logging.getLogger().handlers:
            if handler not in root_handlers:
                handler.close()
        logging.getLogger().handlers[:] = root_handlers
        os.environ.pop("GENLAB_OWNED_FOLDER", None)
        files._AREAS[:] = areas
        from hydra.core.global_hydra import GlobalHydra

        GlobalHydra.instance().clear()  # a `train` run in this process leaves Hydra set up
        rundir._CLAIMED.clear()
        rundir._PARENTS.clear()
        rundir._EXISTING.clear()
        errors._handled[:] = list(errors._received)
    return Ran(code, out.getvalue(), err.getvalue(), escaped)


def one_line_or_success(ran: Ran, what) -> None:
    """The promise: success, or exit 2 with one `genlab:` line; never a traceback."""
    assert ran.escaped is None, (what, repr(ran.escaped), ran.stderr[-2000:])
    assert "Traceback" not in ran.stdout + ran.stderr, (what, ran.stderr[-3000:])
    if ran.returncode != 0:
        lines = [line for line in ran.stderr.splitlines() if line.strip()]
        assert ran.returncode == 2 and len(lines) == 1 and lines[0].startswith("genlab: "), \
            (what, ran.returncode, ran.stderr[-3000:])


# ---- trained runs -------------------------------------------------------------------------------------------

def _pattern_image(path: Path, size, seed: int, mode="RGB") -> None:
    rng = np.random.default_rng(seed)
    h, w = size
    base = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3)).astype(np.uint8)
    array = np.kron(base, np.ones((4, 4, 1), dtype=np.uint8))[:h, :w]
    Image.fromarray(array).convert(mode).save(path)


def make_data(root: Path) -> Path:
    """Tiny paired (A/ B/) and super-resolution (hr/) folders under root, and a few input images."""
    for side in ("A", "B"):
        for split in ("train", "val"):
            (root / "pairs" / side / split).mkdir(parents=True, exist_ok=True)
    for i in range(8):
        split = "train" if i < 6 else "val"
        _pattern_image(root / "pairs" / "A" / split / f"{i}.png", (20, 20), i)
        _pattern_image(root / "pairs" / "B" / split / f"{i}.png", (20, 20), 100 + i)
    (root / "hr").mkdir(parents=True, exist_ok=True)
    for i in range(3):
        _pattern_image(root / "hr" / f"{i}.png", (24, 28), 200 + i)
    (root / "inputs").mkdir(parents=True, exist_ok=True)
    for i in range(2):
        _pattern_image(root / "inputs" / f"in{i}.png", (12, 14), 300 + i)
    return root


def train_runs(root: Path) -> dict[str, Path]:
    """A tiny run of each kind the commands read, trained in this process, and a sweep folder of two jobs."""
    from genlab.app.compose import compose
    from genlab.app.entry import run_training

    data = make_data(root / "data")
    old = os.environ.get("GENLAB_DATA")
    os.environ["GENLAB_DATA"] = str(data)
    runs = {}
    try:
        for name, overrides in (("dcgan", DCGAN), ("vae", VAE), ("pix2pix", PIX2PIX), ("srresnet", SRRESNET)):
            runs[name] = root / name
            run_training(compose(list(overrides)), runs[name])
        sweep = root / "sweep"
        for job, lr in enumerate(("1e-4", "2e-4")):
            run_training(compose([*DCGAN, f"optim.lr={lr}"]), sweep / str(job))
            (sweep / str(job) / ".hydra").mkdir(parents=True, exist_ok=True)
            (sweep / str(job) / ".hydra" / "overrides.yaml").write_text(f"- optim.lr={lr}\n")
        runs["sweep"] = sweep
    finally:
        if old is None:
            os.environ.pop("GENLAB_DATA", None)
        else:
            os.environ["GENLAB_DATA"] = old
    runs["data"] = data
    return runs


# ---- the canary: what every link points at, which must stay as it was ----------------------------------------

def make_canary(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("months of work\n")
    (folder / "metrics.jsonl").write_text('{"step": 1, "secret": 42}\n')
    (folder / "config.yaml").write_text("model:\n  name: dcgan\n")
    _pattern_image(folder / "photo.png", (16, 16), 7)
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub" / "index.html").write_text("<p>my page</p>\n")
    return folder


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry below `folder`: its kind, content digest and modification time."""
    out = {}
    for path in sorted(Path(folder).rglob("*")):
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else ""
        out[str(path.relative_to(folder))] = (st.st_mode, digest, st.st_mtime_ns)
    return out


# ---- ways to damage or craft a run folder's files ---------------------------------------------------------

def _replace(path: Path, data: bytes | None = None, link_to: Path | None = None, folder: bool = False) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if link_to is not None:
        path.symlink_to(link_to)
    elif folder:
        path.mkdir()
    else:
        path.write_bytes(data or b"")


def _truncate(path: Path, size: int) -> None:
    _replace(path, path.read_bytes()[:size])


def _craft_checkpoint(run: Path, change) -> None:
    path = run / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    change(state)
    path.unlink()
    torch.save(state, path)


def _set(keys: str, value):
    def change(state):
        node = state
        *parents, last = keys.split(".")
        for key in parents:
            node = node[key]
        node[last] = value

    return change


def _delete(key: str):
    return lambda state: state.pop(key, None)


BOMB_PNG: bytes | None = None


def bomb_png() -> bytes:
    """A 20,000 x 20,000 PNG of about 50 kB (made once)."""
    global BOMB_PNG
    if BOMB_PNG is None:
        buffer = io.BytesIO()
        Image.new("1", (20000, 20000)).save(buffer, format="PNG")
        BOMB_PNG = buffer.getvalue()
    return BOMB_PNG


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8))


def mutations(canary: Path) -> dict:
    """name -> fn(run folder): one hostile change to a copy of a run folder."""
    c = canary
    m = {
        # metrics.jsonl
        # replaced, not written in place: after metrics_link the path leads into the canary folder
        "metrics_torn": lambda r: _replace(r / "metrics.jsonl", (r / "metrics.jsonl").read_bytes()[:-7]),
        "metrics_binary": lambda r: _replace(r / "metrics.jsonl", bytes(range(256)) * 40),
        "metrics_wrong_types": lambda r: _replace(r / "metrics.jsonl", b'{"step": "x"}\n[1, 2]\n"text"\n'
                                                  b'{"step": 3, "loss": "abc", "g_loss": [1], "d_loss": {"a": 1}}\n'
                                                  b'{"step": 1e400, "loss": 1}\n{"step": 4, "loss": 1' + b"0" * 5000
                                                  + b'}\n{"step": -5}\n{"step": true, "loss": 2}\nnull\n'),
        "metrics_huge_line": lambda r: _replace(r / "metrics.jsonl", b'{"step": 1, "loss": "' + b"x" * (3 << 20)
                                                + b'"}\n{"step": 2, "loss": 0.5}\n'),
        "metrics_link": lambda r: _replace(r / "metrics.jsonl", link_to=c / "metrics.jsonl"),
        "metrics_folder": lambda r: _replace(r / "metrics.jsonl", folder=True),
        "metrics_empty": lambda r: _replace(r / "metrics.jsonl", b""),
        # sample grids
        "png_text": lambda r: _replace(max((r / "samples").glob("epoch_*.png")), b"not a png at all"),
        "png_truncated": lambda r: _truncate(max((r / "samples").glob("epoch_*.png")), 60),
        "png_link": lambda r: _replace(max((r / "samples").glob("epoch_*.png")), link_to=c / "photo.png"),
        "png_bomb": lambda r: _replace(max((r / "samples").glob("epoch_*.png")), bomb_png()),
        "png_folder": lambda r: _replace(max((r / "samples").glob("epoch_*.png")), folder=True),
        "samples_link": lambda r: _replace(r / "samples", link_to=c),
        # .hydra/
        "config_garbage": lambda r: _replace(r / ".hydra" / "config.yaml", b"model: [unclosed\n  : -\n"),
        "config_unsafe_tag": lambda r: _replace(r / ".hydra" / "config.yaml",
                                                f"model: !!python/object/apply:os.system ['touch {c}/ran']\n".encode()),
        "config_alias_bomb": lambda r: _replace(r / ".hydra" / "config.yaml", ALIAS_BOMB.encode()),
        "config_list": lambda r: _replace(r / ".hydra" / "config.yaml", b"- 1\n- 2\n"),
        "config_binary": lambda r: _replace(r / ".hydra" / "config.yaml", bytes(range(256))),
        "config_link": lambda r: _replace(r / ".hydra" / "config.yaml", link_to=c / "config.yaml"),
        "config_deep": lambda r: _replace(r / ".hydra" / "config.yaml", b"a: " + b"[" * 20000 + b"]" * 20000),
        "metrics_deep": lambda r: _replace(r / "metrics.jsonl", b'{"step": 1, "loss": ' + b"[" * 100000 + b"\n"
                                           + b'{"step": 2, "loss": 0.5}\n'),
        "metrics_json_deep": lambda r: _replace(r / "metrics.json", b"[" * 100000),
        "config_names": lambda r: _replace(r / ".hydra" / "config.yaml", b"model:\n  name: ../../x\ndata: 3\n"),
        "overrides_garbage": lambda r: _replace(r / ".hydra" / "overrides.yaml", b"{a: [1\n"),
        # metrics.json
        "metrics_json_garbage": lambda r: _replace(r / "metrics.json", b"{not json"),
        "metrics_json_types": lambda r: _replace(r / "metrics.json", json.dumps(
            {"metrics": {"fd": {"value": "high"}, "x": 3, "y": {"value": 1.0, "protocol": [1]}},
             "figures": {"../../x": "../../etc/passwd", "roc": str(c / "photo.png")}}).encode()),
        "metrics_json_link": lambda r: _replace(r / "metrics.json", link_to=c / "notes.txt"),
        # where the commands write inside the run folder
        "report_link": lambda r: _replace(r / "report", link_to=c / "sub"),
        "generated_link": lambda r: _replace(r / "generated", link_to=c),
        "reconstructions_link": lambda r: _replace(r / "reconstructions", link_to=c),
        "eval_link": lambda r: _replace(r / "eval", link_to=c),
        "generated_file": lambda r: _replace(r / "generated", b"a file where a folder goes"),
        "tb_link": lambda r: _replace(r / "tb", link_to=c),
        # the checkpoint
        "ckpt_model_string": lambda r: _craft_checkpoint(r, _set("model", "weights")),
        "ckpt_config_list": lambda r: _craft_checkpoint(r, _set("config", [1, 2, 3])),
        "ckpt_spec_unknown": lambda r: _craft_checkpoint(r, _set("spec.colour_space", "rgb")),
        "ckpt_spec_huge": lambda r: _craft_checkpoint(r, _set("spec.size", 1 << 40)),
        "ckpt_spec_missing": lambda r: _craft_checkpoint(r, _delete("spec")),
        "ckpt_ema_text": lambda r: _craft_checkpoint(r, _set("ema", {"decay": "0.999", "updates": 1, "shadow": {}})),
        "ckpt_step_text": lambda r: _craft_checkpoint(r, _set("step", "x")),
        "ckpt_model_name": lambda r: _craft_checkpoint(r, _set("config.model.name", "os.system")),
        "ckpt_model_key_type": lambda r: _craft_checkpoint(r, _set("config.train.batch_size", "many")),
        "ckpt_interpolation": lambda r: _craft_checkpoint(r, _set("config.model.name", "${oc.env:HOME}")),
        "ckpt_places": lambda r: _craft_checkpoint(r, lambda s: s["config"]["data"].update(
            root=str(c), cache=True, cache_dir=str(c / "cache"), download=True)),
        "ckpt_wrong_weights": lambda r: _craft_checkpoint(r, lambda s: s["model"].update(
            {k: torch.zeros(3) for k in list(s["model"])[:1]})),
        "ckpt_text": lambda r: _replace(r / "checkpoints" / "last.pt", b"not a checkpoint"),
        "ckpt_link": lambda r: _replace(r / "checkpoints" / "last.pt", link_to=c / "notes.txt"),
        "ckpt_folder": lambda r: _replace(r / "checkpoints" / "last.pt", folder=True),
    }
    return m
