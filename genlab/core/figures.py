"""What a model family adds to `genlab report`, registered in the family's own model file.

    family_figures("cgan")(visual_figures(CLASS_ROWS))          # the last grid of a visual, with a caption

    @family_figures("infogan")
    def code_figures(run, report, prefix) -> list[Figure]: ...  # anything else: run is report.RunFolder,
                                                                # report.copy(file, name) puts a file in the report

No imports beyond the standard library, so a model file can register its figures without loading the report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Figure:
    file: str  # relative to the report folder
    caption: str
    thumbnail: bool = False  # shown small, side by side with the section's other thumbnails


FAMILY_FIGURES: dict[str, list[Callable]] = {}


def family_figures(*models: str):
    """Register fn(run, report, prefix) -> list[Figure] for these model names."""

    def add(fn):
        for name in models:
            FAMILY_FIGURES.setdefault(name, []).append(fn)
        return fn

    return add


def final_visual(run, report, prefix: str, visual: str, caption: str) -> list[Figure]:
    """The last saved grid of one visual (samples/epoch_XXX_<visual>.png) as a figure, if the run has one."""
    grids = run.grids().get(visual)
    if not grids:
        return []
    last = max(grids)
    return [Figure(report.copy(grids[last], f"{prefix}{visual}_final.png"), f"{caption} (epoch {last})")]


def visual_figures(*visuals: tuple[str, str]) -> Callable:
    """A figures function for @family_figures: the last grid of each (visual, caption)."""

    def figures(run, report, prefix: str) -> list[Figure]:
        return [f for visual, caption in visuals for f in final_visual(run, report, prefix, visual, caption)]

    return figures


CLASS_ROWS = ("classes", "one row per class, the same noise down each column")
RECONSTRUCTIONS = ("reconstructions", "test images (odd rows) and their reconstructions")
