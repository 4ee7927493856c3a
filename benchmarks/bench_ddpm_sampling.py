"""DDPM sampling time per image at 1000, 250, 50 and 10 DDIM steps, against a reference loop in the same process.

The model is genlab's DDPM as the Fashion-MNIST preset builds it (configs/tuned/ddpm_fashion_mnist.yaml: a U-Net of
16 channels, multipliers 1,2,4, attention at 8x8, 32 px), or the paper's CIFAR-10 net with --cifar10; weights are
random (the time does not depend on them). For each step count it times `model.sample(n)` through the sampler
(`use_sampler(steps=S)`), and a reference loop of S plain U-Net forward passes on the same batch with the DDIM
update written inline; the ratio genlab / reference shows what the sampler adds around the network.
Usage: python benchmarks/bench_ddpm_sampling.py [--n 16] [--steps 1000,250,50,10] [--cifar10] [--threads 2]
"""

import argparse
import time

import torch

from genlab.app.compose import compose
from genlab.data import DataSpec
from genlab.models import build_model


def reference(model, n: int, steps: int) -> torch.Tensor:
    """DDIM (eta 0) written as the plain loop a user would write around the same network."""
    diffusion = model.diffusion
    visited = diffusion.ddim_steps(steps).tolist()
    x = torch.randn(n, *model.shape)
    with torch.no_grad():
        for k in reversed(range(len(visited))):
            i = visited[k]
            ab = float(diffusion.alpha_bar[i])
            ab_next = float(diffusion.alpha_bar[visited[k - 1]]) if k else 1.0
            eps = model.unet(x, torch.full((n,), i))
            x0 = ((x - (1 - ab) ** 0.5 * eps) / ab**0.5).clamp(-1, 1)
            eps = (x - ab**0.5 * x0) / (1 - ab) ** 0.5
            x = ab_next**0.5 * x0 + (1 - ab_next) ** 0.5 * eps
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--steps", default="1000,250,50,10")
    parser.add_argument("--cifar10", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = compose(["experiment=ddpm_cifar10"] if args.cifar10 else ["model=ddpm", "data=fashion_mnist"])
    spec = DataSpec(name=cfg.data.name, size=cfg.data.size, channels=3 if args.cifar10 else 1, n_classes=10)
    model = build_model(cfg, spec).eval()
    print(f"{cfg.data.name} {cfg.data.size} px, U-Net of {sum(p.numel() for p in model.unet.parameters()):,} "
          f"parameters, {args.threads} threads, {args.n} images a batch")
    print(f"{'steps':>6} {'genlab s/image':>15} {'reference s/image':>18} {'ratio':>6}")
    for steps in [int(s) for s in args.steps.split(",")]:
        model.use_sampler(steps=steps, eta=0.0)
        start = time.perf_counter()
        model.sample(args.n, generator=torch.Generator().manual_seed(0))
        ours = (time.perf_counter() - start) / args.n
        start = time.perf_counter()
        reference(model, args.n, steps)
        theirs = (time.perf_counter() - start) / args.n
        print(f"{steps:>6} {ours:>15.4f} {theirs:>18.4f} {ours / theirs:>6.2f}")


if __name__ == "__main__":
    main()
