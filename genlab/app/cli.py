"""The `genlab` command. Every subcommand is thin: it parses, checks, and hands over."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer
import typer.core

from genlab.app.completion import complete_run, complete_run_or_sweep
from genlab.core.errors import GenlabError, interrupt_exit_code, raise_interrupted

app = typer.Typer(
    name="genlab",
    help="Train, sweep and report deep generative models from one line of Hydra overrides.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion: bash, zsh, fish (genlab/completion.py)
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Look at the composed configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


class TrainCommand(typer.core.TyperCommand):
    """`genlab train`: its words are Hydra's, so completing them is genlab's (overrides, keys, values, flags)."""

    def shell_complete(self, ctx, incomplete):
        from genlab.app.completion import complete_train

        return complete_train(ctx, incomplete)


@app.command(context_settings=PASS_THROUGH, cls=TrainCommand)
def train(ctx: typer.Context) -> None:  # noqa: C901  (to be split: issue 24)
    """Train a model. Everything after `train` goes to Hydra: overrides, `-m` for sweeps, `--cfg job`.

    Examples:

    * `genlab train` : DCGAN on scikit-learn's digits, a few minutes on a laptop CPU

    * `genlab train model=vae model.latent_dim=2 train.epochs=40`

    * `genlab train model=dcgan data=celeba train.batch_size=128 device=cuda`

    * `genlab train -m optim.lr=1e-4,2e-4 train.epochs=5` : a sweep, one job folder per value

    * `genlab train train.resume=outputs/dcgan_digits/2026-01-01_12-00-00 train.epochs=60` : continue a run

    * `genlab train --nproc 2 model=dcgan data=celeba` : one run on 2 processes (data-parallel; one per GPU, or
      gloo on the CPU); `torchrun --nproc-per-node 8 -m genlab train ...` for several machines

    Runs go to `outputs/<model>_<data>/<time>/` (sweeps: `outputs/multirun/<time>/<job>/`).
    `genlab list` shows every option; `genlab config show ...` the resolved config;
    `genlab train --hydra-help` Hydra's own flags.
    """
    from genlab.app import compose
    from genlab.core import distributed
    from genlab.train import rundir

    nproc, args = _take_nproc(list(ctx.args))
    if nproc > 1 and distributed.world_size() > 1:
        raise GenlabError("--nproc starts its own processes; under torchrun leave it out (torchrun's "
                          "--nproc-per-node says how many)")
    distributed.PLANNED = nproc
    line = compose.check_command_line(args)
    if "--hydra-help" in line.flags:
        # Hydra composes this help without genlab's root config: an override of genlab's groups has nothing to
        # change there (and would be Hydra's traceback), and genlab's help template is asked for here
        line.overrides = [o for o in line.overrides if o.startswith("hydra")] + ["hydra/hydra_help=genlab"]
    if (nproc > 1 or distributed.world_size() > 1) and line.multirun:
        raise GenlabError("a data-parallel run is one job on several processes; for a sweep (-m) run each job as "
                          "its own `genlab train --nproc N ...` (or torchrun line)")
    if not line.informational:
        from genlab.app import summary

        # once: by `--nproc` before it starts the ranks (which run with HELD_ENV set), else by rank 0
        if distributed.rank() == 0 and not os.environ.get(distributed.HELD_ENV) and not summary.quiet() \
                and line.first is not None:
            try:
                summary.print_start(line.first, line, line.swept)
            except Exception as err:  # noqa: BLE001  (a courtesy table: it never stops a run)
                print(f"(genlab could not list the changed values: "
                      f"{(str(err).splitlines() or [type(err).__name__])[0][:120]})")
        key = "hydra.sweep.dir" if line.multirun else "hydra.run.dir"
        if distributed.world_size() > 1:  # a rank of a data-parallel job (torchrun, or --nproc below)
            distributed.init()
            held = os.environ.get(distributed.HELD_ENV)
            # the folder is decided once: by `--nproc` before it started the ranks, else by rank 0 for all
            folder = held or distributed.agree_on_folder(
                lambda: rundir.claim(line.out_dir, line.timestamped, line.resume, sweep=line.multirun,
                                     log_name=line.log_name))
            if distributed.rank() > 0:  # rank 0 writes .hydra/ and train.log
                line.overrides += ["hydra.output_subdir=null", "hydra/job_logging=genlab_rank"]
        else:
            # make the run folder before Hydra does: unique, and genlab knows what in it is its own
            folder = rundir.claim(line.out_dir, line.timestamped, line.resume, sweep=line.multirun,
                                  log_name=line.log_name)
        line.overrides = [o for o in line.overrides if not o.startswith(f"{key}=")] + [f"{key}={_quote(folder)}"]
        if nproc > 1:
            code = distributed.spawn(nproc, line.hydra_argv(), folder)
            if code:
                rundir.remove_claimed()
            raise SystemExit(code)
    compose.LAUNCHED = line
    from genlab.app.entry import train as hydra_train

    sys.argv = ["genlab train", *line.hydra_argv()]
    try:
        hydra_train()
        if line.multirun and not line.informational and distributed.rank() == 0:
            from genlab.app import summary

            if not summary.quiet():
                print("next:\n" + "\n".join(f"  {c}" for c in summary.next_for_sweep(Path(folder))))
    except SystemExit as done:
        if done.code not in (0, None):  # Hydra failed (its own message is printed): leave no empty folder
            rundir.remove_claimed()
        raise
    finally:
        distributed.close()  # a data-parallel rank leaves its process group


def _take_nproc(args: list[str]) -> tuple[int, list[str]]:
    """`--nproc N` (or `--nproc=N`) out of the arguments; 1 where it is not given."""
    out, nproc, i = [], 1, 0
    while i < len(args):
        arg = args[i]
        if arg == "--nproc" or arg.startswith("--nproc="):
            value = arg.partition("=")[2] if "=" in arg else (args[i + 1] if i + 1 < len(args) else "")
            i += 1 if "=" in arg else 2
            if not value.isdigit() or int(value) < 1 or len(value) > 6:
                raise GenlabError(f"--nproc takes a number of processes, e.g. --nproc 2; got {value!r}")
            nproc = int(value)
            most = _process_limit()
            if nproc > most:
                raise GenlabError(f"--nproc {nproc}: at most {most} processes on this machine (two per CPU core, or "
                                  "one per GPU); for more, spread the run over machines with torchrun (docs/scale.md)")
            continue
        out.append(arg)
        i += 1
    return nproc, out


def _process_limit() -> int:
    """The most ranks `--nproc` starts here: two per CPU core (gloo ranks beyond that only wait for each other), or
    one per CUDA GPU where there are more."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return max(2 * (os.cpu_count() or 1), gpus, 1)


