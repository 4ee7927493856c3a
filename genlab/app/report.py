"""`genlab report`: the report's figures, read from run folders, as PNGs plus one index.html.

Per run: sample progression strips across epochs (from the saved grids), the loss curves with the model's
panel names, the family's own figures (each family registers them in its own model file with
@family_figures), and metrics.json as a table.
Per multirun folder: a table of the swept parameters against final scalars and metrics (terminal, CSV,
markdown) and every job's curves overlaid.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

import genlab.models  # noqa: F401  (fills MODELS and the families' figures)
from genlab.core import files
from genlab.core.checkpoint import load_checkpoint
from genlab.core.errors import GenlabError
from genlab.core.figures import FAMILY_FIGURES, Figure
from genlab.core.files import atomic_write
from genlab.core.plots import draw_curves
from genlab.core.progress import bar
from genlab.core.records import NOT_CURVES, read_metrics
from genlab.core.registry import MODELS
from genlab.data.folders import open_image
from genlab.train.rundir import is_plain_folder, is_run_folder

GRID = re.compile(r"^epoch_(\d+)(_[A-Za-z0-9_]+)?\.png$")


@dataclass
class Section:
    title: str
    figures: list[Figure] = field(default_factory=list)
    table: tuple[list[str], list[list[str]]] | None = None
    note: str = ""


# ---- reading run folders --------------------------------------------------------------------------------
# A run folder is read as untrusted input (genlab/core/files.py): no links below it, capped sizes, PNG and YAML and
# JSON checked; what cannot be read is left out of the report with one line saying why (RunFolder.notes).
MAX_JOBS = 10_000  # job folders of one multirun folder
MARKER = '<meta name="generator" content="genlab report">'  # how genlab knows a report folder of its own


class RunFolder:
    def __init__(self, path: Path):
        self.path = path
        self.notes: list[str] = []
        self.records = self._read(lambda: read_metrics(path / "metrics.jsonl", root=path, notes=self.notes), [],
                                  "metrics.jsonl")
        self.config = _read_config(path, self.notes)
        model = self.config.get("model") if isinstance(self.config.get("model"), dict) else {}
        data = self.config.get("data") if isinstance(self.config.get("data"), dict) else {}
        self.model = _name(model.get("name"), "model")
        self.data = _name(data.get("name"), "data")

    def _read(self, read, default, what: str):
        try:
            return read()
        except GenlabError as err:
            self.notes.append(f"{what}: {err}")
            return default

    @property
    def label(self) -> str:
        return f"{self.model} on {self.data}"

    def grids(self) -> dict[str, dict[int, Path]]:
        """Visual name ("samples", "manifold", ...) -> {epoch: png} from samples/ (no links)."""
        found: dict[str, dict[int, Path]] = {}
        samples = self.path / "samples"
        if not is_plain_folder(samples):
            return found
        for png in sorted(samples.glob("epoch_*.png")):
            match = GRID.match(png.name)
            if match and not png.is_symlink() and png.is_file():
                name = (match.group(2) or "_samples")[1:]
                found.setdefault(name, {})[int(match.group(1))] = png
        return found

    def final(self) -> dict[str, float]:
        """The last logged value of every scalar."""
        last: dict[str, float] = {}
        for record in self.records:
            for key, value in record.items():
                if key not in ("step", "epoch", "time") and isinstance(value, (int, float)):
                    last[key] = value
        return last

    def metrics(self) -> dict:
        return self.metrics_record().get("metrics", {})

    def metrics_record(self) -> dict:
        """metrics.json as `genlab eval` wrote it: {} where there is none; its entries that are not
        {value: number, protocol: mapping} are left out (a damaged file is said once)."""
        if not hasattr(self, "_metrics"):
            self._metrics = self._read(self._read_metrics_json, {}, "metrics.json")
        return self._metrics

    def _read_metrics_json(self) -> dict:
        path = self.path / "metrics.json"
        if not os.path.lexists(path):
            return {}
        try:
            record = json.loads(files.read_bytes(path, files.MAX_TEXT, root=self.path, what="metrics file"))
        except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, a number too long, too deep
            raise GenlabError("not JSON; run `genlab eval` again to write it anew") from None
        if not isinstance(record, dict):
            raise GenlabError("not a metrics record; run `genlab eval` again to write it anew")
        metrics = record.get("metrics") if isinstance(record.get("metrics"), dict) else {}
        record["metrics"] = {str(k): {**v, "protocol": v.get("protocol") if isinstance(v.get("protocol"), dict)
                                      else {}}
                             for k, v in metrics.items() if isinstance(v, dict) and _is_number(v.get("value"))}
        if not isinstance(record.get("figures"), dict):
            record["figures"] = {}
        return record

    def overrides(self) -> list[str]:
        path = self.path / ".hydra" / "overrides.yaml"
        if not os.path.lexists(path):
            return []
        from omegaconf import OmegaConf

        loaded = self._read(lambda: files.read_yaml(path, root=self.path, what="overrides file"), None,
                            ".hydra/overrides.yaml")
        if loaded is None or not OmegaConf.is_list(loaded):
            return []
        return [str(x) for x in OmegaConf.to_container(loaded) if isinstance(x, (str, int, float))]


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _name(value, default: str) -> str:
    """A model or data name from a run's config: a short plain word, or the default."""
    if isinstance(value, str) and 0 < len(value) <= 64 and value.replace("_", "").replace("-", "").isalnum():
        return value
    return default


