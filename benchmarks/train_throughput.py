"""Is genlab's training step slower than the loop a user would write? Images per second, side by side.

Three ways to train the same networks on the same images, interleaved in one process, several repetitions:

  genlab     genlab's Trainer as `genlab train` runs it: its data feed, the Engine (mixed precision, gradient
             norms), learning rates, averaged scalars to TensorBoard and metrics.jsonl every 10 steps. Timed
             from the moment the loop asks for batch W to the moment it asks for batch W + N, so N whole steps
             (each with the wait for its batch and the loop's bookkeeping), without start-up, the sample grids
             and the checkpoint, which a run does once.
  canonical  the loop of the PyTorch examples (examples/dcgan, examples/vae): torchvision's FashionMNIST with its
             transforms (Resize, ToTensor, Normalize) through a DataLoader (batch 64, shuffled, 2 workers as the
             example's --workers default), D real step, D fake step, G step; nothing logged.
  bare       the same loop on genlab's own data feed (uint8 images held resized in memory, batched by index):
             what genlab's bookkeeping costs beyond the feed.

Models: DCGAN (ngf = ndf = 64, nz = 100: the example's networks, genlab's classes) at 32 and 64 px, and genlab's
convolutional VAE at 32 px. Data: Fashion-MNIST from Debian's dataset-fashion-mnist (the 60,000 training
images). Peak memory: each one run alone in a fresh process (its data built there too), the largest resident
set of that process plus its DataLoader workers (CPU), or torch.cuda.max_memory_allocated (CUDA). With --fast on CUDA, genlab also runs with bf16 autocast,
channels_last and torch.compile (the canonical loop stays as the example writes it).

Usage: python benchmarks/train_throughput.py [--device cpu|cuda] [--reps 3] [--only dcgan32,dcgan64,vae32] [--fast]
       [--genlab 'device.compile=true ...'] (more overrides for genlab's run only) [--scale 2] (more steps)
       [--quick] (genlab against the bare loop only, no memory runs: to see what a switch buys)
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from genlab.app.compose import compose
from genlab.data import build_data
from genlab.models import build_model
from genlab.train.loop import Trainer

FASHION = Path("/usr/share/datasets/fashion-mnist")
BATCH = 64


# ---- memory ---------------------------------------------------------------------------------------------------
def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


class PeakMemory:
    """The largest resident set of this process plus its children (DataLoader workers), sampled every 50 ms;
    on CUDA the peak of allocated device memory."""

    def __init__(self, device: torch.device):
        self.device, self.peak, self._stop = device, 0, threading.Event()

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self):
        me = os.getpid()
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss(me) + sum(_rss(c) for c in _children(me)))
            time.sleep(0.05)

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join()
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---- the canonical feed: torchvision's dataset and transforms through a DataLoader ------------------------------
def torchvision_root() -> Path:
    """FashionMNIST/raw/ as torchvision wants it (the IDX files unzipped), from Debian's copy, once."""
    root = Path(tempfile.gettempdir()) / "genlab-bench-fashion"
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for gz in FASHION.glob("*-ubyte.gz"):
        target = raw / gz.name[:-3]
        if not target.is_file():
            with gzip.open(gz) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return root


def canonical_loader(size: int, normalise: bool) -> torch.utils.data.DataLoader:
    import torchvision
    from torchvision import transforms

    steps = [transforms.Resize(size), transforms.ToTensor()]
    if normalise:  # the DCGAN example: [-1, 1]; the VAE example feeds [0, 1]
        steps.append(transforms.Normalize((0.5,), (0.5,)))
    dataset = torchvision.datasets.FashionMNIST(str(torchvision_root()), train=True, download=False,
                                                transform=transforms.Compose(steps))
    return torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=2, drop_last=True)


# ---- the loops ------------------------------------------------------------------------------------------------
def gan_step(g, d, opt_g, opt_d, real, nz, device):
    fake = g(torch.randn(real.shape[0], nz, device=device))
    d_real, d_fake = d(real), d(fake.detach())
    loss_d = F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) + \
        F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    out = d(fake)
    loss_g = F.binary_cross_entropy_with_logits(out, torch.ones_like(out))
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()


