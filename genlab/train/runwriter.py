"""RunWriter: the one object that writes into a run folder while it trains.

Checkpoints, metrics.jsonl, sample PNGs, curves.png, the history a resumed run copies, init_from.txt /
resumed_from.txt, and what goes to the loggers chosen (genlab/train/loggers.py: TensorBoard events in tb/, a wandb
run in wandb/; the config once, scalars, images, a sweep job's hparams) all go through it. Hydra writes .hydra/ and
train.log; rundir.py removes what a failed start made; nothing else touches the folder.

With several processes (torchrun), only the first writes: every other rank's writer is silent (`active` is
False), so its methods return without touching the disk. The rank is read from torchrun's RANK and WORLD_SIZE
(genlab/core/distributed.py).
"""

from __future__ import annotations

import errno
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from genlab.core import files
from genlab.core.checkpoint import save_checkpoint
from genlab.core.errors import GenlabError
from genlab.core.files import atomic_write
from genlab.core.plots import Plot, draw_curves, image_grid, save_png, titled_rows
from genlab.core.ranks import rank
from genlab.core.records import NOT_CURVES, hparams_of, read_metrics
from genlab.train import loggers


def is_main_process() -> bool:
    """Rank 0 of a data-parallel job (RANK, with WORLD_SIZE > 1), or a plain single process."""

    return rank() == 0


def _silent_on_other_ranks(method):
    def guarded(self, *args, **kwargs):
        if not self.active:
            return None
        return method(self, *args, **kwargs)

    guarded.__name__, guarded.__doc__ = method.__name__, method.__doc__
    return guarded


def _history_files(old_run: Path, epoch: int, left: list):
    """(source, path in the new run) of what a resume copies: tb/'s files (no links followed, at most 10,000; the
    rest said in `left`) and the sample grids up to `epoch`."""
    import os

    tb = old_run / "tb"
    if tb.is_dir() and not tb.is_symlink():
        count = 0
        for folder, dirs, names in os.walk(tb):  # os.walk does not descend into linked folders
            for name in names:
                source = Path(folder) / name
                count += 1
                if count > 10_000:
                    left.append("tb/ files beyond the first 10,000")
                    return
                yield source, source.relative_to(old_run)
    samples = old_run / "samples"
    if samples.is_dir() and not samples.is_symlink():
        for png in sorted(samples.glob("epoch_*.png")):
            number = png.stem.split("_")[1]
            if number.isdigit() and int(number) <= epoch:
                yield png, Path("samples") / png.name