def _read_config(path: Path, notes: list[str]) -> dict:
    """The run's composed config: .hydra/config.yaml (a checked YAML file), else its checkpoint's (a checked
    checkpoint); {} where neither can be read, with a note saying why."""
    from omegaconf import OmegaConf

    hydra_cfg = path / ".hydra" / "config.yaml"
    if os.path.lexists(hydra_cfg):
        try:
            loaded = files.read_yaml(hydra_cfg, root=path)
            if OmegaConf.is_dict(loaded):
                return OmegaConf.to_container(loaded, resolve=False)
            notes.append(".hydra/config.yaml: not a mapping of settings")
        except GenlabError as err:
            notes.append(f".hydra/config.yaml: {err}")
    if (path / "checkpoints" / "last.pt").is_file():
        try:
            return load_checkpoint(path)["config"]
        except GenlabError as err:
            notes.append(f"checkpoints/last.pt: {err}")
    return {}


def jobs_of(path: Path) -> list[Path]:
    """The job folders of a multirun folder (Hydra numbers them 0, 1, ...); no links."""
    jobs = []
    for p in path.iterdir():
        if is_plain_folder(p) and is_run_folder(p):
            jobs.append(p)
            if len(jobs) > MAX_JOBS:
                raise GenlabError(f"{path} holds more than {MAX_JOBS:,} run folders: report a part of them")
    return sorted(jobs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def open_png(path: Path, root: Path | None = None):
    """A PNG of a run folder, decoded as untrusted input: no link, at most MAX_PNG bytes, a real PNG header, no
    decompression bomb; one line otherwise."""

    data = files.read_bytes(path, files.MAX_PNG, root=root, what="PNG")
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise GenlabError(f"{path} is not a PNG image")
    return open_image(io.BytesIO(data), "RGB", label=path)


# ---- drawing --------------------------------------------------------------------------------------------
def pick_epochs(epochs: list[int], most: int = 6, wanted: list[int] | None = None) -> list[int]:
    """Up to `most` epochs evenly spread from the first to the last; or, with `wanted` (e.g. the report's
    1, 11, ..., 51), the saved epoch nearest each wanted one."""
    if wanted:
        return list(dict.fromkeys(min(epochs, key=lambda e: (abs(e - w), e)) for w in wanted))
    if len(epochs) <= most:
        return epochs
    positions = [round(i * (len(epochs) - 1) / (most - 1)) for i in range(most)]
    return [epochs[i] for i in dict.fromkeys(positions)]


def progression_strip(grids: dict[int, Path], epochs: list[int], height: int = 240,
                      root: Path | None = None) -> Image.Image:
    """The grids of `epochs` side by side at one height, each titled with its epoch (figures more than twice as
    wide as high one under another)."""
    font = ImageFont.load_default()
    tiles = []
    for epoch in epochs:
        image = open_png(grids[epoch], root)
        if True:
            scale = min(1.0, height / image.height) if image.height > height else height / image.height
            tiles.append(image.resize((max(1, round(image.width * scale)), round(image.height * scale)),
                                      Image.NEAREST if scale > 1 else Image.LANCZOS))
    gap, top = 8, 18
    stacked = bool(tiles) and tiles[0].width > 2 * tiles[0].height  # wide figures (a flow's density panels)
    if stacked:
        size = (max(t.width for t in tiles) + 2 * gap, sum(t.height + top for t in tiles) + gap * (len(tiles) + 1))
    else:
        size = (sum(t.width for t in tiles) + gap * (len(tiles) + 1), height + top + gap)
    strip = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(strip)
    x = y = gap
    for epoch, tile in zip(epochs, tiles):
        draw.text((x, y if stacked else 3), f"epoch {epoch}", fill=(0, 0, 0), font=font)
        strip.paste(tile, (x, y + top if stacked else top))
        if stacked:
            y += tile.height + top + gap
        else:
            x += tile.width + gap
    return strip


def overlaid_curves(runs: list[RunFolder], labels: list[str], path: Path, title: str) -> list[str]:
    """One panel per scalar that two or more jobs logged, a line per job. Returns the scalars drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts: dict[str, int] = {}
    for run in runs:
        for name in {k for r in run.records for k in r if k not in NOT_CURVES}:
            counts[name] = counts.get(name, 0) + 1
    names = sorted(n for n, c in counts.items() if c >= min(2, len(runs)))
    names.sort(key=lambda n: (0 if "loss" in n else 1 if n.startswith("test_") else 2, n))
    names = names[:12]
    if not names:
        return []
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.4 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for run, label in zip(runs, labels):
            points = [(r["step"], r[name]) for r in run.records if isinstance(r.get(name), (int, float))]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, label=label, linewidth=1.2, marker="o" if len(xs) < 4 else None)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    handles, legend_labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, legend_labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8,
               bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06 + 0.02 * math.ceil(len(labels) / 4), 1, 1))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))
    return names


# ---- the report -----------------------------------------------------------------------------------------
EVAL_CAPTIONS = {"roc": "ROC curve of the score (and of the complexity-corrected score)",
                 "pr": "precision-recall curve, the unusual images positive",
                 "scores": "histograms of the score, normal against unusual images"}


# a line at the bottom of a page says whether every figure loaded (a moved or missing PNG shows there)
STATUS = ('<p id="status"></p><script>window.addEventListener("load",function(){'
          'var i=Array.from(document.images),ok=i.filter(function(x){return x.complete&&x.naturalWidth>0});'
          'document.body.dataset.imagesLoaded=ok.length;document.body.dataset.imagesTotal=i.length;'
          'document.getElementById("status").textContent=ok.length+" of "+i.length+" figures loaded";'
          "});</script>")
STYLE = ("<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
         "figure{margin:1.5em 0}img{max-width:100%;border:1px solid #ddd}figcaption{color:#555;font-size:.9em}"
         "table{border-collapse:collapse;font-size:.85em;margin:1em 0}td,th{border:1px solid #ccc;"
         "padding:.25em .5em;text-align:left}#status{color:#777;font-size:.8em}"
         ".gallery{display:flex;flex-wrap:wrap;gap:1em}.gallery figure{width:260px;margin:.5em 0}</style>")


class Report:
    def __init__(self, out: Path, epochs: list[int] | None = None):
        self.out = out
        self.epochs = epochs  # which epochs the progression strips show (None: six spread evenly)
        self.sections: list[Section] = []
        self.console_tables: list[tuple[str, list[str], list[list[str]]]] = []
        self.notes: list[str] = []  # what was left out, and why (a damaged or linked file of a run)
        self.reading: Path | None = None  # the run folder being added (its links are not followed)

    def save_image(self, image: Image.Image, name: str) -> str:
        atomic_write(self.out / name, lambda tmp: image.save(tmp, format="PNG"))
        return name

    def copy(self, source: Path, name: str) -> str:
        """A PNG of the run being added, checked (open_png below), into the report as `name`."""
        open_png(source, self.reading).close()  # a real PNG, no link, not too large
        files.copy_file(source, self.out / name, source_root=self.reading)
        return name

    def add_run(self, run: RunFolder, prefix: str) -> None:

        self.reading = run.path
        section = Section(f"{run.label} ({run.path})")
        self.sections.append(section)
        self._add_progressions(run, section, prefix)
        self._add_curves(run, section, prefix)
        self._add_family_figures(run, section, prefix)
        record = run.metrics_record()
        metrics = record.get("metrics", {})
        # the figures `genlab eval` drew (anomaly and out-of-distribution ROC, PR, score histograms)
        self._add_eval_figures(run, section, prefix, record.get("figures", {}))
        if metrics:
            rows = [[k, f"{v['value']:.4g}", _brief(v.get("protocol", {}))] for k, v in metrics.items()]
            section.table = (["metric", "value", "protocol"], rows)
        self.notes += [f"{run.path}: {note}" for note in run.notes]

    def _add_progressions(self, run: RunFolder, section: Section, prefix: str) -> None:
        """A progression strip per visual the run saved at two epochs or more; a failed strip becomes a note."""
        for visual, grids in run.grids().items():
            epochs = pick_epochs(sorted(grids), wanted=self.epochs)
            if len(epochs) < 2:
                continue
            try:
                name = self.save_image(progression_strip(grids, epochs, root=run.path),
                                       f"{prefix}progression_{visual}.png")
            except GenlabError as err:
                run.notes.append(f"the {visual} progression strip: {err}")
                continue
            what = "fixed-noise samples" if visual == "samples" else visual.replace("_", " ")
            section.figures.append(Figure(name, f"{what} at epochs {', '.join(map(str, epochs))} "
                                                f"(epoch 0 = untrained)"))

    def _add_curves(self, run: RunFolder, section: Section, prefix: str) -> None:
        """The run's training curves, in the panels its family groups them into, when it logged any."""
        if run.records:
            groups = MODELS[run.model].curve_groups if run.model in MODELS else {}
            name = f"{prefix}curves.png"
            if draw_curves(run.records, self.out / name, groups, run.label):
                panels = ", ".join(f"{title} ({' / '.join(m)})" for title, m in groups.items()) or "every scalar"
                section.figures.append(Figure(name, f"training curves against the step; panels: {panels}"))

    def _add_family_figures(self, run: RunFolder, section: Section, prefix: str) -> None:
        """The figures the run's family draws itself; a failed one becomes a note."""
        for fn in FAMILY_FIGURES.get(run.model, []):
            try:
                section.figures.extend(fn(run, self, prefix))
            except GenlabError as err:
                run.notes.append(f"a figure of {run.model}: {err}")

    def _add_eval_figures(self, run: RunFolder, section: Section, prefix: str, figures: dict) -> None:
        """The PNGs `genlab eval` recorded, each a plain file inside the run copied in; a failed copy becomes a note."""
        for name, relative in figures.items():
            source = run.path / str(relative)
            if not _plain_name(str(name)) or not _inside(run.path, source) or source.suffix != ".png" or \
                    not source.is_file():
                continue
            caption = EVAL_CAPTIONS.get(str(name).rsplit("_", 1)[-1], "a figure of genlab eval")
            try:
                section.figures.append(Figure(self.copy(source, f"{prefix}eval_{name}.png"),
                                              f"{str(name).split('_')[0]}: {caption}", True))
            except GenlabError as err:
                run.notes.append(f"{relative}: {err}")

    def add_multirun(self, folder: Path, prefix: str) -> None:
        jobs = [RunFolder(p) for p in jobs_of(folder)]
        for job in jobs:
            self.notes += [f"{job.path}: {note}" for note in job.notes]
        if not jobs:
            raise GenlabError(f"{folder} holds no run folders (no metrics.jsonl or checkpoints/last.pt inside)")
        swept = swept_parameters([j.overrides() for j in jobs])
        labels = [", ".join(f"{k}={v}" for k, v in params.items()) or job.path.name
                  for job, params in zip(jobs, swept)]
        finals = [j.final() for j in jobs]
        metrics = [{k: v["value"] for k, v in j.metrics().items()} for j in jobs]
        scalar_names = sorted({k for f in finals for k in f if k not in NOT_CURVES},
                              key=lambda n: (0 if "loss" in n else 1, n))
        metric_names = sorted({k for m in metrics for k in m})
        param_names = list(dict.fromkeys(k for params in swept for k in params))
        header = ["job", *param_names, *scalar_names, *metric_names]
        rows = []
        for job, params, final, metric in zip(jobs, swept, finals, metrics):
            rows.append([job.path.name, *[str(params.get(k, "")) for k in param_names],
                         *[_number(final.get(k)) for k in scalar_names], *[_number(metric.get(k)) for k in metric_names]])
        write_csv(self.out / f"{prefix}sweep.csv", header, rows)
        write_markdown(self.out / f"{prefix}sweep.md", header, rows)
        self.console_tables.append((f"sweep {folder}", header, rows))
        section = Section(f"sweep {folder}: {len(jobs)} jobs", table=(header, rows),
                          note=f"final value of each scalar; also in {prefix}sweep.csv and {prefix}sweep.md")
        name = f"{prefix}sweep_curves.png"
        drawn = overlaid_curves(jobs, labels, self.out / name, f"{jobs[0].label}: {len(jobs)} jobs")
        if drawn:
            section.figures.append(Figure(name, f"every job's curves overlaid ({', '.join(drawn)}); "
                                                "the legend gives each job's swept values"))
        for job, label in zip(jobs, labels):
            grids = job.grids().get("samples")
            if grids:
                last = max(grids)
                self.reading = job.path
                try:
                    section.figures.append(Figure(self.copy(grids[last], f"{prefix}job{job.path.name}_samples.png"),
                                                  f"job {job.path.name} ({label}): samples at epoch {last}", True))
                except GenlabError as err:
                    self.notes.append(f"{job.path}: samples/{grids[last].name}: {err}")
        self.sections.append(section)

    def write_index(self, title: str) -> Path:
        parts = [
            "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">', MARKER,
            f"<title>{html.escape(title)}</title>",
            STYLE + "</head><body>",
            f"<h1>{html.escape(title)}</h1>",
        ]
        for section in self.sections:
            parts.append(f"<h2>{html.escape(section.title)}</h2>")
            if section.note:
                parts.append(f"<p>{html.escape(section.note)}</p>")
            if section.table:
                header, rows = section.table
                parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
                parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
                parts.append("</table>")
            large = [f for f in section.figures if not f.thumbnail]
            small = [f for f in section.figures if f.thumbnail]
            parts += [_figure_html(f) for f in large]
            if small:
                parts.append('<div class="gallery">' + "".join(_figure_html(f) for f in small) + "</div>")
        parts.append(STATUS + "</body></html>")
        path = self.out / "index.html"
        atomic_write(path, lambda tmp: Path(tmp).write_text("\n".join(parts) + "\n"))
        return path


def _figure_html(figure: Figure) -> str:
    return (f'<figure><img src="{html.escape(figure.file)}" alt="{html.escape(figure.caption)}">'
            f"<figcaption>{html.escape(figure.caption)}</figcaption></figure>")


def swept_parameters(overrides: list[list[str]]) -> list[dict[str, str]]:
    """Per job, the overrides whose value differs between jobs (the swept ones)."""
    parsed = [dict(o.split("=", 1) for o in job if "=" in o) for job in overrides]
    keys = list(dict.fromkeys(k for job in parsed for k in job))
    varying = [k for k in keys if len({job.get(k) for job in parsed}) > 1]
    return [{k: job.get(k, "") for k in varying} for job in parsed]


def _number(value) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _brief(protocol: dict) -> str:
    keep = ("n_generated", "n_real", "real_split", "split", "image_size")
    return ", ".join(f"{k}={protocol[k]}" for k in keep if k in protocol)


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    def write(tmp):
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)

    atomic_write(path, write)


