"""The one training loop for every model. It knows batches, steps, intervals and files, never what a GAN is."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

import genlab
from genlab.checkpoint import atomic_write, find_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from genlab.data import Batch, Data
from genlab.errors import GenlabError, Interrupted, TrainingStopped
from genlab.models import GenerativeModel
from genlab.ema import build_ema
from genlab.optim import describe
from genlab.schedules import Schedule, schedule_from
from genlab.tracking import Scatter, Tracker, read_metrics

log = logging.getLogger("genlab")


class Engine:
    """Mixed precision in one place: autocast, and one GradScaler per optimiser (fp16 only)."""

    def __init__(self, device: torch.device, amp: str, names, skip_nonfinite: bool = False):
        self.device = device
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        self.scalers = {n: torch.amp.GradScaler(device.type, enabled=amp == "fp16") for n in names}
        self.skip_nonfinite = skip_nonfinite  # train.on_nan=skip: a non-finite loss or gradient changes nothing
        self.skipped = 0  # updates skipped so far (NanGuard compares it around each step)

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def update(self, loss: torch.Tensor, name: str, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        """zero_grad, backward, step; returns the global L2 norm of the (unscaled) gradients it applied."""
        scaler = self.scalers[name]
        optimizer.zero_grad(set_to_none=True)
        if self.skip_nonfinite and not bool(torch.isfinite(loss.detach())):  # waits on the device: skip mode only
            self.skipped += 1
            return None
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.detach()) for g in grads]))
        if self.skip_nonfinite and not scaler.is_enabled() and not bool(torch.isfinite(norm)):
            optimizer.zero_grad(set_to_none=True)  # (with fp16 the GradScaler skips such a step itself)
            self.skipped += 1
            return None
        scaler.step(optimizer)
        scaler.update()
        if scaler.is_enabled() and not torch.isfinite(norm):
            return None  # fp16 overflow: GradScaler skipped this step, so no gradient was applied
        return norm


def resolve_device(cfg: DictConfig) -> torch.device:
    if cfg.name == "cpu" or (cfg.name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise GenlabError("device=cuda but PyTorch sees no CUDA GPU: use device=cpu or device=auto")
    index = int(cfg.ids[0]) if cfg.ids else 0
    if index >= torch.cuda.device_count():
        raise GenlabError(f"device.ids={list(cfg.ids)} but only {torch.cuda.device_count()} CUDA GPU(s) are visible")
    return torch.device("cuda", index)


def resolve_resume(resume: str | None, run_dir: Path) -> Path | None:
    """train.resume -> a checkpoint path. `auto` = newest sibling run folder with a last.pt, if any."""
    if resume is None:
        return None
    if resume == "auto":
        candidates = [
            p / "checkpoints" / "last.pt"
            for p in run_dir.parent.iterdir()
            if p.is_dir() and p.resolve() != run_dir.resolve() and (p / "checkpoints" / "last.pt").is_file()
        ]
        if not candidates:
            log.info("train.resume=auto: no earlier run of this model and data; starting fresh")
            return None
        return max(candidates, key=lambda p: p.stat().st_mtime)
    return find_checkpoint(resume)


class Progress:
    """A rich live bar on a terminal; plain log lines (at most every 30 s, and each epoch) elsewhere."""

    def __init__(self, mode: str, total: int, start: int):
        if mode == "auto":
            mode = "bar" if sys.stdout.isatty() else "log"
        self.mode, self.total, self.start = mode, total, start
        self.bar = None
        self.last_line = time.monotonic()
        if mode == "bar":
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn
            from rich.progress import TimeElapsedColumn, TimeRemainingColumn

            self.bar = RichProgress(
                TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
            )
            self.task = self.bar.add_task("train", total=total, completed=start, epoch=0, info="")
            self.bar.start()

    def update(self, step: int, epoch: int, scalars: dict[str, float], force: bool = False) -> None:
        info = "  ".join(f"{k} {v:.4g}" for k, v in scalars.items())
        if self.bar is not None:
            self.bar.update(self.task, completed=step, epoch=epoch, info=info)
        elif self.mode == "log" and (force or time.monotonic() - self.last_line > 30):
            self.last_line = time.monotonic()
            log.info(f"epoch {epoch}  step {step}/{self.total}  {info}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def pairwise_spread(images: torch.Tensor) -> float:
    """Mean L2 distance between all pairs of images (in [-1, 1] pixels): a crude but model-free diversity."""
    flat = images.detach().float().flatten(1)
    distances = torch.cdist(flat, flat)
    n = len(flat)
    return float(distances.sum() / (n * (n - 1)))


class StopRequest:
    """The first Ctrl-C or SIGTERM asks the loop to stop after the step in flight (then it saves); a second
    one quits now."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = None  # the signal number once one came
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

    def _handle(self, signum, frame):
        if self.requested:
            raise Interrupted(signum)
        self.requested = signum
        what = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        log.info(f"{what}: stopping after this step to save a checkpoint (send it again to quit at once)")

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


