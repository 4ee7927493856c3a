"""How much faster is feeding a small dataset from one on-device uint8 tensor than a DataLoader?

Runs both in the same process on the same data (Fashion-MNIST if installed, else a random 60,000 x 1 x 32 x 32
uint8 stack) and prints the ratio. The reference is the textbook loop: TensorDataset of float images in
[-1, 1] + DataLoader(shuffle=True, batch_size=64). Usage: python benchmarks/bench_batches.py [--device cuda]
"""

import argparse
import time

import torch

from genlab.data.base import TensorBatches


def timed(fn, repeats=3):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    device = torch.device(args.device)
    images = torch.randint(0, 256, (60_000, 1, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (60_000,))

    ours = TensorBatches(images, labels, args.batch_size, seed=0, device=device)

    def genlab_epoch():
        for x, y in ours.epoch(0):
            x.sum()
        if device.type == "cuda":
            torch.cuda.synchronize()

    dataset = torch.utils.data.TensorDataset(images.float().div(127.5).sub(1), labels)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                         pin_memory=device.type == "cuda")

    def reference_epoch():
        for x, y in loader:
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            x.sum()
        if device.type == "cuda":
            torch.cuda.synchronize()

    ref = timed(reference_epoch)
    mine = timed(genlab_epoch)
    n = len(ours) * args.batch_size
    print(f"one epoch of {n} images, batch {args.batch_size}, on {device}")
    print(f"  DataLoader(TensorDataset): {ref:.3f} s  ({n / ref:,.0f} img/s)")
    print(f"  genlab TensorBatches:      {mine:.3f} s  ({n / mine:,.0f} img/s)")
    print(f"  ratio (reference / genlab): {ref / mine:.1f}x")


if __name__ == "__main__":
    main()
