"""A book's page: BOOK/index.html and its PNGs in BOOK/figures/, the report's sections in order.

Under each section: every figure the report shows, made from the book's runs by `genlab report`'s own drawing
(the same strips, curves and family figures), each captioned with what the report shows and the exact commands
that made it; then a table of the numbers the report states: the report's value and protocol, ours and its
protocol, and whether the two are comparable. A figure or a number of a run trained on an offline stand-in
or shortened by --quick says so where it stands.
"""

from __future__ import annotations

import html
import shlex
from dataclasses import dataclass
from pathlib import Path

from genlab.app import compose
from genlab.app.bookrun import Plan, jobs
from genlab.app.books import PLACEHOLDER, BookFigure, Number, Run
from genlab.app.report import STATUS, STYLE, Report, RunFolder, _brief
from genlab.core import files
from genlab.core.errors import GenlabError
from genlab.core.figures import Figure
from genlab.core.registry import DATASETS
from genlab.data.base import DataSpec
from genlab.models import build_model

PAGE_MARK = '<meta name="generator" content="genlab book">'


@dataclass
class Drawn:
    figures: dict[str, Figure]  # the run's report figures by name (progression_samples, curves, ...)
    report_command: str


def draw(plan: Plan) -> dict[str, Drawn]:
    """Every run's `genlab report` figures into BOOK/figures/, named <run>_<figure>.png."""
    report = Report(plan.out / "figures")
    drawn: dict[str, Drawn] = {}
    for run in plan.book.runs:
        found = jobs(plan, run)
        if not found:
            continue
        report.epochs = run.epochs
        before = len(report.sections)
        prefix = f"{run.id}_"
        if len(found) == 1:
            report.add_run(RunFolder(found[0]), prefix)
        else:
            report.add_multirun(plan.folder(run.id), prefix)
        figures = {Path(f.file).stem.removeprefix(prefix): f for s in report.sections[before:] for f in s.figures}
        target = found[0] if len(found) == 1 else plan.folder(run.id)
        epochs = f" --epochs {','.join(map(str, run.epochs))}" if run.epochs else ""
        drawn[run.id] = Drawn(figures, f"genlab report {shlex.quote(str(target))}{epochs}")
    plan.notes = report.notes
    return drawn


def _file_figure(plan: Plan, report: Report, item: BookFigure) -> Figure:
    """A PNG a run's command wrote (genlab reconstruct ...), copied in, checked."""
    job = plan.job(item.run)
    report.reading = job
    name = f"{item.run}_{Path(item.file).stem}.png"
    return Figure(report.copy(job / item.file, name), f"{item.file} of {job}")


def train_command(plan: Plan, run: Run) -> str:
    return "genlab train -m " + shlex.join(plan.line(run)) + f" hydra.sweep.dir={shlex.quote(str(plan.folder(run.id)))}"


def label(plan: Plan, run: Run) -> str:
    """What makes a run not the report's: an offline stand-in, a --quick shortening."""
    parts = []
    if plan.stand_in(run):
        parts.append(f"offline stand-in for {run.needs} ({' '.join(plan.line(run)[:2])})")
    if plan.quick:
        parts.append("--quick (shortened)")
    return "; ".join(parts)


# ---- numbers ---------------------------------------------------------------------------------------------
def our_number(plan: Plan, item: Number) -> tuple[float | None, str]:
    """Our value and its protocol in words; None and the reason where there is none."""
    job = plan.job(item.run, item.job)
    if item.parameters:
        return _parameters(plan, item)
    folder = RunFolder(job)
    if item.metric:
        metrics = folder.metrics()
        name = next((m for m in item.metric if m in metrics), None)
        if name is None:
            return None, f"{' or '.join(item.metric)} not in {job}/metrics.json (genlab eval {job})"
        found = metrics[name]
        protocol = found.get("protocol", {})
        words = _brief(protocol) or ", ".join(f"{k}={v}" for k, v in list(protocol.items())[:4])
        return float(found["value"]), f"genlab eval {name}: {words}"
    final = folder.final()
    if item.scalar not in final:
        return None, f"{item.scalar} was not logged by {job}"
    last = folder.records[-1] if folder.records else {}
    return float(final[item.scalar]), f"last logged value (step {last.get('step')}, epoch {last.get('epoch')})"


def _parameters(plan: Plan, item: Number) -> tuple[float | None, str]:
    """Parameters of one network of the model the report's line builds (no data, no training needed)."""
    run = plan.book.run(item.run)
    cfg = compose.compose([w for w in run.train if not PLACEHOLDER.search(w)])
    try:
        model = build_model(cfg, _spec_of(cfg))
        net = getattr(model, item.parameters)
    except (AttributeError, GenlabError) as err:
        return None, f"cannot build {item.parameters} of {' '.join(run.train)}: {err}"
    count = sum(p.numel() for p in net.parameters())
    return float(count), f"{item.parameters} of `genlab train {' '.join(run.train)}`, built (no training)"


