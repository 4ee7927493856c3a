"""What several commands share: the device option, the output area of a command, the bounds on counts."""

from __future__ import annotations

from pathlib import Path

from genlab.core import files
from genlab.core.errors import GenlabError


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