def _quote(path) -> str:
    """A path as one quoted Hydra override value: spaces, commas, brackets, quotes and `${` stay literal.
    In a quoted value Hydra halves only the backslashes before a quote (or the closing one)."""
    import re

    text = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, str(path))
    text = text.replace("'", "\\'").replace("${", "\\${")
    return f"'{text}'"


@app.command("list")
def list_options(group: str | None = typer.Argument(None, help="Only this config group (model, data, ...), or `metrics`.")) -> None:
    """Show the options of every config group with its description."""
    from rich.console import Console
    from rich.table import Table

    from genlab.core.paths import config_dir, group_options

    groups = sorted(p.name for p in config_dir().iterdir() if p.is_dir() and p.name != "hydra")
    if group == "metrics":
        return _list_metrics()
    if group is not None and group not in groups:
        raise GenlabError(f"unknown config group '{group}'; choose one of: {', '.join(groups)}, or metrics")
    from genlab.core.paths import root_defaults

    defaults = root_defaults()
    table = Table(title="genlab config groups (* = default)", show_lines=False)
    table.add_column("group", style="bold cyan")
    table.add_column("option", style="bold")
    table.add_column("description")
    for name in [group] if group else groups:
        for i, (option, text) in enumerate(group_options(name).items()):
            mark = " *" if defaults.get(name) == option else ""
            table.add_row(name if i == 0 else "", option + mark, text)
        table.add_section()
    Console().print(table)
    print("Pick one with GROUP=OPTION, e.g. `genlab train model=vae data=fashion_mnist`; "
          "set any key with KEY=VALUE, e.g. `train.epochs=5`.")


def _list_metrics() -> None:
    """`genlab list metrics`: every registered metric (families register their own) and what it scores."""
    from rich.console import Console
    from rich.table import Table

    import genlab.eval  # noqa: F401  (registers the shared metrics)
    from genlab.core.metrics import metric_help
    from genlab.core.registry import METRICS

    table = Table(title="genlab eval metrics")
    table.add_column("metric", style="bold")
    table.add_column("what it measures (the data it scores)")
    for name in METRICS.in_order():
        table.add_row(name, metric_help(name))
    Console().print(table)
    print("Run them with `genlab eval RUN` (all that apply) or `genlab eval RUN --metrics a,b`.")


def _device(name: str) -> str:
    """--device cpu|cuda|auto -> the device to use, or one line saying why not."""
    import torch

    if name not in ("cpu", "cuda", "auto"):
        raise GenlabError(f"--device must be cpu, cuda or auto, got {name!r}")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise GenlabError("--device cuda but PyTorch sees no CUDA GPU: use --device cpu")
    return name


# the most a command makes or reads at once; each is named in its one-line refusal
SEED_MAX = 2**63 - 1  # torch's generators take 64-bit seeds
GRID_MAX = 1024  # samples in one PNG grid (a folder takes more)
SAMPLES_MAX = 1_000_000  # samples written to a folder or a CSV file
RECONSTRUCT_MAX = 1024
EVAL_MAX = 100_000  # generated images per metric (all are held in memory)
TRANSLATE_PIXELS = 2048 * 2048  # pixels of one image through a translation network (no tiles)
UPSCALE_PIXELS = 2048 * 2048  # pixels of one input image up-scaled (4x: a 8192 x 8192 output)
TILE_MAX = 4096


