"""`genlab sample`: new samples from a run's checkpoint, as a grid, a folder of PNGs or a CSV of points."""

from __future__ import annotations

import torch

from genlab.app.commands.bounds import GRID_MAX
from genlab.app.commands.common import check_setting_names, device_for, output_area, use_sampler_settings
from genlab.core import files
from genlab.core.errors import GenlabError
from genlab.core.plots import image_grid
from genlab.models.capabilities import Samples, refusal
from genlab.train.runs import generate, load_run, parse_labels, write_png_folder


def run(run, n, labels, seed, out, overwrite, device, ctx) -> None:
    device = device_for(device)
    check_setting_names(ctx)  # a mistyped option of the command: one line before the run is read
    target = load_run(run, device)
    if not isinstance(target.model, Samples):
        raise GenlabError(refusal(target.model, Samples, target.cfg.model.name))
    settings = use_sampler_settings(ctx, target, "sample")
    wanted = parse_labels(labels, target.model)
    out = output_area(out, target, overwrite)
    # the default file name carries the sampler settings given: --steps 50 --eta 0 -> ..._steps50_eta0
    name = f"samples_n{n}_seed{seed}" + "".join(f"_{k}{v:g}" if isinstance(v, float) else f"_{k}{v}"
                                                for k, v in sorted(settings.items()))
    if target.spec.kind == "vectors":  # points (a flow on toy2d): a CSV file, one point a line
        _write_points(target, n, seed, wanted, out, name)
        return
    if out is None:
        out = target.path / "generated" / f"{name}.png"
    if out.suffix.lower() == ".png":
        _write_grid(target, n, seed, wanted, out)
        return
    if out.suffix:
        raise GenlabError(f"--out must be a .png file or a folder, got {out}")
    write_png_folder(generate(target.model, n, seed, wanted), out, total=n)
    print(f"{n} samples from {target.name}: wrote {n} PNG files to {out}")


def _write_points(target, n: int, seed: int, wanted, out, name: str) -> None:
    out = out if out is not None else target.path / "generated" / f"{name}.csv"
    if out.suffix.lower() != ".csv":
        raise GenlabError(f"{target.cfg.model.name} on {target.cfg.data.name} draws points, not images: "
                          "pass -o FILE.csv")
    files.check_target(out)
    points = torch.cat([part for part, _ in generate(target.model, n, seed, wanted)]).float().cpu()
    header = ",".join(f"x{i + 1}" for i in range(points.shape[1]))

    def write_csv(tmp):
        with open(tmp, "w") as f:
            f.write(header + "\n")
            f.writelines(",".join(f"{v:.6g}" for v in row) + "\n" for row in points.tolist())

    try:
        files.write(out, write_csv)
    except OSError as err:
        raise GenlabError(f"cannot write {out} ({err.strerror or err}); pass -o SOMEWHERE/WRITABLE.csv") from None
    print(f"{n} points from {target.name}: wrote {out}")


def _write_grid(target, n: int, seed: int, wanted, out) -> None:
    if n > GRID_MAX:
        raise GenlabError(f"-n {n}: one PNG grid holds at most {GRID_MAX:,} samples; for more, write one PNG per "
                          f"sample into a folder: -o FOLDER/")
    files.check_target(out)
    images = torch.cat([part for part, _ in generate(target.model, n, seed, wanted)])
    nrow = 8
    if wanted is not None and n % len(wanted) == 0 and len(wanted) > 1:
        nrow = len(wanted) * max(1, 8 // len(wanted))  # columns cycle through the labels
    grid = image_grid(images, nrow=nrow)
    try:
        files.write(out, lambda tmp: grid.save(tmp, format="PNG"))
    except OSError as err:
        raise GenlabError(f"cannot write {out} ({err.strerror or err}); pass -o SOMEWHERE/WRITABLE.png") from None
    print(f"{n} samples from {target.name}: wrote {out}")
