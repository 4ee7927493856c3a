"""The one training loop for every model. It knows batches, steps, intervals and files, never what a GAN is."""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import sys
import threading
import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from genlab.core import distributed, ranks
from genlab.core.checkpoint import rng_state
from genlab.core.errors import Interrupted, TrainingStopped, detach_from_terminal, raise_if_stopped
from genlab.core.optim import describe
from genlab.core.plots import Plot
from genlab.core.records import final_scalars, read_metrics
from genlab.data import Batch, Data
from genlab.data.base import check_batches
from genlab.models import GenerativeModel
from genlab.train.ema import build_ema
from genlab.train.loggers import sweep_overrides
from genlab.train.resume import Position, checkpoint_state, init_from, position_of, resolve_resume, restore
from genlab.train.runwriter import RunWriter
from genlab.train.schedules import Schedule, schedule_from

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
        if self.skip_nonfinite and not distributed.all_finite(loss):  # waits on the device: skip mode only
            self.skipped += 1
            return None
        scaler.scale(loss).backward()
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        distributed.average_gradients(grads)  # data-parallel: the mean over the ranks (before any unscaling)
        scaler.unscale_(optimizer)
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


def compile_networks(model: GenerativeModel, device_cfg) -> None:
    """device.compile: torch.compile every network in place (nn.Module.compile), so its state_dict keeps its keys
    and checkpoints load with or without it. The first steps are slow while it compiles."""
    if not device_cfg.get("compile", False):
        return
    backend = device_cfg.get("compile_backend") or "inductor"
    mode = device_cfg.get("compile_mode") or None
    targets = model.compile_targets()
    for module in targets:
        module.compile(backend=backend, mode=mode, dynamic=False)
    log.info(f"compiled {', '.join(type(m).__name__ for m in targets)} with torch.compile (backend {backend}"
             + (f", mode {mode}" if mode else "") + ")")


class Progress:
    """A rich live bar on a terminal; plain log lines (at most every 30 s, and each epoch) elsewhere."""

    def __init__(self, mode: str, total: int, start: int):
        if mode == "auto":
            mode = "bar" if sys.stdout.isatty() else "log"
        self.mode, self.total, self.start = mode, total, start
        self.bar = None
        self.last_line = time.monotonic()
        if mode == "bar":
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

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
    one quits now. In a data-parallel job the ranks agree after every step (`agree`), so all of them stop
    after the same one."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # SIGHUP: the terminal or SSH session closed
    # SLURM's warning before a time limit or pre-emption, where a handler of its own is installed (submitit's,
    # which requeues the job): the run saves first, then that handler requeues, and the requeued job resumes
    HANDED_ON = signal.SIGUSR2

    def __init__(self):
        raise_if_stopped()  # a stop that came while the run started: nothing trained yet, the start is undone
        self.received = None  # the signal number once one came to this process
        self.requested = None  # the stop the loop acts on: the received one, or in a job the one agreed
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            # a signal nohup (or a parent) set to be ignored stays ignored
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS
                              if signal.getsignal(s) is not signal.SIG_IGN}
            if callable(signal.getsignal(self.HANDED_ON)):
                self._previous[self.HANDED_ON] = signal.signal(self.HANDED_ON, self._handle)

    def hand_on(self) -> None:
        """After the checkpoint of a stop asked for by SLURM's warning: the handler that was there (submitit's
        requeue, which exits this process)."""
        handler = self._previous.get(self.HANDED_ON)
        if self.requested == self.HANDED_ON and callable(handler):
            self.restore()
            log.info("handing over to the job scheduler's handler (submitit requeues this job; it resumes from "
                     "its last.pt)")
            handler(self.HANDED_ON, None)

    def agree(self) -> None:
        if distributed.active():
            self.requested = distributed.agreed_signal(self.received)

    def _handle(self, signum, frame):
        if self.received and distributed.active() and time.monotonic() - self._received_at < 2:
            return  # one stop sent twice (the terminal's SIGINT, then torchrun's or SLURM's SIGTERM)
        if self.received:
            raise Interrupted(signum)
        self._received_at = time.monotonic()
        self.received = signum
        if signum == signal.SIGHUP:  # the terminal is gone: the save must not fail writing to it

            detach_from_terminal()
        if not distributed.active():
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
        if distributed.all_finite(torch.stack(values)):  # one device sync per check (every rank decides alike)
            return
        for step, losses in pending:
            for name, value in losses.items():
                if not math.isfinite(float(value)):
                    where = (f"its last good checkpoint is {last_checkpoint}" if last_checkpoint.is_file()
                             else "no checkpoint was saved before it")
                    raise TrainingStopped(
                        f"step {step}: {name} is {float(value)} and the run stopped (train.on_nan=stop); {where}. "
                        "Lower optim.lr, or pass train.on_nan=skip to skip such steps")
        raise TrainingStopped(f"by step {pending[-1][0]} a loss of another process was not finite and the run "
                              "stopped (train.on_nan=stop). Lower optim.lr, or pass train.on_nan=skip")