class LearningRates:
    """Writes base lr x schedule.factor(step) into every optimiser's param groups before each step. The
    base is this run's optim settings, so the rate is a pure function of the step (exact resume)."""

    def __init__(self, model: GenerativeModel, schedule: Schedule, total: int, steps_per_epoch: int):
        self.optimizers = model.optimizers
        self.base = {name: float(settings["lr"]) for name, settings in model.optimizer_settings.items()}
        self.schedule, self.total, self.steps_per_epoch = schedule, total, steps_per_epoch

    def apply(self, step: int) -> None:
        factor = self.schedule.factor(step, self.total, self.steps_per_epoch)
        for name, optimizer in self.optimizers.items():
            for group in optimizer.param_groups:
                group["lr"] = self.base[name] * factor

    def current(self) -> dict[str, float]:
        """lr/<optimiser>: the rate the last step used."""
        return {f"lr/{name}": float(opt.param_groups[0]["lr"]) for name, opt in self.optimizers.items()}


class NanGuard:
    """train.on_nan. `stop`: the first step whose loss is not finite stops the run with one line naming the
    step and the scalar, before anything of that state is drawn or saved (checked at each log interval, sample
    grid and checkpoint, so the loop does not wait on the device at every step). `skip`: the Engine applies no
    update whose loss or gradients are not finite, the step's buffers (BatchNorm statistics, EMA codebooks) are
    put back, its non-finite scalars are left out of the averages, and it counts in `nonfinite_skipped`; this
    waits on the device at every step. 100 such steps in a row stop the run."""

    def __init__(self, mode: str, device: torch.device, engine: Engine):
        self.mode, self.device, self.engine = mode, device, engine
        self.pending: list[tuple[int, dict]] = []  # (step, its loss scalars) since the last check
        self.skipped = 0  # steps skipped since the last log
        self.in_a_row = 0

    def step(self, model: GenerativeModel, batch, step: int) -> dict:
        """One training step, watched."""
        if self.mode != "skip":
            scalars = model.training_step(batch, step)
            losses = {k: v for k, v in scalars.items() if "loss" in k and v is not None}
            if losses:
                self.pending.append((step + 1, losses))
            return scalars
        buffers = [b.detach().clone() for b in model.buffers()]
        skipped = self.engine.skipped
        scalars = model.training_step(batch, step)
        if self.engine.skipped == skipped:
            self.in_a_row = 0
            return scalars
        with torch.no_grad():
            for old, new in zip(buffers, model.buffers()):
                new.copy_(old)
        self.skipped += 1
        self.in_a_row += 1
        if self.in_a_row >= 100:
            raise TrainingStopped(f"step {step + 1}: the loss or gradients were not finite for {self.in_a_row} "
                                  "steps in a row (train.on_nan=skip); the run diverged: try a lower optim.lr")
        return {k: v for k, v in scalars.items() if v is None or math.isfinite(float(v))}

    def check(self, last_checkpoint: Path) -> None:
        pending, self.pending = self.pending, []
        if self.mode != "stop" or not pending:
            return
        values = [torch.as_tensor(v, device=self.device).float().reshape(()) for _, d in pending for v in d.values()]
        if bool(torch.isfinite(torch.stack(values)).all()):  # one device sync per check
            return
        for step, losses in pending:
            for name, value in losses.items():
                if not math.isfinite(float(value)):
                    where = (f"its last good checkpoint is {last_checkpoint}" if last_checkpoint.is_file()
                             else "no checkpoint was saved before it")
                    raise TrainingStopped(
                        f"step {step}: {name} is {float(value)} and the run stopped (train.on_nan=stop); {where}. "
                        "Lower optim.lr, or pass train.on_nan=skip to skip such steps")