def _spec_of(cfg):
    """The shape of the report's data from its config alone (its files need not be here)."""
    kind = DATASETS[cfg.data.name].kind
    channels, size = int(cfg.data.get("channels", 3)), int(cfg.data.size)
    shape = [channels, size, size]
    shapes = {"a": shape, "b": shape} if kind in ("paired", "unpaired") else {}
    return DataSpec(str(cfg.data.name), channels, size, kind=kind, shapes=shapes)


def comparable(plan: Plan, item: Number, value) -> str:
    run = plan.book.run(item.run)
    why = []
    if value is None:
        return "no: not measured"
    if not item.same_protocol:
        why.append("another protocol (see both)")
    if not item.parameters and plan.stand_in(run):
        why.append(f"stand-in data, not {run.needs}")
    if not item.parameters and plan.quick:
        why.append("--quick run")
    return "yes: same data and protocol" if not why else "no: " + "; ".join(why)


def _value(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if float(value).is_integer() and abs(value) >= 1000:
        return f"{int(value):,}"
    return f"{value:.4g}"


# ---- the page --------------------------------------------------------------------------------------------
def write_page(plan: Plan) -> tuple[Path, list[str]]:
    """BOOK/index.html; returns it and the figures that are missing (a run that drew none of that kind)."""
    drawn = draw(plan)
    report = Report(plan.out / "figures")
    missing: list[str] = []
    book = plan.book
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">', PAGE_MARK,
             f"<title>{html.escape(book.title)}</title>", STYLE + "</head><body>",
             f"<h1>{html.escape(book.title)}</h1>", f"<p>{html.escape(book.about)}</p>", _mode_html(plan)]
    for section in book.sections:
        parts += [f"<h2>{html.escape(section.title)}</h2>", f"<p>{html.escape(section.text)}</p>"]
        parts += [_run_html(plan, run) for run in section.runs]
        for item in section.figures:
            parts.append(_figure_html(plan, report, drawn, item, missing))
        if section.numbers:
            parts.append(_numbers_html(plan, section.numbers))
    parts.append(STATUS + "</body></html>")
    path = plan.out / "index.html"
    files.write(path, lambda tmp: Path(tmp).write_text("\n".join(parts) + "\n"))
    return path, missing


def _mode_html(plan: Plan) -> str:
    lines = []
    if plan.missing:
        lines.append("Offline: " + "; ".join(f"{d} was not found, its runs use the stand-in line"
                                             for d in plan.missing))
    if plan.quick:
        lines.append("--quick: every run is shortened to minutes, so no number below is the report's protocol.")
    return "".join(f'<p class="mode"><b>{html.escape(line)}</b></p>' for line in lines)


def _run_html(plan: Plan, run: Run) -> str:
    tag = label(plan, run)
    text = f"<code>{html.escape(train_command(plan, run))}</code>"
    return f"<p>run <b>{run.id}</b>{' [' + html.escape(tag) + ']' if tag else ''}: {text}</p>"


def _figure_html(plan: Plan, report: Report, drawn: dict[str, Drawn], item: BookFigure, missing: list[str]) -> str:
    run = plan.book.run(item.run)
    made = drawn.get(run.id)
    try:
        figure = _file_figure(plan, report, item) if item.file else (made.figures.get(item.figure) if made else None)
    except GenlabError as err:
        figure, item_error = None, str(err)
    else:
        item_error = ""
    if figure is None:
        missing.append(f"{run.id}: {item.figure or item.file}")
        return (f'<p class="missing"><b>missing figure</b> {html.escape(item.figure or item.file)} of run '
                f"{run.id} {html.escape(item_error)}</p>")
    commands = [train_command(plan, run)]
    commands += [f"genlab {shlex.join(plan.argv(a, run.id))}" for a in run.after] if item.file else \
        [made.report_command]
    tag = label(plan, run)
    caption = (f"<b>The report:</b> {html.escape(item.report)}<br><b>Ours:</b> {html.escape(figure.caption)}"
               + (f" <b>[{html.escape(tag)}]</b>" if tag else "")
               + "<br>" + "<br>".join(f"<code>{html.escape(c)}</code>" for c in commands))
    return (f'<figure><img src="figures/{html.escape(figure.file)}" alt="{html.escape(item.report)}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _numbers_html(plan: Plan, numbers: list[Number]) -> str:
    rows = [("<table><tr><th>number</th><th>the report</th><th>its protocol</th><th>ours</th><th>our protocol</th>"
            "<th>comparable</th></tr>")]
    for item in numbers:
        value, protocol = our_number(plan, item)
        tag = label(plan, plan.book.run(item.run)) if not item.parameters else ""
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in (
            item.name, _value(item.report), item.protocol, _value(value),
            protocol + (f" [{tag}]" if tag else ""), comparable(plan, item, value))) + "</tr>")
    return "".join(rows) + "</table>"
