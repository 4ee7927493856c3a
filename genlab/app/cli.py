"""The `genlab` command. Every subcommand is thin: it parses, checks, and hands over."""

from __future__ import annotations

import importlib
from pathlib import Path

import typer
import typer.core

from genlab import __version__
from genlab.app.commands.bounds import EVAL_MAX, GRID_MAX, RECONSTRUCT_MAX, SAMPLES_MAX, SEED_MAX, TILE_MAX
from genlab.app.completion import complete_book, complete_run, complete_run_or_sweep, complete_train

app = typer.Typer(
    name="genlab",
    help="Train, sweep and report deep generative models from one line of Hydra overrides.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion: bash, zsh, fish (genlab/app/completion.py)
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Look at the composed configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


def _command(name: str):
    """A command's module, imported when the command runs, so `genlab --help` and TAB completion load no torch:
    the one genlab import inside a function (docs/architecture.md, "The layers")."""
    return importlib.import_module(f"genlab.app.commands.{name}")


PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


class TrainCommand(typer.core.TyperCommand):
    """`genlab train`: its words are Hydra's, so completing them is genlab's (overrides, keys, values, flags)."""

    def shell_complete(self, ctx, incomplete):
        return complete_train(ctx, incomplete)


@app.command(context_settings=PASS_THROUGH, cls=TrainCommand)
def train(ctx: typer.Context) -> None:
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
    _command("train").run(ctx)


@app.command("list")
def list_options(group: str | None = typer.Argument(
        None, help="Only this config group (model, data, ...), or `metrics`, or `models` (what each can do), or "
                   "`books` (the reports genlab reproduces).")) -> None:
    """Show the options of every config group with its description."""
    _command(group if group in ("models", "metrics", "books") else "listing").run(group)


@app.command(context_settings=PASS_THROUGH)
def sample(
    ctx: typer.Context,
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

    * `genlab sample outputs/ddpm_fashion_mnist/RUN --steps 50 --eta 0` : DDIM in 50 steps (a sampler's settings)

    A sampler's settings follow the options where the run's model has them (`genlab list models`): a
    diffusion run's `--steps N`, `--eta E`, `--guidance W`. They go into the file name.
    """
    _command("sample").run(run, n, labels, seed, out, overwrite, device, ctx)


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
    _command("translate").run(run, source, out, direction, seed, overwrite, device)


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
    _command("upscale").run(run, source, out, tile, tile_overlap, whole, overwrite, device)


@app.command("eval", context_settings=PASS_THROUGH)
def evaluate(
    ctx: typer.Context,
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

    * `genlab eval outputs/ddpm_fashion_mnist/RUN --metrics fd_domain --steps 50` : with a sampler's settings

    A sampler's settings follow the options where the run's model has them (`genlab list models`): a
    diffusion run's `--steps N`, `--eta E`, `--guidance W`. They go into every metric's protocol.
    """
    _command("evaluate").run(run, metrics, n, seed, device, data, ood_data, anomaly, ctx)


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
    _command("report").run(runs, out, epochs, overwrite)


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
    _command("reconstruct").run(run, images, n, out, label, seed, overwrite)


@app.command(context_settings=PASS_THROUGH)
def book(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A book: `genlab list books` shows them.", autocompletion=complete_book),
    out: Path | None = typer.Option(None, "--out", "-o", help="The book's folder (runs, page); default books/NAME."),
    offline: bool = typer.Option(False, "--offline", help="Where a dataset is missing, train its runs on the "
                                                          "offline stand-in (digits, Fashion-MNIST, the photo and "
                                                          "shoe demos), every figure and number labelled so."),
    quick: bool = typer.Option(False, "--quick", help="Shorten every run to minutes: a first look, not the report."),
    data_root: Path | None = typer.Option(None, "--data-root", help="One folder holding every dataset in genlab's "
                                                                    "standard layout (each dataset's data.root)."),
    data: list[str] | None = typer.Option(None, "--data", help="NAME=FOLDER: one dataset's data.root (repeat it)."),
    nproc: int = typer.Option(1, "--nproc", min=1, max=4096, help="Processes per job (data-parallel); each job "
                                                                   "then runs as its own `genlab train --nproc N`."),
) -> None:
    """Reproduce a report: train every run of its book (each a Hydra multirun), evaluate them, write one page.

    The page (BOOK/index.html) has the report's sections in order, every figure the report shows made from
    the book's runs with the commands that made it, and every number the report states beside ours, with
    both protocols. Running the same command again re-uses finished runs; a book stopped with Ctrl-C
    continues where it stopped. Overrides after NAME go to every run (device=cuda, hydra/launcher=slurm).

    Examples:

    * `genlab list books` : the books, what each reads and how long it takes

    * `genlab book flows-cyclegan --offline --quick` : a first look in minutes on a laptop, stand-ins labelled

    * `genlab book vae-gans-srgan --data-root /data device=cuda` : the report on its real datasets
    """
    _command("book").run(name, out, offline, quick, data_root, data, nproc, ctx)


weights_app = typer.Typer(
    help="The optional pretrained weights genlab can use (Inception for FID, VGG19 for SRGAN): where each is looked "
         "for, whether it is there and is the published file; `genlab weights add FILE` puts a download in place.",
    invoke_without_command=True)
app.add_typer(weights_app, name="weights")


@weights_app.callback()
def weights_list(ctx: typer.Context) -> None:
    """List every optional weights file: what uses it, where it is looked for, whether it is there and its
    checksum matches the published one. genlab never downloads: fetch the URL elsewhere, then `genlab weights add`."""
    _command("weights").list_files(ctx)


@weights_app.command("add")
def weights_add(file: Path = typer.Argument(..., help="A weights file downloaded elsewhere (any name).")) -> None:
    """Put a downloaded weights file where genlab looks for it (the torch hub cache, under its published name),
    after checking its SHA-256 against the published one. The copy is written whole or not at all."""
    _command("weights").add(file)


@config_app.command("show", context_settings=PASS_THROUGH)
def config_show(ctx: typer.Context) -> None:
    """Print the resolved config that `genlab train OVERRIDES` would run, e.g. `genlab config show model=vae`."""
    _command("config").run(ctx)


@app.callback(invoke_without_command=True)
def _root(version: bool = typer.Option(False, "--version", help="Print genlab's version and exit.")) -> None:
    if version:
        print(f"genlab {__version__}")
        raise typer.Exit()