def vae_step(enc, dec, opt, x01):
    mu, logvar = enc(x01 * 2 - 1)
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
    logits = dec(z)
    recon = F.binary_cross_entropy_with_logits(logits, x01, reduction="sum") / len(x01)
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / len(x01)
    opt.zero_grad()
    (recon + kl).backward()
    opt.step()


def plain_networks(kind: str, size: int, device):
    """Fresh networks of genlab's classes (DCGAN-initialised GAN nets; the VAE's encoder and decoder) and Adam."""
    from genlab.data import DataSpec

    spec = DataSpec("fashion_mnist", 1, size, 10)
    model = build_model(compose([f"model={kind}", "data=fashion_mnist", f"data.size={size}"]), spec).to(device)
    nets = list(model.networks().values()) if kind == "dcgan" else [model.encoder, model.decoder]
    return model, nets


def timed_loop(kind, size, device, batches, warm, steps) -> float:
    """Seconds for `steps` steps after `warm` warm-up steps, the batches drawn from `batches` (an iterator
    factory per epoch), each step's wait for its batch included."""
    model, nets = plain_networks(kind, size, device)
    if kind == "dcgan":
        g, d = nets
        opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
        step = lambda x: gan_step(g, d, opt_g, opt_d, x, model.nz, device)
    else:
        enc, dec = nets
        opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=1e-3)
        step = lambda x: vae_step(enc, dec, opt, x)
    done, epoch, start = 0, 0, None
    while done < warm + steps:
        for x in batches(epoch):
            if done == warm:
                _sync(device)
                start = time.perf_counter()
            step(x.to(device, non_blocking=True))
            done += 1
            if done == warm + steps:
                break
        epoch += 1
    _sync(device)
    return time.perf_counter() - start


def canonical(kind, size, device, warm, steps) -> float:
    loader = canonical_loader(size, normalise=kind == "dcgan")
    return timed_loop(kind, size, device, lambda epoch: (x for x, _ in loader), warm, steps)


def bare(kind, size, device, warm, steps, data) -> float:
    if kind == "dcgan":
        feed = lambda epoch: (b["image"] for b in data.train.epoch(epoch))
    else:
        feed = lambda epoch: ((b["image"] + 1) / 2 for b in data.train.epoch(epoch))
    return timed_loop(kind, size, device, feed, warm, steps)


class Stopwatch:
    """genlab's training feed, unchanged, noting when the loop asks for batch `start` and batch `end`."""

    def __init__(self, source, start: int, end: int, device):
        self.source, self.start, self.end, self.device = source, start, end, device
        self.marks = {}

    def __getattr__(self, name):
        return getattr(self.source, name)

    def __len__(self):
        return len(self.source)

    def epoch(self, epoch: int, start_batch: int = 0):
        index = epoch * len(self.source) + start_batch
        for batch in self.source.epoch(epoch, start_batch):
            if index in (self.start, self.end):
                _sync(self.device)
                self.marks[index] = time.perf_counter()
            yield batch
            index += 1


def genlab_fit(kind, size, device, warm, steps, data, switches) -> float:
    from genlab.data import Data

    cfg = compose([f"model={kind}", "data=fashion_mnist", f"data.size={size}", f"train.steps={warm + steps + 1}",
                   "train.progress=none", "train.log_every=10", f"train.batch_size={BATCH}",
                   f"device={device.type}", *switches])
    model = build_model(cfg, data.spec)
    watch = Stopwatch(data.train, warm, warm + steps, device)
    with tempfile.TemporaryDirectory() as folder:
        Trainer(cfg, Path(folder), device).fit(model, Data(data.spec, watch, data.test))
    return watch.marks[warm + steps] - watch.marks[warm]


