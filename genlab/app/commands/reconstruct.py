"""`genlab reconstruct`: inputs beside an autoencoder run's reconstructions."""

from __future__ import annotations

from pathlib import Path

from genlab.app.commands.common import output_area
from genlab.core.errors import GenlabError
from genlab.core.files import atomic_write, check_target
from genlab.core.imaging import psnr_of_mse
from genlab.core.plots import image_grid, pair_rows, titled_rows
from genlab.models.capabilities import Reconstructs
from genlab.train.runs import is_run, load_run, read_images


def run(run, images, n, out, label, seed, overwrite) -> None:
    import torch

    target = load_run(run)
    model = target.model
    out = output_area(out, target, overwrite)
    if out is not None:
        if out.suffix.lower() != ".png":
            raise GenlabError(f"--out must name a .png file, got {out}")
        check_target(out)
    if not isinstance(model, Reconstructs):
        raise GenlabError(f"{run} is a {target.cfg.model.name} run, which does not reconstruct images: "
                          "pass a vae, cvae or vqvae run")
    x, name = read_images(list(images), target.spec.channels, target.spec.size, n, seed, label)
    labels = None
    if label is not None and not model.label_values and not any(is_run(Path(p).expanduser()) for p in images):
        raise GenlabError(f"--label: {run} is an unconditional {target.cfg.model.name} run and no IMAGES are runs "
                          "to draw that class; drop --label (it conditions a cvae run or a conditional run's samples)")
    if target.spec.n_classes:
        labels = torch.full((len(x),), 0 if label is None else label, dtype=torch.long)
        if not 0 <= int(labels[0]) < target.spec.n_classes:
            raise GenlabError(f"--label must be a class number from 0 to {target.spec.n_classes - 1}, got {label}")
    recon = model.reconstruct(x, labels)
    mse = float((recon.float() - x).pow(2).mean())

    psnr = float(psnr_of_mse(mse, peak=2.0))  # [-1, 1] pixels: peak-to-peak 2
    row = min(8, len(x))
    pairs = pair_rows(x, recon.float(), row)
    grid = titled_rows(image_grid(pairs, nrow=row), ["input", "reconstruction"] * (len(pairs) // (2 * row)))
    path = out if out is not None else target.path / "reconstructions" / f"{name[:120]}.png"
    try:
        atomic_write(path, lambda tmp: grid.save(tmp, format="PNG"))
    except OSError as err:
        raise GenlabError(f"cannot write {path} ({err.strerror or err}); pass --out SOMEWHERE/WRITABLE.png") from None
    print(f"{len(x)} images ({name}) through {target.name}: MSE {mse:.4f} on [-1, 1] pixels, PSNR {psnr:.1f} dB")
    print(f"wrote {path}")
