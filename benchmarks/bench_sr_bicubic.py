"""How far are the usual bicubic resizers from MATLAB's imresize, in dB, on the same real photos?

genlab makes LR images with its own port of MATLAB's bicubic imresize (genlab/data/bicubic.py), because
published SR numbers (Set5 28.43 dB for bicubic at 4x, SRResNet 32.05) were made with it. This compares, on the
10 photos scikit-image and scikit-learn ship (each cut to a multiple of 4):

  - LR fidelity: PSNR of each resizer's 8-bit LR image against MATLAB-style LR (higher = closer; inf = equal);
  - the baseline it implies: PSNR-Y of bicubic up-scaling (MATLAB-style) of that LR against the HR photo, the
    number an SR table prints in its bicubic column;
  - the same baseline scored the ways SR code bases differ: torch's or PIL's bicubic up-scaling, Y not rounded
    to 8 bits, no border removed, RGB instead of Y;
  - speed: the time to down-scale a batch of 16 96x96 crops, as a ratio to torch's antialiased bicubic.

With --basicsr PATH (BasicSR's basicsr/utils/matlab_functions.py, from `pip download basicsr --no-deps`), its
imresize, a port its authors checked against MATLAB, is a fourth row: the independent reference.
Usage: python benchmarks/bench_sr_bicubic.py [--basicsr PATH]
"""

import argparse
import importlib.util
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from genlab.data.bicubic import downscale, to_uint8, upscale_bicubic
from genlab.data.superres import DEMO_HELD_OUT, DEMO_TRAIN, SRPhotos, read_hr
from genlab.models.srgan import psnr_y


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.double() - b.double()).pow(2).mean()
    return float("inf") if mse == 0 else float(10 * torch.log10(255.0**2 / mse))


def main():  # noqa: C901  (to be split: issue 24)
    parser = argparse.ArgumentParser()
    parser.add_argument("--basicsr", help="path to BasicSR's basicsr/utils/matlab_functions.py")
    parser.add_argument("--scale", type=int, default=4)
    args = parser.parse_args()
    s = args.scale
    photos = []
    for path in SRPhotos.files(DEMO_TRAIN + DEMO_HELD_OUT):
        hr = read_hr(path, 3)
        photos.append((path.name, hr[:, : hr.shape[1] - hr.shape[1] % s, : hr.shape[2] - hr.shape[2] % s]))

    def pil(hr):
        image = Image.fromarray(hr.permute(1, 2, 0).numpy())
        small = image.resize((hr.shape[2] // s, hr.shape[1] // s), Image.BICUBIC)
        return torch.from_numpy(np.asarray(small).copy()).permute(2, 0, 1)

    resizers = {"matlab (genlab)": lambda hr: downscale(hr, s, "matlab"),
                "torch antialias": lambda hr: downscale(hr, s, "torch"),
                "PIL BICUBIC": pil,
                "torch, no antialias": lambda hr: to_uint8(F.interpolate(hr[None].float(), scale_factor=1 / s,
                                                                         mode="bicubic", align_corners=False)[0])}
    if args.basicsr:
        spec = importlib.util.spec_from_file_location("basicsr_matlab", args.basicsr)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        resizers["BasicSR imresize"] = lambda hr: to_uint8(module.imresize(hr.float() / 255, 1 / s) * 255)

    print(f"{len(photos)} photos, x{s}: LR PSNR against MATLAB-style LR, and the bicubic baseline (PSNR-Y, "
          f"border {s}) it implies")
    print(f"{'resizer':<22}{'LR vs matlab (dB)':>20}{'max |diff| (levels)':>22}{'baseline PSNR-Y (dB)':>23}")
    for name, fn in resizers.items():
        fidelity, worst, baseline = [], 0, []
        for _, hr in photos:
            lr, ref = fn(hr), downscale(hr, s, "matlab")
            fidelity.append(_psnr(lr, ref))
            worst = max(worst, int((lr.int() - ref.int()).abs().max()))
            up = upscale_bicubic(lr[None].double(), s) / 127.5 - 1
            baseline.append(float(psnr_y(up, hr[None].double() / 127.5 - 1, s)))
        finite = [f for f in fidelity if np.isfinite(f)]
        shown = "equal" if not finite else f"{np.mean(finite):.2f}"
        print(f"{name:<22}{shown:>20}{worst:>22}{np.mean(baseline):>23.3f}")

    # the same MATLAB-style LR, scored the ways SR code bases score a bicubic baseline
    from genlab.models.srgan import psnr_rgb, shave, to_levels

    def y_float(levels):  # BT.601 Y without rounding to 8 bits (BasicSR's float path)
        r, g, b = levels.double().unbind(1)
        return (16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255).unsqueeze(1)

    def pil_up(lr):
        image = Image.fromarray(lr.permute(1, 2, 0).numpy())
        big = image.resize((lr.shape[2] * s, lr.shape[1] * s), Image.BICUBIC)
        return torch.from_numpy(np.asarray(big).copy()).permute(2, 0, 1)[None].double() / 127.5 - 1

    protocols = {
        "genlab: MATLAB up, Y 8-bit, border": lambda up, hr: psnr_y(up, hr, s),
        "torch bicubic up (a=-0.75)": None,
        "PIL bicubic up": None,
        "Y not rounded to 8 bits": lambda up, hr: 10 * torch.log10(255.0**2 / (
            shave(y_float(to_levels(up)), s) - shave(y_float(to_levels(hr)), s)).pow(2).mean()),
        "no border removed": lambda up, hr: psnr_y(up, hr, 0),
        "RGB instead of Y": lambda up, hr: psnr_rgb(up, hr, s),
    }
    print()
    print(f"the bicubic baseline on MATLAB-style LR, scored {len(protocols)} ways (mean PSNR in dB)")
    for name, score in protocols.items():
        values = []
        for _, hr in photos:
            lr = downscale(hr, s, "matlab")
            target = hr[None].double() / 127.5 - 1
            if name.startswith("torch"):
                up = F.interpolate(lr[None].double() / 127.5 - 1, scale_factor=s, mode="bicubic", align_corners=False)
                values.append(float(psnr_y(up, target, s)))
            elif name.startswith("PIL"):
                values.append(float(psnr_y(pil_up(lr), target, s)))
            else:
                up = upscale_bicubic(lr[None].double(), s) / 127.5 - 1
                values.append(float(score(up, target)))
        print(f"  {name:<38}{np.mean(values):>8.3f}")

    crops = torch.randint(0, 256, (16, 3, 96, 96), dtype=torch.uint8)

    def timed(fn, repeats=20):
        fn()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - start) / repeats

    reference = timed(lambda: downscale(crops, s, "torch"))
    ours = timed(lambda: downscale(crops, s, "matlab"))
    print(f"down-scaling 16 crops of 96x96: matlab {ours * 1e3:.2f} ms, torch antialias {reference * 1e3:.2f} ms, "
          f"ratio {ours / reference:.2f}")


if __name__ == "__main__":
    main()