# ---- the table ------------------------------------------------------------------------------------------------
CASES = {"dcgan32": ("dcgan", 32, 60), "dcgan64": ("dcgan", 64, 20), "vae32": ("vae", 32, 100)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", default=",".join(CASES))
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the steps timed (more on a GPU)")
    parser.add_argument("--fast", action="store_true", help="genlab with bf16, channels_last and compile (CUDA)")
    parser.add_argument("--genlab", default="", help="more overrides for genlab's run, e.g. 'device.compile=true'")
    parser.add_argument("--quick", action="store_true", help="genlab against the bare loop only, no memory runs "
                        "(to see what a switch in --genlab buys)")
    parser.add_argument("--alone", choices=("genlab", "canonical", "bare"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not FASHION.is_dir():
        raise SystemExit("needs Fashion-MNIST: apt-get install dataset-fashion-mnist")
    device = torch.device(args.device)
    switches = ["device.amp=bf16", "device.channels_last=true", "device.compile=true"] if args.fast else []
    switches += args.genlab.split()
    if not args.alone:
        print(f"{device} ({torch.get_num_threads()} torch threads), batch {BATCH}, median of {args.reps} "
              f"interleaved repetitions", flush=True)
    logging_off()
    for name in args.only.split(","):
        kind, size, steps = CASES[name]
        steps, warm = max(5, int(steps * args.scale)), 3
        cfg = compose([f"model={kind}", "data=fashion_mnist", f"data.size={size}"])
        data = build_data(cfg.data, BATCH, 0, device)  # genlab's feed: built once, as a run builds it at start
        case = (kind, size, device, warm, steps)  # bound now: the lambdas run inside this iteration
        runs = {"genlab": lambda case=case, data=data: genlab_fit(*case, data, switches),
                "canonical": lambda case=case: canonical(*case),
                "bare": lambda case=case, data=data: bare(*case, data)}
        if args.alone:  # one of them alone in this fresh process: its peak memory
            seconds, peak = timed(runs[args.alone], device)
            print(f"PEAK {peak}")
            return
        if args.quick:
            runs.pop("canonical")
        rates = {k: [] for k in runs}
        timed(runs["bare"], device)  # warm-up: thread pools, the allocator, cuDNN's choices
        for rep in range(args.reps):
            order = list(runs)[rep % len(runs):] + list(runs)[: rep % len(runs)]  # a different one first each time
            for who in order:
                seconds, _ = timed(runs[who], device)
                rates[who].append(steps * BATCH / seconds)
        peaks = {who: 0 if args.quick else alone_peak(args, name, who) for who in runs}
        med = {k: statistics.median(v) for k, v in rates.items()}
        spread = {k: (min(v), max(v)) for k, v in rates.items()}
        print(f"{kind} {size}px, {steps} steps timed:")
        for who in runs:
            print(f"  {who:9s} {med[who]:7.1f} img/s  (min {spread[who][0]:.1f}, max {spread[who][1]:.1f})"
                  + (f"  peak {peaks[who] / 2**30:.2f} GiB" if peaks[who] else ""))
        against = f"genlab / canonical: {med['genlab'] / med['canonical']:.3f}   " if "canonical" in med else ""
        print(f"  {against}genlab / bare: {med['genlab'] / med['bare']:.3f}"
              + (f"   (genlab with {' '.join(switches)})" if switches else ""), flush=True)


def alone_peak(args, case: str, who: str) -> int:
    import subprocess
    import sys

    command = [sys.executable, __file__, "--device", args.device, "--only", case, "--alone", who, "--scale", "0.3"]
    if args.fast:
        command.append("--fast")
    if args.genlab:
        command += ["--genlab", args.genlab]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return int(next(line for line in out.splitlines() if line.startswith("PEAK")).split()[1])


def timed(run, device):
    with PeakMemory(device) as memory:
        seconds = run()
    return seconds, memory.peak


def logging_off():
    import logging

    logging.getLogger("genlab").setLevel(logging.WARNING)


if __name__ == "__main__":
    main()