class Trainer:
    def __init__(self, cfg: DictConfig, run_dir: Path, device: torch.device):
        self.cfg = cfg
        self.train_cfg = cfg.train
        self.run_dir = Path(run_dir)
        self.device = device

    # ---- checkpoints -------------------------------------------------------------------------------
    def state(self, model: GenerativeModel, engine: Engine, epoch: int, batch: int, step: int) -> dict:
        return {
            "genlab_version": genlab.__version__,
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "spec": dataclasses.asdict(self.spec),  # what the model was built for: a run loads without its data
            "model": model.state_dict(),
            "optimizers": {n: o.state_dict() for n, o in model.optimizers.items()},
            "scalers": {n: s.state_dict() for n, s in engine.scalers.items()},
            "extra": model.extra_state(),
            "rng": rng_state(),
            "batches_per_epoch": self.batches_per_epoch,
            "epoch": epoch,  # the epoch in progress (== epochs done when batch == 0)
            "batch": batch,  # batches of that epoch already trained on
            "step": step,
            **({"ema": self.ema.state_dict()} if getattr(self, "ema", None) is not None else {}),
        }

    def save(self, state: dict, keep: bool) -> None:
        """Write checkpoints/last.pt (and a kept copy) atomically: a failed write leaves the previous one whole."""
        folder = self.run_dir / "checkpoints"
        try:
            save_checkpoint(state, folder / "last.pt")
            if keep:
                atomic_write(folder / f"epoch_{state['epoch']:03d}.pt",
                             lambda tmp: shutil.copyfile(folder / "last.pt", tmp))
        except (OSError, RuntimeError) as err:  # torch.save reports a full disk as RuntimeError
            import errno

            kept = folder / "last.pt"
            if isinstance(err, OSError) and err.errno in (errno.EEXIST, errno.ENOTDIR):
                raise GenlabError(f"cannot write a checkpoint into {folder}: it is a file, not a folder; move it "
                                  "away or pass hydra.run.dir=SOMEWHERE/ELSE") from None
            reason = (err.strerror if isinstance(err, OSError) and err.strerror
                      else f"{str(err).splitlines()[0]}: is the disk full?")
            then = (f"the previous checkpoint is unchanged: free some space, then resume with train.resume={kept}"
                    if kept.is_file() else "nothing was saved: free some space or pass hydra.run.dir=SOMEWHERE/ELSE")
            raise GenlabError(f"cannot write a checkpoint into {folder} ({reason}); {then}") from None

    def restore(self, path: Path, model: GenerativeModel, engine: Engine) -> dict:
        # RNG states must stay CPU tensors; load_state_dict moves weights and optimiser state to the device.
        state = load_checkpoint(path, map_location="cpu")
        old, new = state["config"], OmegaConf.to_container(self.cfg, resolve=True)
        for key in ("model", "data", "optim", "loss"):
            if old.get(key, {}).get("name") != new[key]["name"]:
                raise GenlabError(
                    f"cannot resume {path}: it trained with {key}={old[key]['name']}, this run asks for "
                    f"{key}={new[key]['name']}"
                )
        if state.get("batches_per_epoch", self.batches_per_epoch) != self.batches_per_epoch:
            raise GenlabError(
                f"cannot resume {path}: it had {state['batches_per_epoch']} batches per epoch, this run has "
                f"{self.batches_per_epoch}; resume with the same train.batch_size and data.limit"
            )
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as err:
            raise GenlabError(
                f"cannot resume {path}: its weights do not fit this model ({str(err).splitlines()[0]}); "
                "resume with the same model.* settings"
            ) from None
        for name, opt in model.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
            # load_state_dict brings back the old hyper-parameters; this run's optim.* settings win
            for group in opt.param_groups:
                for key, value in model.optimizer_settings[name].items():
                    if key in group and key != "params" and value is not None:
                        group[key] = tuple(value) if key == "betas" else value
        for name, scaler in engine.scalers.items():
            if name in state.get("scalers", {}):
                scaler.load_state_dict(state["scalers"][name])
        model.load_extra_state(state.get("extra", {}))
        set_rng_state(state["rng"])
        self._copy_history(path, state["step"], state["epoch"])
        return state

    def init_from(self, source: str, model: GenerativeModel) -> None:
        """train.init_from: another run's weights through the model's init_weights hook; the optimisers, the
        step and the history start fresh. init_from.txt records the source."""
        path = find_checkpoint(source)
        state = load_checkpoint(path, map_location="cpu")
        source_model, own = state["config"]["model"]["name"], self.cfg.model.name
        taken = model.init_weights(source_model, state["model"])
        if taken is None:
            if source_model != own:
                raise GenlabError(f"train.init_from={source}: a {own} run cannot start from a {source_model} run "
                                  f"(the {own} model maps no weights from it); pass a {own} run")
            try:
                model.load_state_dict(state["model"])
            except RuntimeError as err:
                raise GenlabError(f"train.init_from={source}: its weights do not fit this model "
                                  f"({str(err).splitlines()[0]}); use the same model.* settings") from None
            taken = "all weights"
        (self.run_dir / "init_from.txt").write_text(
            f"{path.resolve()}\nmodel {source_model}, step {state.get('step', 0)}\n{taken}\n")
        log.info(f"started from {path} ({source_model}, step {state.get('step', 0)}): {taken}")

    def _copy_history(self, checkpoint: Path, step: int, epoch: int) -> None:
        """A resumed run's folder gets the earlier history, so it stands alone (curves, samples, TensorBoard)."""
        old_run = checkpoint.parent.parent
        if old_run.resolve() == self.run_dir.resolve():
            return
        records = [r for r in read_metrics(old_run / "metrics.jsonl") if r.get("step", 0) <= step]
        (self.run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        if (old_run / "tb").is_dir():  # later events are dropped by the new writer's purge_step
            shutil.copytree(old_run / "tb", self.run_dir / "tb", dirs_exist_ok=True)
        for png in sorted((old_run / "samples").glob("epoch_*.png")):
            if int(png.stem.split("_")[1]) <= epoch:
                (self.run_dir / "samples").mkdir(parents=True, exist_ok=True)
                shutil.copyfile(png, self.run_dir / "samples" / png.name)
        (self.run_dir / "resumed_from.txt").write_text(f"{checkpoint.resolve()}\nstep {step}\n")

    # ---- the loop ----------------------------------------------------------------------------------
    def fit(self, model: GenerativeModel, data: Data) -> dict:
        t = self.train_cfg
        self.started = time.perf_counter()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        model.to(self.device)
        if self.cfg.device.channels_last:
            model.to(memory_format=torch.channels_last)
        model.configure_optimizers(self.cfg.optim)
        on_nan = self.cfg.train.get("on_nan", "stop")
        engine = Engine(self.device, self.cfg.device.amp, model.optimizers, skip_nonfinite=on_nan == "skip")
        model.engine = engine
        guard = NanGuard(on_nan, self.device, engine)
        last_pt = self.run_dir / "checkpoints" / "last.pt"
        schedule = schedule_from(self.cfg, model)

        self.spec = data.spec
        batches = self.batches_per_epoch = len(data.train)
        total = t.steps if t.steps is not None else t.epochs * batches
        n_epochs = math.ceil(total / batches)
        epoch, start_batch, step = 0, 0, 0
        resume = resolve_resume(t.resume, self.run_dir)
        state = self.restore(resume, model, engine) if resume is not None else {}
        if t.get("init_from"):
            self.init_from(t.init_from, model)
        # after the restore: the average starts from the weights the run continues from
        ema = self.ema = build_ema(model, t.get("ema"))
        if resume is not None:
            epoch, start_batch, step = state["epoch"], state["batch"], state["step"]
            log.info(f"resumed from {resume} at epoch {epoch}, step {step}")
            if ema is not None and state.get("ema"):
                ema.load_state_dict(state["ema"])
            elif ema is not None:
                log.info("the checkpoint has no EMA weights: the average starts from its weights")
            elif state.get("ema"):
                log.info("the checkpoint has EMA weights and this run keeps none: pass train.ema=DECAY to go on "
                         "averaging (genlab sample will use this run's trained weights)")
            if step >= total:
                log.info(f"that run already reached step {step} of {total}: nothing to train "
                         "(raise train.epochs or train.steps to go on)")

        title = f"{self.cfg.model.name} on {self.cfg.data.name}"
        tracker = Tracker(self.run_dir, model.curve_groups, title, purge_step=step + 1 if step else None)
        fixed = data.fixed_batch(t.n_samples)
        params = {n: sum(p.numel() for p in net.parameters()) for n, net in model.networks().items()}
        log.info(f"{title}: {data.spec.n_train} training images, {batches} batches of {t.batch_size} per epoch, "
                 f"{total} steps on {self.device}")
        for name, settings in model.optimizer_settings.items():
            log.info(f"  {name}: {params[name]:,} parameters, {describe(settings)}, {schedule.describe()}")
        rates = LearningRates(model, schedule, total, batches)
        log.info(f"  run folder: {self.run_dir}")

        if step == 0:
            self._visuals(model, tracker, fixed, data, step, 0)
        progress = Progress(t.progress, total, step)
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}  # per scalar: a model may log some only on some steps (G every n_critic)
        images_seen = 0
        clock = curves_drawn = time.perf_counter()
        started = self.started
        last = {}
        stop = StopRequest()
        try:
            while epoch < n_epochs and step < total and not stop.requested:
                model.train()
                for batch in data.train.epoch(epoch, start_batch):
                    if self.cfg.device.channels_last:
                        batch = Batch({k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v
                                       for k, v in batch.items()})
                    rates.apply(step)
                    scalars = guard.step(model, batch, step)
                    if ema is not None:
                        ema.update()
                    step += 1
                    start_batch += 1
                    images_seen += batch.size
                    for k, v in scalars.items():
                        if v is None:  # e.g. no gradient norm on a step that mixed precision skipped
                            continue
                        sums[k] = sums.get(k, 0.0) + v
                        counts[k] = counts.get(k, 0) + 1
                    if step % t.log_every == 0 or step == total:
                        guard.check(last_pt)
                        now = time.perf_counter()
                        window = {k: float(v) / counts[k] for k, v in sums.items()}
                        if guard.skipped:
                            window["nonfinite_skipped"], guard.skipped = float(guard.skipped), 0
                        window.update(rates.current())
                        window["img_per_s"] = images_seen / max(now - clock, 1e-9)
                        tracker.log_scalars(step, epoch + start_batch / batches, window, now - started)
                        last.update(window)
                        progress.update(step, epoch + 1, last)
                        sums, counts, images_seen, clock = {}, {}, 0, now
                    if step >= total or stop.requested:
                        break
                if stop.requested:
                    break
                finished_epoch = start_batch >= batches
                if finished_epoch:
                    epoch, start_batch = epoch + 1, 0
                done = step >= total
                guard.check(last_pt)  # nothing of a diverged state is drawn or saved
                if done or (finished_epoch and epoch % t.sample_every == 0):
                    self._visuals(model, tracker, fixed, data, step, epoch if finished_epoch else epoch + 1)
                keep = finished_epoch and t.keep_every > 0 and epoch % t.keep_every == 0
                if done or keep or (finished_epoch and epoch % t.checkpoint_every == 0):
                    self.save(self.state(model, engine, epoch, start_batch, step), keep)
                    # matplotlib costs ~0.2 s a figure: with short epochs redraw at most every 20 s
                    if done or time.perf_counter() - curves_drawn > 20:
                        tracker.draw_curves()
                        curves_drawn = time.perf_counter()
                progress.update(step, epoch, last, force=True)
            if stop.requested:
                # the step in flight finished first, so this checkpoint resumes exactly
                progress.close()
                guard.check(last_pt)
                self.save(self.state(model, engine, epoch, start_batch, step), keep=False)
                tracker.draw_curves()
                log.info(f"interrupted at step {step}; saved {last_pt}")
                raise Interrupted(stop.requested)
            if resume is not None and not (self.run_dir / "checkpoints" / "last.pt").is_file():
                self.save(self.state(model, engine, epoch, start_batch, step), keep=False)  # nothing left to train
                tracker.draw_curves()
        except TrainingStopped:
            progress.close()
            tracker.draw_curves()  # the curves up to the divergence
            raise
        finally:
            stop.restore()
            progress.close()
            tracker.close()
        log.info(f"done: {step} steps in {time.perf_counter() - started:.0f} s; samples, curves.png and "
                 f"checkpoints/last.pt are in {self.run_dir}")
        return last

    def _visuals(self, model: GenerativeModel, tracker: Tracker, fixed, data: Data, step: int, epoch: int) -> None:
        # Visuals must not consume the training RNG, or a resumed run would diverge from a straight one.
        averaged = self.ema.applied() if self.ema is not None else contextlib.nullcontext()
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []), averaged, \
                torch.no_grad():
            model.eval()
            visuals = model.visuals(fixed)
            scores = model.evaluate(data.evaluation.ordered())
            model.train()
        tracker.log_visuals(step, epoch, visuals, model.visual_row_titles())
        for name, scatter in scores.items():
            if isinstance(scatter, Scatter):
                tracker.log_scatter(step, epoch, name, scatter)
        scalars = {k: v for k, v in scores.items() if isinstance(v, float)}
        if "samples" in visuals and "image" in fixed and fixed.size > 1:
            # how spread out the fixed-noise samples are, relative to the real fixed batch: near 0 = collapse
            real = pairwise_spread(fixed["image"])
            scalars["sample_diversity"] = pairwise_spread(visuals["samples"]) / real if real > 0 else float("nan")
        if scalars:
            tracker.log_scalars(step, epoch, scalars, time.perf_counter() - self.started)