class RunWriter:
    def __init__(self, run_dir: Path, active: bool | None = None):
        self.run_dir = Path(run_dir)
        self.active = is_main_process() if active is None else active
        self.loggers: list = []
        self._jsonl = None
        self.curve_groups: dict[str, list[str]] = {}
        self.title = ""
        if self.active:
            files.ensure_area(self.run_dir)  # claimed by rundir (`genlab train`), or handed to run_training
            files.make_folder(self.run_dir)

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    # ---- records -----------------------------------------------------------------------------------------
    @_silent_on_other_ranks
    def open(self, curve_groups: dict[str, list[str]], title: str = "", purge_step: int | None = None,
             cfg=None) -> None:
        """Start metrics.jsonl and the loggers of cfg.logger (TensorBoard by default; its copied events after
        purge_step are dropped)."""

        self.curve_groups, self.title = curve_groups, title
        files.make_folder(self.run_dir / "samples")
        self._jsonl = files.append(self.metrics_path)
        for logger in loggers.build(cfg):
            logger.start(self.run_dir, cfg, purge_step)
            self.loggers.append(logger)

    @_silent_on_other_ranks
    def scalars(self, step: int, epoch: float, scalars: dict[str, float], elapsed: float) -> None:
        """The loggers: lr/* as they are, run figures under perf/, test_* under test/, the rest under train/;
        and one metrics.jsonl line (a non-finite value as null, so every line stays valid JSON)."""
        tags = {}
        for name, value in scalars.items():
            if "/" in name:
                tag = name
            elif name in NOT_CURVES:
                tag = f"perf/{name}"
            elif name.startswith("test_"):
                tag = f"test/{name[5:]}"
            else:
                tag = f"train/{name}"
            tags[tag] = value
        for logger in self.loggers:
            logger.scalars(tags, step)
        record = {"step": step, "epoch": round(epoch, 4), "time": round(elapsed, 3), **scalars}
        record = {k: v if not isinstance(v, float) or math.isfinite(v) else None for k, v in record.items()}
        self._jsonl.write(json.dumps(record, allow_nan=False) + "\n")

    def _image(self, tag: str, image: Image.Image, step: int) -> None:
        array = np.asarray(image.convert("RGB")).copy()
        for logger in self.loggers:
            logger.image(tag, array, step)

    @_silent_on_other_ranks
    def visuals(self, step: int, epoch: int, visuals: dict[str, torch.Tensor],
                row_titles: dict[str, list[str]] | None = None) -> list[Path]:
        """samples/epoch_XXX.png ("samples") and samples/epoch_XXX_<name>.png, and TensorBoard visuals/<name>.
        A 5-D visual [rows, columns, C, H, W] keeps the model's layout."""
        paths = []
        for name, images in visuals.items():
            titles = (row_titles or {}).get(name)
            if images.dim() == 5:
                nrow, images = images.shape[1], images.flatten(0, 1)
            else:
                nrow = len(images) // len(titles) if titles else 8
            grid = image_grid(images, nrow=nrow)
            if titles:
                grid = titled_rows(grid, titles)
            suffix = "" if name == "samples" else f"_{name}"
            path = self.run_dir / "samples" / f"epoch_{epoch:03d}{suffix}.png"
            save_png(grid, path)
            paths.append(path)
            self._image(f"visuals/{name}", grid, step)
        for logger in self.loggers:
            logger.flush()
        return paths

    @_silent_on_other_ranks
    def plot(self, step: int, epoch: int, name: str, plot: Plot) -> Path:
        """A core.plots.Plot (a scatter, a density map) as samples/epoch_XXX_<name>.png, and the same image in
        TensorBoard under visuals/<name>."""
        data = plot.png()
        path = self.run_dir / "samples" / f"epoch_{epoch:03d}_{name}.png"
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
        with Image.open(io.BytesIO(data)) as image:
            self._image(f"visuals/{name}", image, step)
        for logger in self.loggers:
            logger.flush()
        return path

    @_silent_on_other_ranks
    def curves(self) -> None:
        """Redraw curves.png from metrics.jsonl (the model's curve_groups against the step)."""
        if self._jsonl is not None:
            self._jsonl.flush()
        draw_curves(read_metrics(self.metrics_path), self.run_dir / "curves.png", self.curve_groups, self.title)

    @_silent_on_other_ranks
    def final(self, overrides: list[str], final: dict[str, float], step: int) -> None:
        """A sweep job's overrides as hyper-parameters and its final scalars (final/<name>) as their metrics, to
        every logger once at its end (TensorBoard's HParams tab compares the jobs of a multirun)."""
        params, metrics = hparams_of(overrides, final)
        for logger in self.loggers:
            logger.final(params, metrics, step)

    @_silent_on_other_ranks
    def note(self, name: str, text: str) -> None:
        """A small record beside the run (init_from.txt, resumed_from.txt)."""
        atomic_write(self.run_dir / name, lambda tmp: Path(tmp).write_text(text))

    # ---- checkpoints -------------------------------------------------------------------------------------
    @_silent_on_other_ranks
    def checkpoint(self, state: dict, keep: bool) -> None:
        """checkpoints/last.pt (and epoch_XXX.pt when `keep`), atomically: a failed write leaves the previous
        one whole and says so in one line."""
        folder = self.run_dir / "checkpoints"
        try:
            save_checkpoint(state, folder / "last.pt")
            if keep:
                atomic_write(folder / f"epoch_{state['epoch']:03d}.pt",
                             lambda tmp: shutil.copyfile(folder / "last.pt", tmp))
        except GenlabError:  # a link or a file in the way (genlab/core/files.py says which)
            raise
        except (OSError, RuntimeError) as err:  # torch.save reports a full disk as RuntimeError
            kept = folder / "last.pt"
            if isinstance(err, OSError) and err.errno in (errno.EEXIST, errno.ENOTDIR):
                raise GenlabError(f"cannot write a checkpoint into {folder}: it is a file, not a folder; move it "
                                  "away or pass hydra.run.dir=SOMEWHERE/ELSE") from None
            reason = (err.strerror if isinstance(err, OSError) and err.strerror
                      else f"{str(err).splitlines()[0]}: is the disk full?")
            then = (f"the previous checkpoint is unchanged: free some space, then resume with train.resume={kept}"
                    if kept.is_file() else "nothing was saved: free some space or pass hydra.run.dir=SOMEWHERE/ELSE")
            raise GenlabError(f"cannot write a checkpoint into {folder} ({reason}); {then}") from None

    @_silent_on_other_ranks
    def copy_history(self, checkpoint: Path, step: int, epoch: int) -> None:
        """A resumed run's folder gets the earlier run's history up to the checkpoint (metrics.jsonl lines,
        samples/, tb/: later events are dropped by open()'s purge_step), so it stands alone. The earlier folder
        is read as untrusted input: its links, non-files and unreadable records are left behind (and said)."""
        import logging

        log = logging.getLogger("genlab")
        old_run = Path(checkpoint).parent.parent
        if old_run.resolve() == self.run_dir.resolve():
            return
        left: list[str] = []
        try:
            records = [r for r in read_metrics(old_run / "metrics.jsonl", root=old_run, notes=left)
                       if r.get("step", 0) <= step]
        except GenlabError as err:
            records, _ = [], left.append(f"metrics.jsonl ({err})")
        atomic_write(self.metrics_path, lambda tmp: Path(tmp).write_text("".join(json.dumps(r) + "\n" for r in records)))
        for source, target in _history_files(old_run, epoch, left):
            try:
                files.copy_file(source, self.run_dir / target, source_root=old_run)
            except GenlabError as err:
                left.append(f"{target} ({err})")
        for what in left[:5]:
            log.info(f"resume: left behind {what}")
        if len(left) > 5:
            log.info(f"resume: left behind {len(left) - 5} more file(s) of {old_run}")
        self.note("resumed_from.txt", f"{Path(checkpoint).resolve()}\nstep {step}\n")

    def close(self) -> None:
        loggers, self.loggers = self.loggers, []
        for logger in loggers:
            logger.close()
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
