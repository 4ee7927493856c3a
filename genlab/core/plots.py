"""Figures as PNG bytes: the Plot types a model's evaluate() returns (Scatter, DensityMap), image grids, loss curves."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from genlab.core.files import atomic_write
from genlab.core.records import MAX_PANELS, NOT_CURVES


def figure_png(fig, dpi: int = 100, rect=None) -> bytes:
    """A matplotlib figure laid out tight (within `rect`, to leave room for a suptitle), as PNG bytes; closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout(rect=rect)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()


class Plot:
    """A figure a model's evaluate() returns (beside its floats): drawn by the run writer as
    samples/epoch_XXX_<name>.png and shown in TensorBoard under visuals/<name>."""

    def png(self) -> bytes:
        raise NotImplementedError


@dataclass
class Scatter(Plot):
    """2-D points to plot, optionally coloured by class (e.g. latent codes of the test set)."""

    points: torch.Tensor  # [N, 2]
    labels: torch.Tensor | None = None  # [N] class numbers, or None for one colour
    class_names: list[str] = field(default_factory=list)
    title: str = ""
    xlabel: str = ""
    ylabel: str = ""

    def png(self) -> bytes:
        return scatter_png(self)


@dataclass
class DensityMap(Plot):
    """A 2-D density: log p on a grid (rows along y from low to high), beside data points and samples."""

    log_density: torch.Tensor  # [ny, nx]
    extent: tuple[float, float, float, float]  # x low, x high, y low, y high
    data: torch.Tensor  # [N, 2]
    samples: torch.Tensor  # [M, 2]
    title: str = ""

    def png(self) -> bytes:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        density = torch.nan_to_num(self.log_density.float(), nan=-1e30, neginf=-1e30, posinf=1e30).exp().numpy()
        ratio = (self.extent[3] - self.extent[2]) / max(self.extent[1] - self.extent[0], 1e-9)
        fig, axes = plt.subplots(1, 3, figsize=(12, min(8.0, max(2.0, 3.8 * ratio)) + 0.8))
        axes[0].imshow(density, origin="lower", extent=self.extent, cmap="magma", aspect="auto")
        axes[0].set_title("model density p(x)")
        for ax, points, title in ((axes[1], self.data, f"data ({len(self.data)} test points)"),
                                  (axes[2], self.samples, f"samples ({len(self.samples)})")):
            points = points.float().cpu().numpy()
            ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5, color="#1f3b73" if ax is axes[1] else "#b03a2e")
            ax.set_xlim(self.extent[0], self.extent[1])
            ax.set_ylim(self.extent[2], self.extent[3])
            ax.set_title(title)
        for ax in axes:
            ax.set_aspect("equal", adjustable="box")
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(self.title)
        return figure_png(fig, dpi=90, rect=(0, 0, 1, 0.94))


def scatter_png(scatter: Scatter) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = scatter.points.detach().float().cpu().numpy()
    fig, ax = plt.subplots(figsize=(6, 5))
    if scatter.labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.6)
    else:
        labels = scatter.labels.cpu().numpy()
        cmap = plt.get_cmap("tab10" if labels.max(initial=0) < 10 else "tab20")
        for k in sorted(set(labels.tolist())):
            name = scatter.class_names[k] if k < len(scatter.class_names) else str(k)
            ax.scatter(points[labels == k, 0], points[labels == k, 1], s=4, alpha=0.6, color=cmap(k % cmap.N),
                       label=name)
        ax.legend(markerscale=3, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.set_title(scatter.title)
    ax.set_xlabel(scatter.xlabel)
    ax.set_ylabel(scatter.ylabel)
    ax.grid(alpha=0.3)
    return figure_png(fig)


def image_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> Image.Image:
    """[-1, 1] NCHW images -> one PIL grid image."""
    from torchvision.utils import make_grid

    grid = make_grid(images.detach().float().cpu().clamp(-1, 1).add(1).div(2), nrow=nrow, padding=padding,
                     pad_value=1.0)
    array = grid.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(array[..., 0] if images.shape[1] == 1 else array)


def pair_rows(top: torch.Tensor, bottom: torch.Tensor, row: int = 8) -> torch.Tensor:
    """Interleave two equal-length image batches by rows of `row`: top row, its bottom row, next top row...
    (inputs over their reconstructions). A ragged last row is filled with white images."""
    pad = (-len(top)) % row
    blank = torch.ones(pad, *top.shape[1:], dtype=top.dtype, device=top.device)
    top, bottom = torch.cat([top, blank]), torch.cat([bottom.to(top), blank])
    return torch.stack([top.view(-1, row, *top.shape[1:]), bottom.view(-1, row, *top.shape[1:])], dim=1) \
        .reshape(-1, *top.shape[1:])


def titled_rows(grid: Image.Image, titles: list[str], padding: int = 2) -> Image.Image:
    """Put a title left of each row of a grid made by image_grid (rows of equal height)."""
    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default()
    margin = 8 + max(int(ImageDraw.Draw(grid).textlength(t, font=font)) for t in titles)
    out = Image.new(grid.mode, (grid.width + margin, grid.height), 255 if grid.mode == "L" else (255, 255, 255))
    out.paste(grid, (margin, 0))
    draw = ImageDraw.Draw(out)
    row = (grid.height - padding) / len(titles)
    for i, title in enumerate(titles):
        draw.text((4, padding + i * row + row / 2 - 6), title, fill=0 if grid.mode == "L" else (0, 0, 0), font=font)
    return out


def save_png(image: Image.Image, path: Path) -> None:
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def draw_curves(records: list[dict], path: Path, groups: dict[str, list[str]], title: str = "") -> bool:
    """One panel per group of scalars against the step; scalars in no group get a panel each (at most
    MAX_PANELS). Returns whether there was anything to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({k for r in records for k in r if k not in NOT_CURVES})
    if not names:
        return False
    groups = {**groups, "learning rate": [n for n in names if n.startswith("lr/")]}
    panels = {g: [n for n in members if n in names] for g, members in groups.items()}
    panels = {g: m for g, m in panels.items() if m}
    grouped = {n for m in panels.values() for n in m}
    panels.update({n: [n] for n in names if n not in grouped})
    panels = dict(list(panels.items())[:MAX_PANELS])
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.2 * rows), squeeze=False)
    for ax, (panel, members) in zip(axes.flat, panels.items()):
        for name in members:
            points = [(r["step"], r[name]) for r in records if name in r and r[name] is not None]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, label=name, linewidth=1.2)
        ax.set_title(panel)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(members) > 1:
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    data = figure_png(fig)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    return True
