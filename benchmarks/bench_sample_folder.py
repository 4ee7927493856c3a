"""How fast `genlab sample -o DIR` writes one PNG per sample, against a plain loop of PIL saves.

    python benchmarks/bench_sample_folder.py [N] [SIZE]

Both write the same N uint8 images (SIZE x SIZE, 3 channels) into fresh folders; printed: images per second
of each and the ratio (genlab / plain loop). Run on an otherwise idle machine; it is disk-bound.
"""

import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from genlab.train.runs import write_png_folder


def main(n: int = 10000, size: int = 32) -> None:
    generator = torch.Generator().manual_seed(0)
    # smooth images, like samples (random noise would not compress and would measure zlib's worst case)
    low = torch.rand(n, 3, max(1, size // 4), max(1, size // 4), generator=generator) * 2 - 1
    images = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    root = Path(tempfile.mkdtemp())
    try:
        start = time.perf_counter()
        pixels = images.add(1).mul(127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        (root / "plain").mkdir()
        for i, array in enumerate(pixels):
            Image.fromarray(array).save(root / "plain" / f"{i:06d}.png")
        plain = time.perf_counter() - start

        start = time.perf_counter()
        write_png_folder(((images[i : i + 500], None) for i in range(0, n, 500)), root / "genlab")
        ours = time.perf_counter() - start
        assert len(list((root / "genlab").iterdir())) == n
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{n} PNGs of {size}x{size}: plain loop {n / plain:,.0f} img/s, genlab {n / ours:,.0f} img/s, "
          f"ratio {plain / ours:.2f}x")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
