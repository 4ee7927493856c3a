"""Report books: what each seed report's experiments are, as genlab command lines, figures and numbers.

A book is a YAML file in genlab/app/books/ (its name is the file's stem). It holds the report's sections in
order; each section holds the runs that make its figures, the figures the report shows (each a figure of
`genlab report`, or a PNG a run's command wrote), and the numbers the report states beside the metric that
gives ours. books/seeds.yaml, kept beside the books, lists every figure and number of ../shared/SEEDS.md with
the book that holds it (a test walks it). Loading checks every field, so a mistyped book is one line.

    title: ...                  report: "001"        about: ...           time: {gpu: ..., cpu_quick: ...}
    sections:
      - title: ...              text: what the report does here
        runs:
          - id: maf             train: [experiment=maf_mnist]    the report's line (a sweep: a,b,c values)
            needs: mnist        the dataset the report's line reads (its folder is checked at the start)
            root: [data.root={root}/anime_faces]   where --data-root/--data puts its folder (this default:
                                data.root={root})
            offline: [...]      the whole stand-in line, where the dataset is missing and --offline is given
            quick: [...]        added by --quick (to either line)
            epochs: [1, 11]     the epochs of its progression strips
            eval: [--metrics, flow_timing]        `genlab eval JOB ...` after training (each job)
            after: [[reconstruct, "{run}", "{vae}", -o, "{run}/vae_samples.png"]]   more genlab commands
        figures:
          - {run: maf, figure: progression_samples, report: what the report shows}
          - {run: vqvae, file: vae_samples.png, report: ...}         a PNG of the run's job folder
        numbers:
          - {name: ..., report: 0.7782, protocol: the report's, run: maf_anomaly, metric: anomaly_auroc,
             same_protocol: true}      or  scalar: d_loss  (its last logged value)
                                       or  parameters: generator (of the net the report's line builds)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from genlab.core import files
from genlab.core.errors import GenlabError

BOOKS = Path(__file__).parent / "books"
INDEX = "seeds"  # books/seeds.yaml: every figure and number of SEEDS.md, and its book
ID = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")


@dataclass
class Run:
    id: str
    train: list[str]
    needs: str | None = None
    offline: list[str] | None = None
    quick: list[str] = field(default_factory=list)
    epochs: list[int] | None = None
    eval: list[str] | None = None
    after: list[list[str]] = field(default_factory=list)
    root: list[str] = field(default_factory=lambda: ["data.root={root}"])  # where --data-root DIR goes


@dataclass
class BookFigure:
    run: str
    report: str
    figure: str | None = None
    file: str | None = None


@dataclass
class Number:
    name: str
    report: float | str
    protocol: str
    run: str
    metric: list[str] | None = None  # metrics.json keys, the first found (set5_psnr_y, else heldout_psnr_y)
    scalar: str | None = None
    parameters: str | None = None
    same_protocol: bool = False
    job: int = 0


@dataclass
class Section:
    title: str
    text: str
    runs: list[Run]
    figures: list[BookFigure]
    numbers: list[Number]


@dataclass
class Book:
    name: str
    title: str
    report: str
    about: str
    time: dict
    sections: list[Section]

    @property
    def runs(self) -> list[Run]:
        return [run for section in self.sections for run in section.runs]

    def run(self, run_id: str) -> Run:
        return next(run for run in self.runs if run.id == run_id)

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(run.needs for run in self.runs if run.needs))


def names() -> list[str]:
    return sorted(p.stem for p in BOOKS.glob("*.yaml") if p.stem != INDEX)


def load(name: str) -> Book:
    """The book `name`, checked; an unknown name or a mistake in the file is one line."""
    if name not in names():
        raise GenlabError(f"no book named {name!r}; `genlab list books` shows them: {', '.join(names())}")
    raw = _read(BOOKS / f"{name}.yaml")
    where = f"book {name}"
    _keys(raw, where, {"title", "report", "about", "time", "sections"}, {"title", "report", "sections"})
    sections = [_section(s, f"{where}, section {i + 1}") for i, s in enumerate(_list(raw["sections"], where))]
    book = Book(name, _text(raw["title"], where), str(raw["report"]), _text(raw.get("about", ""), where),
                dict(raw.get("time") or {}), sections)
    _check_references(book)
    return book


def load_index() -> list[dict]:
    """books/seeds.yaml: one entry per figure or number of SEEDS.md (report, what, book, run, figure or number)."""
    raw = _read(BOOKS / f"{INDEX}.yaml")
    return _list(raw.get("entries"), "books/seeds.yaml") if isinstance(raw, dict) else []


def _read(path: Path):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(files.read_yaml(path, what="book"), resolve=False)


def _keys(raw, where: str, allowed: set[str], required: set[str]) -> None:
    if not isinstance(raw, dict):
        raise GenlabError(f"{where}: not a mapping")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise GenlabError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(allowed))})")
    missing = sorted(required - set(raw))
    if missing:
        raise GenlabError(f"{where}: {missing[0]!r} is missing")


def _list(value, where: str) -> list:
    if not isinstance(value, list):
        raise GenlabError(f"{where}: expected a list")
    return value


def _text(value, where: str) -> str:
    if not isinstance(value, str):
        raise GenlabError(f"{where}: expected text, got {value!r}")
    return value


def _words(value, where: str) -> list[str]:
    words = _list(value, where)
    if not all(isinstance(w, (str, int, float)) and not isinstance(w, bool) for w in words):
        raise GenlabError(f"{where}: expected a list of words")
    return [str(w) for w in words]


def _section(raw, where: str) -> Section:
    _keys(raw, where, {"title", "text", "runs", "figures", "numbers"}, {"title", "runs"})
    runs = [_run(r, f"{where}, run {i + 1}") for i, r in enumerate(_list(raw["runs"], where))]
    figures = [_figure(f, f"{where}, figure {i + 1}") for i, f in enumerate(_list(raw.get("figures") or [], where))]
    numbers = [_number(n, f"{where}, number {i + 1}") for i, n in enumerate(_list(raw.get("numbers") or [], where))]
    return Section(_text(raw["title"], where), _text(raw.get("text", ""), where), runs, figures, numbers)


def _run(raw, where: str) -> Run:
    _keys(raw, where, {"id", "train", "needs", "offline", "quick", "epochs", "eval", "after", "root"}, {"id", "train"})
    if not isinstance(raw["id"], str) or not ID.match(raw["id"]):
        raise GenlabError(f"{where}: id must be a short lower-case word, got {raw['id']!r}")
    offline = raw.get("offline")
    epochs = raw.get("epochs")
    if epochs is not None and not all(isinstance(e, int) and e >= 0 for e in _list(epochs, where)):
        raise GenlabError(f"{where}: epochs must be a list of epoch numbers")
    return Run(raw["id"], _words(raw["train"], where), raw.get("needs"),
               None if offline is None else _words(offline, where), _words(raw.get("quick") or [], where),
               epochs, None if raw.get("eval") is None else _words(raw["eval"], where),
               [_words(a, where) for a in _list(raw.get("after") or [], where)],
               _words(raw.get("root") or ["data.root={root}"], where))


def _figure(raw, where: str) -> BookFigure:
    _keys(raw, where, {"run", "figure", "file", "report"}, {"run", "report"})
    if ("figure" in raw) == ("file" in raw):
        raise GenlabError(f"{where}: give one of figure (a `genlab report` figure) or file (a PNG of the run)")
    return BookFigure(raw["run"], _text(raw["report"], where), raw.get("figure"), raw.get("file"))


def _number(raw, where: str) -> Number:
    sources = {"metric", "scalar", "parameters"}
    _keys(raw, where, {"name", "report", "protocol", "run", "same_protocol", "job", *sources},
          {"name", "report", "protocol", "run"})
    if len(sources & set(raw)) != 1:
        raise GenlabError(f"{where}: give one of metric, scalar or parameters (where our number comes from)")
    metric = raw.get("metric")
    metric = None if metric is None else [metric] if isinstance(metric, str) else _words(metric, where)
    return Number(_text(raw["name"], where), raw["report"], _text(raw["protocol"], where), raw["run"],
                  metric, raw.get("scalar"), raw.get("parameters"), bool(raw.get("same_protocol", False)),
                  int(raw.get("job", 0)))


def _check_references(book: Book) -> None:
    """Ids are unique; figures, numbers and placeholders name runs of the book, earlier runs for placeholders."""
    seen: list[str] = []
    for run in book.runs:
        if run.id in seen:
            raise GenlabError(f"book {book.name}: two runs named {run.id!r}")
        if run.needs and run.offline is None:
            raise GenlabError(f"book {book.name}, run {run.id}: needs {run.needs} but has no offline stand-in line")
        words = [*run.train, *(run.offline or []), *(w for a in run.after for w in a)]
        for ref in (m.group(1) for w in words for m in PLACEHOLDER.finditer(w)):
            if ref not in ("run", "root") and ref not in seen:
                raise GenlabError(f"book {book.name}, run {run.id}: {{{ref}}} names no earlier run")
        seen.append(run.id)
    for section in book.sections:
        for item in (*section.figures, *section.numbers):
            if item.run not in seen:
                raise GenlabError(f"book {book.name}, section {section.title!r}: {item.run!r} names no run")
