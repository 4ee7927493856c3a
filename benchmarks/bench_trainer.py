"""What does genlab's trainer cost over a hand-written DCGAN loop?

Both train the same DCGAN (digits, 32x32, ngf=ndf=32, batch 64) for the same number of steps in the same
process. The reference is the PyTorch-example loop: D on real, D on fake, G step, nothing logged. genlab's
run includes everything it does for the user: averaged scalars to TensorBoard and metrics.jsonl, a sample grid
and a checkpoint every epoch, curves.png. Prints seconds per step for each and their ratio.
Usage: python benchmarks/bench_trainer.py [--steps 440] [--device cpu]
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch
from train_throughput import gan_step  # benchmarks/ is on sys.path when this file runs

from genlab.app.compose import compose
from genlab.app.entry import run_training
from genlab.data import build_data
from genlab.models.base import init_dcgan_weights
from genlab.models.gan import DCGANDiscriminator, DCGANGenerator


def reference_loop(steps: int, device: torch.device) -> float:
    start = time.perf_counter()  # like genlab's timing, this includes building the data and the nets
    torch.manual_seed(0)
    cfg = compose(["data=digits"]).data
    data = build_data(cfg, 64, 0, device)
    g, d = DCGANGenerator(100, 32, 1, 32).to(device), DCGANDiscriminator(32, 1, 32).to(device)
    g.apply(init_dcgan_weights)
    d.apply(init_dcgan_weights)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    step, epoch = 0, 0
    while step < steps:
        for batch in data.train.epoch(epoch):
            gan_step(g, d, opt_g, opt_d, batch["image"], 100, device)  # the example's D real, D fake, G step
            step += 1
            if step == steps:
                break
        epoch += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def genlab_run(steps: int, device: torch.device) -> float:
    with tempfile.TemporaryDirectory() as folder:
        cfg = compose([f"train.steps={steps}", "train.progress=none", f"device={device.type}"])
        start = time.perf_counter()
        run_training(cfg, Path(folder))
        return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=440)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    reference_loop(20, device)  # warm-up: thread pools, allocator
    ref = reference_loop(args.steps, device)
    ours = genlab_run(args.steps, device)
    print(f"DCGAN on digits 32x32, ngf=ndf=32, batch 64, {args.steps} steps on {device}")
    print(f"  hand-written loop: {ref:.1f} s ({1000 * ref / args.steps:.1f} ms/step)")
    print(f"  genlab train:      {ours:.1f} s ({1000 * ours / args.steps:.1f} ms/step), with logging, "
          f"{args.steps // 22} sample grids, checkpoints and curves")
    print(f"  ratio (genlab / hand-written): {ours / ref:.2f}")


if __name__ == "__main__":
    main()
