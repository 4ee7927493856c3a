"""The first 50 steps' losses of the default run and of every registered model, recorded before a refactor.

`python -m tests.baseline` rewrites this CPU's entry of tests/data/baseline_losses.json from the current tree (run it
only on a commit whose numbers are known good); tests/test_baseline.py checks the tree against the file. The numbers
are kept per CPU kernel family (torch's cpu capability: AVX2, AVX512, ...): a GAN's losses drift apart within a few
steps when another vector width changes the last bits of a reduction.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

FILE = Path(__file__).parent / "data" / "baseline_losses.json"
STEPS = 50
# name -> overrides; every run is 50 steps on its model's smallest offline data, logged at every step
RUNS = {
    "default": [],
    "cgan": ["model=cgan"],
    "acgan": ["model=acgan"],
    "infogan": ["model=infogan"],
    "dcgan_wgan_gp": ["loss=wgan_gp"],
    "vae": ["model=vae"],
    "cvae": ["model=cvae"],
    "vqvae": ["model=vqvae"],
    # the families added after the first record: small widths, on their smallest offline data
    "pix2pix": ["model=pix2pix", "data=edges2fashion", "data.limit=32", "data.test_limit=8", "model.ngf=8",
                "model.ndf=8", "model.d_layers=2", "train.batch_size=8"],
    "cyclegan": ["model=cyclegan", "data=sandal2sneaker", "data.limit=16", "data.test_limit=8", "model.ngf=8",
                 "model.ndf=8", "model.n_blocks=1", "model.d_layers=2", "model.pool_size=4", "train.batch_size=4"],
    "srresnet": ["model=srresnet", "data=sr_photos", "model.n_blocks=2", "model.width=8", "data.size=32"],
    "srgan": ["model=srgan", "data=sr_photos", "model.n_blocks=2", "model.width=8", "data.size=32", "model.ndf=8",
              "model.content=mse", "model.from_scratch=true"],
    "made": ["model=made", "data=digits", "data.size=8"],
    "maf": ["model=maf", "data=digits", "data.size=8"],
    "iaf": ["model=iaf", "data=digits", "data.size=8", "model.layers=2", "model.hidden=64"],
    "realnvp": ["model=realnvp", "data=digits", "data.size=8"],
}
COMMON = [f"train.steps={STEPS}", "train.log_every=1", "train.progress=none", "train.sample_every=1000",
          "train.checkpoint_every=1000", "train.keep_every=0", "device=cpu"]


def losses(overrides: list[str]) -> dict[str, list[float]]:
    """Train in-process and return {scalar: [value at step 1..50]} for every scalar with 'loss' in its name."""
    import torch

    from genlab.app.compose import compose
    from genlab.app.entry import run_training

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the op order of a reduction may depend on the thread count
    try:
        with tempfile.TemporaryDirectory() as run_dir:
            run_training(compose([*COMMON, *overrides]), Path(run_dir))
            records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    finally:
        torch.set_num_threads(threads)  # later tests compare in-process runs with CLI runs
    out: dict[str, list[float]] = {}
    for record in records:
        if record.get("step", 0) < 1:
            continue
        for key, value in record.items():
            if "loss" in key:
                out.setdefault(key, []).append(value)
    return out


def capability() -> str:
    """The CPU kernels torch picks here (AVX2, AVX512, ...): the numbers are recorded per family."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


def main() -> None:
    names = sys.argv[1:] or list(RUNS)
    every = json.loads(FILE.read_text()) if FILE.exists() else {}
    data = every.setdefault(capability(), {})
    for name in names:
        data[name] = losses(RUNS[name])
        print(capability(), name, {k: len(v) for k, v in data[name].items()})
    FILE.write_text(json.dumps(every, indent=1) + "\n")


if __name__ == "__main__":
    main()