def _output_area(out: Path | None, target, overwrite: bool) -> Path | None:
    """Declare where a command that reads a run writes (genlab/files.py). A path the user named may replace an
    existing file only with --overwrite, and one inside the run folder has the run folder as its root, so the
    run folder's links are refused there too. The default path is inside the run folder, which genlab made; a
    checkpoint outside any run folder sits in a folder of the user's, where nothing is replaced."""
    from genlab.core import files

    run_dir = files.absolute(target.path)
    made = target.checkpoint.parent.name == "checkpoints"  # <run>/checkpoints/x.pt: a run folder genlab made
    if out is None:
        if made:
            files.declare(run_dir, replace=True, what="the run folder")
        else:
            files.declare(run_dir, replace=False, what="the checkpoint's folder",
                          hint="it is not in a run folder, and genlab does not replace a file beside a loose "
                               "checkpoint: pass -o, or move the checkpoint into a folder of its own")
        return None
    out = out.expanduser()
    absolute = files.absolute(out)
    root = run_dir if run_dir in absolute.parents else absolute.parent
    files.declare(root, replace=overwrite, what="the run folder" if root == run_dir else "the output folder")
    return out


@app.command()
def sample(  # noqa: C901  (to be split: issue 24)
    run: Path = typer.Argument(..., help="A run folder or one of its checkpoints; its dataset is not needed.",
                               autocompletion=complete_run),
    n: int = typer.Option(64, "--n", "-n", min=1, max=SAMPLES_MAX,
                          help=f"How many samples (a .png grid holds at most {GRID_MAX:,})."),
    labels: str | None = typer.Option(
        None, "--labels", help="Classes to draw, cycled, e.g. 0,1,2 (conditional models; InfoGAN: its category)."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, help="The same seed, n and labels give the same images."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="A .png gets one grid; a folder one PNG per sample. Default RUN/generated/."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file (or the files of the "
                                                              "same names in an existing --out folder)."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, or auto (cuda where PyTorch sees a GPU, as `train` does)."),
) -> None:
    """Draw new samples from a trained run, from its checkpoint alone.

    Examples:

    * `genlab sample outputs/dcgan_digits/RUN` : a grid of 64 in RUN/generated/samples_n64_seed0.png

    * `genlab sample outputs/cgan_cifar10/RUN --labels 3 -n 16 -o cats.png`

    * `genlab sample outputs/dcgan_celeba/RUN -n 10000 -o fid_samples/` : 10,000 PNG files, for FID tools

    * `genlab sample outputs/maf_toy2d/RUN -n 1000` : a flow on points writes RUN/generated/samples_n1000_seed0.csv
    """
    import torch

    from genlab.core import files
    from genlab.core.records import image_grid
    from genlab.train.runs import generate, load_run, parse_labels, write_png_folder

    device = _device(device)
    target = load_run(run, device)
    wanted = parse_labels(labels, target.model)
    out = _output_area(out, target, overwrite)
    if target.spec.kind == "vectors":  # points (a flow on toy2d): a CSV file, one point a line
        out = out if out is not None else target.path / "generated" / f"samples_n{n}_seed{seed}.csv"
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
        return
    if out is None:
        out = target.path / "generated" / f"samples_n{n}_seed{seed}.png"
    if out.suffix.lower() == ".png":
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
        return
    if out.suffix:
        raise GenlabError(f"--out must be a .png file or a folder, got {out}")
    write_png_folder(generate(target.model, n, seed, wanted), out, total=n)
    print(f"{n} samples from {target.name}: wrote {n} PNG files to {out}")


@app.command()
def translate(
    run: Path = typer.Argument(..., help="A pix2pix or cyclegan run folder, or one of its checkpoints.",
                               autocompletion=complete_run),
    source: Path = typer.Argument(..., help="An image file, or a folder of images (any sizes)."),
    out: Path = typer.Argument(..., help="The output .png for one image; a new or empty folder for a folder."),
    direction: str = typer.Option("AtoB", "--direction", help="AtoB or BtoA (CycleGAN: G or F)."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX,
                             help="Seeds pix2pix's test-time dropout: the same seed, the same output."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUTPUT file (or the files of the "
                                                              "same names in an existing OUTPUT folder)."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, or auto (cuda where PyTorch sees a GPU, as `train` does)."),
) -> None:
    """Translate images with a trained run, from its checkpoint alone: one output per input, the same size.

    A network that needs sides divisible by some number (the U-Net: its trained size; the ResNet: 4) gets each
    image padded by reflection and its output cropped back; the command says so. A folder is written all or
    nothing.

    Examples:

    * `genlab translate outputs/pix2pix_maps/RUN photo.jpg map.png`

    * `genlab translate outputs/cyclegan_horse2zebra/RUN horses/ zebras/ --direction AtoB`
    """
    import torch

    from genlab.data.folders import open_image
    from genlab.train.runs import load_run, translate_image

    if direction not in ("AtoB", "BtoA"):
        raise GenlabError(f"--direction must be AtoB or BtoA, got {direction!r}")
    device = _device(device)
    target = load_run(run, device)
    model = target.model
    if target.spec.kind == "superres":
        raise GenlabError(f"{run} is a {target.cfg.model.name} run, which up-scales images: use `genlab upscale "
                          f"{run} {source} {out}`")
    if not callable(getattr(type(model), "translate", None)) or target.spec.kind not in ("paired", "unpaired"):
        raise GenlabError(f"{run} is a {target.cfg.model.name} run, which does not translate images: pass a pix2pix "
                          "or cyclegan run")
    side = "a" if direction == "AtoB" else "b"
    channels = target.spec.shape(side)[0]
    files = _image_inputs(source, out, overwrite, target)
    source = source.expanduser()
    import numpy as np

    notes = set()
    torch.manual_seed(seed)  # pix2pix keeps dropout on at test time (model.dropout_at_test)

    def outputs():
        for path in files:
            image = open_image(path, "RGB" if channels == 3 else "L", max_pixels=TRANSLATE_PIXELS,
                               why="pixels to translate in one piece")
            array = np.asarray(image, dtype=np.uint8)
            pixels = torch.from_numpy((array[None] if array.ndim == 2 else array.transpose(2, 0, 1)).copy())
            result, how = translate_image(model, pixels.float().div(127.5).sub(1), direction)
            if how:
                notes.add(how)
            yield f"{path.stem}.png", result

    count = _write_outputs(source, out, outputs(), len(files))
    for note in sorted(notes)[:3]:
        print(note)
    if len(notes) > 3:
        print(f"... and {len(notes) - 3} more images padded the same way")
    print(f"wrote {count} image{'s' if count != 1 else ''} to {out} ({target.name}, {direction})")


def _image_inputs(source: Path, out: Path, overwrite: bool, target) -> list[Path]:
    """The image files a translate/upscale command reads, and the checks on OUTPUT that go with them (it may
    replace an existing file only with --overwrite)."""
    from genlab.core import files as writes
    from genlab.data.folders import IMAGE_SUFFIXES, list_images

    source = source.expanduser()
    if source.is_dir():
        files = list_images(source)
        if not files:
            raise GenlabError(f"no images in {source} ({', '.join(sorted(IMAGE_SUFFIXES))})")
    elif source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES:
        files = [source]
    else:
        raise GenlabError(f"{source} is not an image ({', '.join(sorted(IMAGE_SUFFIXES))}) or a folder of images")
    if source.is_file() and out.suffix.lower() != ".png":
        raise GenlabError(f"one image makes one .png: pass OUTPUT as a file name ending in .png, not {out}")
    if source.is_dir() and out.suffix.lower() == ".png":
        raise GenlabError(f"a folder makes a folder: pass OUTPUT as a new folder, not {out}")
    if out.expanduser().resolve() in {f.resolve() for f in files} or out.expanduser().resolve() == source.resolve():
        raise GenlabError(f"{out} is an input: write the outputs somewhere else")
    if len({f.stem for f in files}) != len(files):
        raise GenlabError(f"{source} holds files with the same name and different suffixes: rename them first")
    _output_area(out, target, overwrite)
    writes.check_target(out.expanduser(), folder=source.is_dir())
    return files


def _write_outputs(source: Path, out: Path, outputs, total: int | None = None) -> int:
    """One image file in: OUTPUT.png written atomically; a folder in: a new folder, all or nothing."""
    from genlab.core.files import atomic_write
    from genlab.train.runs import to_pil, write_named_pngs

    if source.expanduser().is_file():
        (_, image), = list(outputs)
        try:
            atomic_write(out.expanduser(), lambda tmp: to_pil(image).save(tmp, format="PNG"))
        except OSError as err:
            raise GenlabError(f"cannot write {out} ({err.strerror or err})") from None
        return 1
    return write_named_pngs(outputs, out.expanduser(), total=total)


@app.command()
def upscale(
    run: Path = typer.Argument(..., help="A super-resolution run folder (srresnet, srgan), or one of its checkpoints.",
                               autocompletion=complete_run),
    source: Path = typer.Argument(..., help="An image file, or a folder of images (any sizes)."),
    out: Path = typer.Argument(..., help="The output .png for one image; a new or empty folder for a folder."),
    tile: int | None = typer.Option(None, "--tile", min=1, max=TILE_MAX,
                                       help="Input pixels per tile side (default: the run's eval.tile, 128)."),
    tile_overlap: int | None = typer.Option(
        None, "--tile-overlap", min=0, max=TILE_MAX,
        help="Context pixels around each tile (default: the generator's receptive radius: the same result as "
             "whole)."),
    whole: bool = typer.Option(False, "--whole", help="No tiles: each image through the generator at once."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUTPUT file (or the files of the "
                                                              "same names in an existing OUTPUT folder)."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, or auto (cuda where PyTorch sees a GPU, as `train` does)."),
) -> None:
    """Up-scale images of any size with a trained super-resolution run, from its checkpoint alone.

    Each image goes through the generator in overlapping tiles, so a 2K photo needs bounded memory, and with
    the default overlap the result equals the untiled one. Output images are scale times the input's sides.
    A folder is written all or nothing.

    Examples:

    * `genlab upscale outputs/srresnet_div2k/RUN photo.png photo_x4.png`

    * `genlab upscale outputs/srgan_div2k/RUN low_res/ high_res/ --device cuda`
    """
    import torch

    from genlab.core import tiles
    from genlab.data.superres import read_hr
    from genlab.train.runs import load_run

    device = _device(device)
    target = load_run(run, device)
    model = target.model
    if target.spec.kind != "superres" or not getattr(model, "output_scale", 1) > 1:
        raise GenlabError(f"{run} is a {target.cfg.model.name} run, which does not up-scale images: pass an srresnet "
                          "or srgan run" + (" (translate images with `genlab translate`)" if target.spec.kind in
                                            ("paired", "unpaired") else ""))
    files = _image_inputs(source, out, overwrite, target)
    size, overlap = tiles.settings(target.cfg, tile, tile_overlap)
    size = None if whole else size
    channels = target.spec.shape("lr")[0]

    def outputs():
        for path in files:
            pixels = read_hr(path, channels, max_pixels=UPSCALE_PIXELS, why="pixels to up-scale")
            x = pixels.float().div(127.5).sub(1)[None]
            with torch.no_grad():
                result = tiles.translate(model, x, tile=size, overlap=overlap)
            yield f"{path.stem}.png", result[0].cpu()

    count = _write_outputs(source, out, outputs(), len(files))
    how = "whole" if size is None else f"tiles of {size} px, {model.receptive_radius if overlap is None else overlap} " \
                                       "px of context"
    print(f"wrote {count} image{'s' if count != 1 else ''} x{model.output_scale} to {out} ({target.name}, {how})")


@app.command("eval")
def evaluate(  # noqa: C901  (to be split: issue 24)
    run: Path = typer.Argument(..., help="A run folder or one of its checkpoints.", autocompletion=complete_run),
    metrics: str | None = typer.Option(
        None, "--metrics", help="Comma-separated, e.g. fd_domain,ms_ssim; default every metric that applies."),
    n: int = typer.Option(5000, "--n", "-n", min=10, max=EVAL_MAX,
                          help=f"Generated images per metric (10 to {EVAL_MAX:,})."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, help="Seed of the generated images."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, or auto (cuda where PyTorch sees a GPU, as `train` does)."),
    data: str | None = typer.Option(
        None, "--data",
        help="Where the run's dataset is, as data.KEY=VALUE settings, e.g. 'data.root=PATH' (genlab reads data only "
             "where you say or where its defaults point, never where a checkpoint says)."),
    ood_data: str | None = typer.Option(
        None, "--ood-data",
        help="A second dataset for out-of-distribution AUROC/AUPRC: a data option, with data.KEY=VALUE settings "
             "if it needs them, e.g. 'image_folder data.root=PATH'."),
    anomaly: bool = typer.Option(
        False, "--anomaly",
        help="Anomaly detection for a run trained with data.normal_classes: score the whole test split, the other "
             "classes being the anomalies; AUROC/AUPRC and ROC/PR/score figures in RUN/eval/."),
) -> None:
    """Score a run and write RUN/metrics.json: every number with its protocol (n, split, features, size).

    Metrics (all that apply to the run; `genlab list metrics` lists them with what they need): fd_domain
    (Frechet distance in a domain classifier's features; no download), precision_recall, ms_ssim (within-class
    diversity), fid / kid / is (need the Inception weights on disk), likelihood (VAE -ELBO and bits/dim,
    VQ-VAE reconstruction error), translation (L1 / PSNR of a translation model against the targets),
    superres (SRResNet/SRGAN: Y-channel PSNR/SSIM beside bicubic, per set), ood (with --ood-data: AUROC / AUPRC
    of the model's score, e.g. a VAE's -ELBO or a flow's -log p(x)), anomaly (with --anomaly, alone unless
    --metrics names others: the held-out classes of a run trained with data.normal_classes).

    Examples:

    * `genlab eval outputs/dcgan_digits/RUN`

    * `genlab eval outputs/cgan_cifar10/RUN --metrics fd_domain,ms_ssim -n 10000 --device cuda`

    * `genlab eval outputs/vae_mnist/RUN --metrics ood --ood-data fashion_mnist`

    * `genlab eval outputs/maf_fashion_mnist/RUN --anomaly`
    """
    import logging

    import torch
    from rich.console import Console
    from rich.table import Table

    from genlab.core.files import atomic_write
    from genlab.eval.places import parse_data_settings
    from genlab.eval.store import evaluate_run, merge_metrics, run_header
    from genlab.train.runs import load_run

    logging.getLogger("genlab").setLevel(logging.WARNING)
    device = _device(device)
    names = [m for m in metrics.replace(" ", "").split(",") if m] if metrics else None
    if anomaly and names is None:  # the other metrics score samples or likelihoods: ask for them by name
        names = ["anomaly"] + (["ood"] if ood_data is not None else [])
    settings = parse_data_settings(data, "--data") if data is not None else []
    target = load_run(run, device)
    _output_area(None, target, True)  # metrics.json and eval/ inside the run folder
    console = Console(stderr=True)
    result = evaluate_run(target, names, n, seed, torch.device(device), log=lambda line: console.print(line),
                          ood_data=ood_data, anomaly=anomaly, data=settings)
    figures = result.pop("figures", {})
    if figures:  # a metric's figures (ROC, PR, score histograms): RUN/eval/<name>.png, each written whole
        result["figures"] = {}
        for name, png in figures.items():
            figure = target.path / "eval" / f"{name}.png"
            try:
                atomic_write(figure, lambda tmp, data=png: Path(tmp).write_bytes(data))
            except OSError as err:
                raise GenlabError(f"cannot write {figure} ({err.strerror or err})") from None
            result["figures"][name] = str(figure.relative_to(target.path))
    path = target.path / "metrics.json"
    merge_metrics(path, run_header(target), result)
    table = Table(title=f"{target.name}", caption=f"full protocols in {path}")
    for column in ("metric", "value", "generated", "real", "split"):
        table.add_column(column, style="bold" if column == "metric" else None,
                         justify="left" if column in ("metric", "split") else "right")
    grouped: dict[str, dict[str, dict[str, float]]] = {}  # a metric's own tables: protocol table / row / column
    for name, entry in result["metrics"].items():
        protocol = entry["protocol"]
        if {"table", "row", "column"} <= set(protocol):
            grouped.setdefault(protocol["table"], {}).setdefault(protocol["row"], {})[protocol["column"]] = \
                entry["value"]
            continue
        split = protocol.get("real_split") or protocol.get("split") or ""
        table.add_row(name, f"{entry['value']:.4g}", str(protocol.get("n_generated", "")),
                      str(protocol.get("n_real", protocol.get("n_images", ""))), split)
    if table.row_count:
        Console().print(table)
    for title, rows in grouped.items():
        columns = list(dict.fromkeys(column for cells in rows.values() for column in cells))
        pivot = Table(title=title, caption=f"protocol in {path}")
        pivot.add_column("", style="bold")
        for column in columns:
            pivot.add_column(column, justify="right")
        for row, cells in rows.items():
            pivot.add_row(row, *[f"{cells[c]:.4f}" if c in cells and abs(cells[c]) < 1.5 else
                                 f"{cells[c]:.2f}" if c in cells else "" for c in columns])
        Console().print(pivot)
    reasons: dict[str, list[str]] = {}
    for name, why in result["skipped"].items():
        reasons.setdefault(why, []).append(name)
    for why, skipped in reasons.items():
        print(f"skipped {', '.join(skipped)}: {why}")
    for name, figure in result.get("figures", {}).items():
        print(f"wrote {target.path / figure}")
    print(f"wrote {path}")


@app.command()
def report(
    runs: list[Path] = typer.Argument(..., help="Run folders and/or multirun folders (outputs/multirun/<time>).",
                                      autocompletion=complete_run_or_sweep),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Folder for the PNGs and index.html; default RUN/report (one path) or ./report."),
    epochs: str | None = typer.Option(
        None, "--epochs", help="Epochs of the progression strips, e.g. 1,11,21,31,41,51 (the nearest saved grid "
                               "each); default six spread from the first to the last."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into an existing --out folder that is not a "
                                                              "genlab report, replacing files of the same names."),
) -> None:
    """Write the report's figures as PNGs and one index.html that shows them with captions.

    For a run: sample progression strips across epochs, the training curves, the family's own figures
    (latent scatter, class rows, code sweeps, reconstructions) and its metrics.json. For a multirun folder:
    a table of swept parameters against final losses and metrics (printed, and as CSV and markdown) and the
    jobs' curves overlaid.

    Examples:

    * `genlab report outputs/dcgan_digits/RUN`

    * `genlab report outputs/multirun/2026-11-23_10-00-00 -o loss_sweep/`

    * `genlab report outputs/dcgan_celeba/RUN --epochs 1,11,21,31,41,51` : the report's DCGAN strip
    """
    from rich.console import Console
    from rich.table import Table

    from genlab.app.report import build_report

    wanted = None
    if epochs is not None:
        try:
            wanted = [int(e) for e in epochs.replace(" ", "").split(",") if e != ""]
        except ValueError:
            raise GenlabError(f"--epochs must be epoch numbers separated by commas, e.g. 0,10,20; got {epochs!r}") from None
        if not wanted or min(wanted) < 0 or len(wanted) > 100:
            raise GenlabError(f"--epochs must be up to 100 epoch numbers of 0 or more, e.g. 0,10,20; got {epochs!r}")
    built, index = build_report(list(runs), out, wanted, overwrite)
    for title, header, rows in built.console_tables:
        # one column per job, one row per parameter or number: sweeps have few jobs and many scalars
        table = Table(title=title, caption="final values; the same table is in sweep.csv and sweep.md")
        table.add_column("", style="bold", no_wrap=True, min_width=max(len(h) for h in header))
        for row in rows:
            table.add_column(f"job {row[0]}", justify="right", overflow="fold")
        for i, name in enumerate(header[1:], start=1):
            table.add_row(name, *[row[i] for row in rows])
        Console().print(table)
    for note in built.notes[:20]:  # what of the runs could not be read, and so is not in the report
        print(f"left out {note}")
    if len(built.notes) > 20:
        print(f"left out {len(built.notes) - 20} more file(s)")
    figures = sum(len(section.figures) for section in built.sections)
    print(f"{figures} figures in {built.out}; open {index}")


@app.command()
def reconstruct(
    run: Path = typer.Argument(..., help="An autoencoder run folder (vae, cvae, vqvae) or one of its checkpoints.",
                               autocompletion=complete_run),
    images: list[Path] = typer.Argument(
        ..., help="Image files, folders of images, or other run folders (their model draws new samples)."),
    n: int = typer.Option(8, "--n", "-n", min=1, max=RECONSTRUCT_MAX, help="How many images to pass through."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="PNG to write; default RUN/reconstructions/<images>.png."),
    label: int | None = typer.Option(
        None, "--label", min=0, max=1 << 20,
        help="Class to condition on (cvae), also asked of a conditional run's samples; default 0."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, help="Seed for samples drawn from a run given as IMAGES."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
) -> None:
    """Pass images through an autoencoder run and write input / reconstruction pairs as one PNG.

    Examples:

    * `genlab reconstruct outputs/vqvae_digits/RUN outputs/vae_digits/RUN` : VAE samples through a VQ-VAE
      (report 003's figure)

    * `genlab reconstruct outputs/vae_image_folder/RUN my_faces/ -n 16`

    * `genlab reconstruct outputs/cvae_digits/RUN digit.png --label 3 -o three.png`
    """
    import torch

    from genlab.core.files import atomic_write, check_target
    from genlab.core.records import image_grid, pair_rows, titled_rows
    from genlab.train.runs import is_run, load_run, read_images

    target = load_run(run)
    model = target.model
    out = _output_area(out, target, overwrite)
    if out is not None:
        if out.suffix.lower() != ".png":
            raise GenlabError(f"--out must name a .png file, got {out}")
        check_target(out)
    if not hasattr(model, "reconstruct"):
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
    from genlab.core.imaging import psnr_of_mse

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


weights_app = typer.Typer(
    help="The optional pretrained weights genlab can use (Inception for FID, VGG19 for SRGAN): where each is looked "
         "for, whether it is there and is the published file; `genlab weights add FILE` puts a download in place.",
    invoke_without_command=True)
app.add_typer(weights_app, name="weights")


@weights_app.callback()
def weights_list(ctx: typer.Context) -> None:
    """List every optional weights file: what uses it, where it is looked for, whether it is there and its
    checksum matches the published one. genlab never downloads: fetch the URL elsewhere, then `genlab weights add`."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.console import Console
    from rich.markup import escape

    from genlab.core import weights
    from genlab.core.progress import bar

    console = Console(highlight=False, soft_wrap=True)  # paths and URLs whole, whatever the width
    for entry in weights.known():
        found = entry.find()
        if found is None:
            status = "[red]missing[/red]"
        else:
            with bar(f"checking {found.name}", total=found.stat().st_size) as advance:
                digest = weights.sha256_of(found, advance)
            status = ("[green]ok[/green]: the published file" if digest.startswith(entry.sha256_prefix) else
                      f"[yellow]not the published file[/yellow] (sha256 {digest[:8]}..., published "
                      f"{entry.sha256_prefix}...): its numbers are not comparable with published ones")
        console.print(f"[bold]{entry.name}[/bold]  {entry.file} (~{entry.megabytes} MB)  {status}")
        console.print(f"  used by:     {escape(entry.used_by)}")
        (how, path), = entry.places()
        console.print(f"  looked for:  {escape(str(path))} ({how})")
        if os.environ.get(entry.env) is None:
            console.print(f"  {'':12} (or set {entry.env}=FILE)")
        if found is None and os.environ.get(entry.env):
            console.print(f"  get it:      download {entry.url}, then point {entry.env} at it (or unset "
                          f"{entry.env} and run `genlab weights add FILE`)")
        elif found is None:
            console.print(f"  get it:      download {entry.url}, then `genlab weights add FILE`")


@weights_app.command("add")
def weights_add(file: Path = typer.Argument(..., help="A weights file downloaded elsewhere (any name).")) -> None:
    """Put a downloaded weights file where genlab looks for it (the torch hub cache, under its published name),
    after checking its SHA-256 against the published one. The copy is written whole or not at all."""
    from genlab.core import weights
    from genlab.core.progress import bar

    size = file.expanduser().stat().st_size if file.expanduser().is_file() else None
    with bar(f"checking {file.name}", total=size) as advance:
        entry, target, copied = weights.add(file, advance)
    if copied:
        print(f"{entry.name}: checksum ok; copied to {target}")
    else:
        print(f"{entry.name}: {target} is already this file; nothing to do")


@config_app.command("show", context_settings=PASS_THROUGH)
def config_show(ctx: typer.Context) -> None:
    """Print the resolved config that `genlab train OVERRIDES` would run, e.g. `genlab config show model=vae`."""
    from omegaconf import OmegaConf
    from rich.console import Console
    from rich.syntax import Syntax

    from genlab.app.compose import checked_config, parse_command_line

    line = parse_command_line(list(ctx.args))
    # the types and the safety `genlab train` checks; not its ranges, the GPU or the data (so a user can look
    # at `data=image_folder` to learn that it needs data.root)
    cfg = checked_config(line.overrides, line, validate_values=False)
    cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    try:
        text = OmegaConf.to_yaml(cfg, resolve=True)
    except Exception as err:  # noqa: BLE001  (an unresolvable interpolation, e.g. a missing environment variable)
        raise GenlabError(f"the config does not resolve: {str(err).splitlines()[0]}") from None
    if sys.stdout.isatty():
        Console().print(Syntax(text, "yaml", theme="ansi_dark"))
    else:
        print(text, end="")


@app.callback(invoke_without_command=True)
def _root(version: bool = typer.Option(False, "--version", help="Print genlab's version and exit.")) -> None:
    if version:
        from genlab import __version__

        print(f"genlab {__version__}")
        raise typer.Exit()


def main() -> None:  # noqa: C901  (to be split: issue 24)
    import signal

    from genlab.train import rundir

    # SIGTERM (timeout, SLURM pre-emption, kill) and SIGHUP (a closed terminal or SSH session) are a Ctrl-C: a
    # run stops cleanly and saves, a start leaves nothing behind (a SIGHUP that nohup ignores stays ignored)
    signal.signal(signal.SIGTERM, raise_interrupted)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, raise_interrupted)
    sys.unraisablehook = _unraisable
    _check_completion_request()
    try:
        # prog_name: also under `python -m genlab`, completion scripts are for `genlab`. Not standalone: a
        # mistake Typer finds (an unknown command or option, a missing argument) is one line here, not a box
        code = app(prog_name="genlab", standalone_mode=False)
        if isinstance(code, int) and code:  # typer.Exit(code), or Ctrl-C (130) while parsing
            raise SystemExit(code)
        from genlab.core.errors import raise_if_stopped

        raise_if_stopped()  # a stop dropped on its way (in a finaliser) still ends the command as a stop
    except GenlabError as err:
        from genlab.core import distributed

        if distributed.rank() == 0:  # every rank of a torchrun job meets the same error: one says it
            print(f"genlab: {err}", file=sys.stderr)
        rundir.remove_claimed()
        sys.exit(err.exit_code)
    except KeyboardInterrupt as err:
        from genlab.core.errors import handled

        handled()
        rundir.remove_claimed()
        sys.exit(interrupt_exit_code(err))
    except SystemExit as done:
        if done.code == 130:  # Typer turns a KeyboardInterrupt (or our SIGTERM) into exit code 130
            rundir.remove_claimed()
            sys.exit(interrupt_exit_code(KeyboardInterrupt()))
        raise
    except Exception as err:
        if type(err).__name__ == "Abort":  # Click's Abort (an EOF at a prompt): what standalone Click prints
            print("Aborted!", file=sys.stderr)
            rundir.remove_claimed()
            sys.exit(1)
        if not _usage_error(err):
            raise
        if type(err).__name__ == "NoArgsIsHelpError":  # `genlab`, `genlab config`: their help, exit 2 as before
            app(prog_name="genlab", args=[*sys.argv[1:], "--help"], standalone_mode=False)
            sys.exit(2)
        print(f"genlab: {_usage_line(err)}", file=sys.stderr)
        sys.exit(2)


def _unraisable(info) -> None:
    """A stop signal that lands while Python runs a finaliser is dropped there ("Exception ignored"): say nothing;
    the next step of the command raises it again (errors.raise_if_stopped). Anything else as Python says it."""
    if isinstance(info.exc_value, KeyboardInterrupt):
        return
    sys.__unraisablehook__(info)


def _check_completion_request() -> None:
    """A shell's completion request (Typer's protocol) names the word under the cursor by its index: one that is
    not a number is one line here, not Typer's traceback in the shell."""
    if not os.environ.get("_GENLAB_COMPLETE"):
        return
    for name in ("COMP_CWORD",):
        value = os.environ.get(name)
        if value is not None and not (value.isdigit() and len(value) < 7):
            print(f"genlab: completion: {name} must be the index of a word, got {value[:40]!r}", file=sys.stderr)
            sys.exit(2)


def _usage_error(err: Exception) -> bool:
    """A mistake on the command line as Typer (its Click) reports it: a message and an exit code of 2 (or 1 for
    an Abort, which is no mistake: it propagates)."""
    return callable(getattr(err, "format_message", None)) and getattr(err, "exit_code", None) == 2


def _usage_line(err: Exception) -> str:
    """`No such option: --metric (Possible options: --device, --metrics)` -> one line with where to look."""
    message = " ".join(str(err.format_message()).split())
    ctx = getattr(err, "ctx", None)
    path = getattr(ctx, "command_path", None) or "genlab"
    message = message[0].lower() + message[1:] if message[:1].isupper() and message[1:2].islower() else message
    command = path.removeprefix("genlab").strip()
    return f"{command + ': ' if command else ''}{message.rstrip('.')} (see `{path} --help`)"
