"""MAF against IAF: the time of a training step and of a sampling batch, at the same size, in one process.

Seed 001 measured a MAF's sampling batch at about 854 training batches (MNIST-sized, 100 epochs x 73 batches
in 1199.7 s against 140.4 s of sampling). The reason is the direction each flow computes in one pass:

    MAF   density x -> z one MADE pass per layer (training is fast), sampling z -> x D passes (slow)
    IAF   sampling z -> x one pass (fast), density x -> z D passes (training by maximum likelihood is slow)

Both models are genlab's (genlab/models/flows.py) with the same layers, widths and batch; images of D pixels
(random 8-bit values, dequantised and through the logit, as in training). Prints the four times and the two
ratios sampling / training step.
Usage: python benchmarks/bench_flow_timing.py [--side 28] [--layers 5] [--hidden 512] [--batch 100] [--device cpu]
"""

import argparse
import time

import torch
from omegaconf import OmegaConf

from genlab.data import DataSpec
from genlab.models.flows import IAF, MAF
from genlab.train.loop import Engine


def build(model_class, args, spec, device):
    cfg = OmegaConf.create({"name": model_class.__name__.lower(), "layers": args.layers, "hidden": args.hidden,
                            "hidden_layers": 1, "order": "natural", "order_seed": 0, "log_scale_clamp": 5.0,
                            "logit_lambda": 1e-6})
    model = model_class(cfg, spec).to(device)
    model.configure_optimizers(OmegaConf.create({"name": "adam", "lr": 1e-4, "betas": None, "weight_decay": 0.0}))
    model.engine = Engine(device, "none", model.optimizers)
    return model


def seconds(fn, repeats: int, device) -> float:
    fn()  # warm-up (allocator, kernels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=28, help="image side: D = side^2 (28: MNIST, the report's)")
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    spec = DataSpec("bench", 1, args.side, 0)
    batch = {"image": torch.randint(0, 256, (args.batch, 1, args.side, args.side), device=device).float() / 127.5 - 1}
    dim = args.side**2
    print(f"D = {dim} ({args.side}x{args.side}), {args.layers} MADE layers of {args.hidden} units, batch {args.batch}, "
          f"{device}, torch {torch.__version__}")
    times = {}
    for model_class in (MAF, IAF):
        model = build(model_class, args, spec, device)
        generator = torch.Generator().manual_seed(0)
        train = seconds(lambda model=model: model.training_step(batch, 0), args.repeats, device)
        sample = seconds(lambda model=model, generator=generator: model.sample(args.batch, generator=generator),
                         args.repeats, device)
        times[model_class.__name__] = (train, sample)
        print(f"{model_class.__name__}: training step {train * 1e3:10.1f} ms   sampling batch {sample * 1e3:10.1f} ms   "
              f"sampling / training = {sample / train:8.3g}")
    (maf_train, maf_sample), (iaf_train, iaf_sample) = times["MAF"], times["IAF"]
    print(f"ratio MAF sampling / MAF training step: {maf_sample / maf_train:.1f}  (seed 001 measured ~854)")
    print(f"ratio IAF sampling / IAF training step: {iaf_sample / iaf_train:.3g}")
    print(f"IAF training step / MAF training step: {iaf_train / maf_train:.1f}; "
          f"MAF sampling / IAF sampling: {maf_sample / iaf_sample:.1f}")


if __name__ == "__main__":
    main()