class ScalarWindow:
    """Each scalar averaged over the steps of one log interval (a model may log some only on some steps, e.g.
    G every n_critic steps), the images per second over it, and the fraction of it spent waiting for data
    (`data_wait`: near 0, the data feed keeps up; near 1, the model waits on it). In a data-parallel job the
    averages are over every rank's steps and img_per_s counts every rank's images."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.images = 0
        self.waited = 0.0
        self.clock = time.perf_counter()

    def add(self, scalars: dict, n_images: int) -> None:
        self.images += n_images
        for k, v in scalars.items():
            if v is None:  # e.g. no gradient norm on a step that mixed precision skipped
                continue
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1

    def close(self) -> dict[str, float]:
        """The averages (one device sync), then a fresh window."""
        out, images = distributed.mean_scalars(self.sums, self.counts, self.images)
        elapsed = max(time.perf_counter() - self.clock, 1e-9)
        out["img_per_s"] = images / elapsed
        out["data_wait"] = min(self.waited / elapsed, 1.0)
        self.__init__()
        return out


class Trainer:
    """The loop. Where a run starts is resume.py's business, what it writes is the RunWriter's; the trainer
    only decides when: a step per batch, a log line every train.log_every steps, visuals every
    train.sample_every epochs, a checkpoint every train.checkpoint_every epochs."""

    def __init__(self, cfg: DictConfig, run_dir: Path, device: torch.device):
        self.cfg = cfg
        self.train_cfg = cfg.train
        self.run_dir = Path(run_dir)
        self.device = device
        self.ema = None

    def fit(self, model: GenerativeModel, data: Data) -> dict:
        t = self.train_cfg
        self.started = time.perf_counter()
        self.spec, self.batches_per_epoch = data.spec, len(data.train)
        check_batches(data.train, t.batch_size, data.spec.name)  # an epoch of no batches would never end
        self.total = t.steps if t.steps is not None else t.epochs * self.batches_per_epoch
        engine, guard = self._attach(model)
        writer = self.writer = RunWriter(self.run_dir)
        position = self._start(model, engine, writer)
        writer.open(model.curve_groups, self.title, purge_step=position.step + 1 if position.step else None,
                    cfg=self.cfg)
        try:
            rates = self._announce(model, data)
            fixed = data.fixed_batch(t.n_samples)
            if position.step == 0:
                self._visuals(model, fixed, data, step=0, epoch=0)
        except BaseException:  # the loggers are open (a wandb run): close them before the failed start is removed
            writer.close()
            raise

        progress = Progress(t.progress if writer.active else "none", self.total, position.step)
        self.last: dict[str, float] = {}
        self._curves_drawn = time.perf_counter()
        window = ScalarWindow()  # log intervals may span epochs
        stop = StopRequest()
        try:
            while position.step < self.total and not stop.requested:
                self._train_epoch(model, data, position, rates, guard, window, progress, stop)
                if not stop.requested:
                    self._end_of_pass(model, engine, fixed, data, position, guard, progress)
            if stop.requested:  # the step in flight finished first, so this checkpoint resumes exactly
                progress.close()
                guard.check(self.last_pt)
                self._save(model, engine, position, keep=False)
                writer.curves()
                distributed.barrier()  # no rank leaves (and gets rank 0 signalled) before rank 0 has saved
                log.info(f"interrupted at step {position.step}; saved {self.last_pt}")
                stop.hand_on()
                raise Interrupted(stop.requested)
            # a resume with nothing to train still leaves one (rank 0's file system decides for every rank)
            if self.resumed and distributed.rank0s(not self.last_pt.is_file()):
                self._save(model, engine, position, keep=False)
                writer.curves()
            overrides = sweep_overrides()
            if overrides is not None:  # a sweep job: its overrides against its final numbers, once, at its end
                writer.final(overrides, final_scalars(read_metrics(writer.metrics_path)), position.step)
            distributed.barrier()  # every rank ends after rank 0 has written the end of the run
        except TrainingStopped:
            progress.close()
            writer.curves()  # the curves up to the divergence
            raise
        finally:
            stop.restore()
            progress.close()
            writer.close()
        where = (f"samples, curves.png and checkpoints/last.pt are in {self.run_dir}" if writer.active
                 else "this process writes nothing (RANK > 0); rank 0 saved the run")
        log.info(f"done: {position.step} steps in {time.perf_counter() - self.started:.0f} s; {where}")
        return self.last

    # ---- before the loop ---------------------------------------------------------------------------------
    @property
    def last_pt(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    @property
    def title(self) -> str:
        return f"{self.cfg.model.name} on {self.cfg.data.name}"

    def _attach(self, model: GenerativeModel) -> tuple[Engine, NanGuard]:
        """The model on its device (data-parallel: BatchNorm over the global batch, rank 0's weights), compiled
        where device.compile asks, its optimisers, the Engine (AMP, grad scaling) and the NaN guard."""
        model.to(self.device)
        self.buffer_sync = None
        if distributed.active():
            synced = distributed.sync_batchnorm(model, self.device)
            distributed.broadcast_module(model)
            log.info(f"data-parallel over {ranks.world_size()} processes: each trains on "
                     f"{self.train_cfg.batch_size // ranks.world_size()} of every batch of "
                     f"{self.train_cfg.batch_size}" + (f"; {synced} BatchNorm layers normalise over the whole batch"
                                                       if synced else ""))
        if self.cfg.device.channels_last:
            model.to(memory_format=torch.channels_last)
        compile_networks(model, self.cfg.device)
        if distributed.active():  # (after the memory-format change, which may replace buffer tensors)
            self.buffer_sync = distributed.BufferSync(model, distributed.SYNCED_NORMS)
        model.configure_optimizers(self.cfg.optim)
        on_nan = self.train_cfg.get("on_nan", "stop")
        engine = Engine(self.device, self.cfg.device.amp, model.optimizers, skip_nonfinite=on_nan == "skip")
        model.engine = engine
        return engine, NanGuard(on_nan, self.device, engine)

    def _start(self, model: GenerativeModel, engine: Engine, writer: RunWriter) -> Position:
        """Fresh, resumed (train.resume: weights, optimisers, RNG, position, EMA and the earlier history) or
        started from another run's weights (train.init_from); then the EMA, from the weights the run goes on
        from."""
        t = self.train_cfg
        # (train.resume=auto picks the newest run: rank 0 picks for every rank)
        path = distributed.rank0s(resolve_resume(t.resume, self.run_dir) if ranks.rank() == 0 else None)
        self.resumed = path is not None
        state, position = {}, Position()
        if path is not None:
            state = restore(path, self.cfg, model, engine, self.batches_per_epoch)
            position = position_of(state)
            writer.copy_history(path, position.step, position.epoch)
            log.info(f"resumed from {path} at epoch {position.epoch}, step {position.step}")
            if position.step >= self.total:
                log.info(f"that run already reached step {position.step} of {self.total}: nothing to train "
                         "(raise train.epochs or train.steps to go on)")
        if t.get("init_from"):
            writer.note("init_from.txt", init_from(t.init_from, self.cfg, model))
        self.ema = build_ema(model, t.get("ema"))
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        elif self.ema is not None and path is not None:
            log.info("the checkpoint has no EMA weights: the average starts from its weights")
        elif state.get("ema"):
            log.info("the checkpoint has EMA weights and this run keeps none: pass train.ema=DECAY to go on "
                     "averaging (genlab sample will use this run's trained weights)")
        return position

    def _announce(self, model: GenerativeModel, data: Data) -> LearningRates:
        """The run's plan in the log; returns the learning rates the loop writes before each step."""
        t = self.train_cfg
        schedule = schedule_from(self.cfg, model)
        params = {n: sum(p.numel() for p in net.parameters()) for n, net in model.networks().items()}
        log.info(f"{self.title}: {data.spec.n_train} training examples, {self.batches_per_epoch} batches of "
                 f"{t.batch_size} per epoch, {self.total} steps on {self.device}")
        for name, settings in model.optimizer_settings.items():
            log.info(f"  {name}: {params[name]:,} parameters, {describe(settings)}, {schedule.describe()}")
        log.info(f"  run folder: {self.run_dir}")
        return LearningRates(model, schedule, self.total, self.batches_per_epoch)

    # ---- the loop ------------------------------------------------------------------------------------------
    def _train_epoch(self, model, data, position: Position, rates, guard, window, progress, stop) -> None:
        """The batches of the epoch in progress from where the position stands, until it ends, the run reaches
        its last step or a stop is requested."""
        t = self.train_cfg
        model.train()
        batches = iter(data.train.epoch(position.epoch, position.batch))
        self._epoch_meter = meter = {"clock": time.perf_counter(), "images": 0, "waited": 0.0}
        while True:
            asked = time.perf_counter()
            batch = next(batches, None)  # a user's step includes loading its data: the wait is timed
            waited = time.perf_counter() - asked
            window.waited += waited
            meter["waited"] += waited
            if batch is None:
                break
            batch = distributed.shard(batch, t.batch_size)
            if self.cfg.device.channels_last:
                batch = Batch({k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v
                               for k, v in batch.items()})
            rates.apply(position.step)
            scalars = guard.step(model, batch, position.step)
            if self.buffer_sync:  # data-parallel: buffers a rank updated from its own share, as rank 0 has them
                self.buffer_sync()
            if self.ema is not None:
                self.ema.update()
            position.advance()
            window.add(scalars, batch.size)
            meter["images"] += batch.size
            stop.agree()  # data-parallel: one tiny all-reduce on the CPU, so every rank stops after this step
            if position.step % t.log_every == 0 or position.step == self.total:
                guard.check(self.last_pt)
                scalars = window.close()
                if guard.skipped:
                    scalars["nonfinite_skipped"], guard.skipped = float(guard.skipped), 0
                scalars.update(rates.current())
                scalars["img_per_s"] = scalars.pop("img_per_s")
                self.writer.scalars(position.step, position.epoch + position.batch / self.batches_per_epoch,
                                    scalars, time.perf_counter() - self.started)
                self.last.update(scalars)
                progress.update(position.step, position.epoch + 1, self.last)
            if position.step >= self.total or stop.requested:
                break

    def _end_of_pass(self, model, engine, fixed, data, position: Position, guard, progress) -> None:
        """After an epoch (or the last step): visuals every sample_every epochs, checkpoints every
        checkpoint_every (kept copies every keep_every), curves.png at most every 20 s."""
        t = self.train_cfg
        finished_epoch = position.batch >= self.batches_per_epoch
        if finished_epoch:
            position.epoch, position.batch = position.epoch + 1, 0
        done = position.step >= self.total
        guard.check(self.last_pt)  # nothing of a diverged state is drawn, logged or saved
        if finished_epoch:
            self._epoch_speed(position)
        if done or (finished_epoch and position.epoch % t.sample_every == 0):
            self._visuals(model, fixed, data, position.step, position.epoch if finished_epoch else position.epoch + 1)
        keep = finished_epoch and t.keep_every > 0 and position.epoch % t.keep_every == 0
        if done or keep or (finished_epoch and position.epoch % t.checkpoint_every == 0):
            self._save(model, engine, position, keep)
            # matplotlib costs ~0.2 s a figure: with short epochs redraw at most every 20 s
            if done or time.perf_counter() - self._curves_drawn > 20:
                self.writer.curves()
                self._curves_drawn = time.perf_counter()
        progress.update(position.step, position.epoch, self.last, force=True)

    def _epoch_speed(self, position: Position) -> None:
        """The epoch's images per second (every rank's) and the share of its time spent waiting for data."""
        meter = getattr(self, "_epoch_meter", None)
        if not meter or not meter["images"]:
            return
        elapsed = max(time.perf_counter() - meter["clock"], 1e-9)
        speed = {"epoch_img_per_s": meter["images"] * ranks.world_size() / elapsed,
                 "epoch_data_wait": min(meter["waited"] / elapsed, 1.0)}
        self.last.update(speed)  # (the progress line shows them)
        self.writer.scalars(position.step, position.epoch, speed, time.perf_counter() - self.started)

    def _save(self, model, engine, position: Position, keep: bool) -> None:
        rngs = distributed.gather(rng_state())  # every rank's noise, so a resume on as many ranks is exact
        if not self.writer.active:
            return
        state = checkpoint_state(self.cfg, self.spec, model, engine, self.ema, self.batches_per_epoch, position)
        if len(rngs) > 1:
            state["rng_ranks"], state["world_size"] = rngs, len(rngs)
        self.writer.checkpoint(state, keep)

    def _visuals(self, model: GenerativeModel, fixed, data: Data, step: int, epoch: int) -> None:
        """The model's visuals of the fixed batch and its held-out scores, drawn with the EMA weights when there
        are some. They must not consume the training RNG, or a resumed run would diverge from a straight one.
        Only the process that writes draws them (rank 0 of a data-parallel job)."""
        if not self.writer.active:
            return
        averaged = self.ema.applied() if self.ema is not None else contextlib.nullcontext()
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []), averaged, \
                torch.no_grad():
            model.eval()
            visuals = model.visuals(fixed)
            scores = model.evaluate(data.evaluation.ordered())
            model.train()
        self.writer.visuals(step, epoch, visuals, model.visual_row_titles())
        for name, plot in scores.items():
            if isinstance(plot, Plot):
                self.writer.plot(step, epoch, name, plot)
        scalars = {k: v for k, v in scores.items() if isinstance(v, float)}
        if "samples" in visuals and "image" in fixed and fixed.size > 1:
            # how spread out the fixed-noise samples are, relative to the real fixed batch: near 0 = collapse
            real = pairwise_spread(fixed["image"])
            scalars["sample_diversity"] = pairwise_spread(visuals["samples"]) / real if real > 0 else float("nan")
        if scalars:
            self.writer.scalars(step, epoch, scalars, time.perf_counter() - self.started)