def write_markdown(path: Path, header: list[str], rows: list[list[str]]) -> None:
    cell = lambda c: str(c).replace("|", "\\|")
    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    atomic_write(path, lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))


def build_report(paths: list[Path], out: Path | None, epochs: list[int] | None = None,
                 overwrite: bool = False) -> tuple[Report, Path]:
    paths = [Path(p).expanduser() for p in paths]
    for path in paths:
        if not path.is_dir():
            raise GenlabError(f"{path} is not a folder: pass run folders or multirun folders")
        if not is_run_folder(path) and not jobs_of(path):
            raise GenlabError(f"{path} is neither a run folder nor a multirun folder (no metrics.jsonl, no jobs)")
    if out is None and len(paths) == 1:
        out = paths[0] / "report"
        files.declare(paths[0], replace=True, what="the run folder")  # genlab made it: its report/ is genlab's
    else:
        out = Path("report") if out is None else Path(out).expanduser()
        allowed = overwrite or _is_report(out) or not os.path.lexists(out)
        inside = [p for p in paths if files.absolute(p) in files.absolute(out).parents]
        # -o inside a run folder: the run folder is the root, so its links are refused on the way to the report
        files.declare(inside[0] if inside else out, replace=allowed, what="the report folder")
        if os.path.isdir(out) and any(os.scandir(out)) and not (overwrite or _is_report(out)):
            raise GenlabError(f"{out} already exists and is not a genlab report: pass a new or empty folder with -o, "
                              "or --overwrite to replace the report's files in it")
    try:
        files.make_folder(out)
    except OSError as err:
        raise GenlabError(f"cannot make the report folder {out} ({err.strerror or err}); pass --out DIR") from None

    report = Report(out, epochs)
    with bar("building the report", total=len(paths), unit="folders") as advance:
        for i, path in enumerate(paths):
            prefix = f"{i}_" if len(paths) > 1 else ""
            if is_run_folder(path):
                report.add_run(RunFolder(path), prefix)
            else:
                report.add_multirun(path, prefix)
            advance(1)
    title = "genlab report: " + ", ".join(p.name for p in paths)
    return report, report.write_index(title)


def _is_report(folder: Path) -> bool:
    """A folder genlab's report wrote (its index.html carries genlab's generator mark)."""
    index = Path(folder) / "index.html"
    try:
        return MARKER.encode() in files.read_bytes(index, 64 << 20, root=folder, what="report page")[:4096]
    except GenlabError:
        return False


def _plain_name(name: str) -> bool:
    return 0 < len(name) <= 100 and name.replace("_", "").replace("-", "").isalnum()


def _inside(root: Path, path: Path) -> bool:
    """`path` is below `root` with no link on the way."""
    try:
        relative = path.relative_to(root)
    except ValueError:
        return False
    if ".." in relative.parts:
        return False
    current = root
    for part in relative.parts:
        current = current / part
        if current.is_symlink():
            return False
    return True


# ---- the families' own figures --------------------------------------------------------------------------
