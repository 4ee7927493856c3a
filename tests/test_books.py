"""Report books (genlab book NAME): every figure and number of SEEDS.md in exactly one book, the books' lines
compose, a book runs end to end, continues after Ctrl-C without retraining, and its page loads every figure."""

import hashlib
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from genlab.app import books
from tests.conftest import GENLAB, run_cli
from tests.test_report import CHROMIUM, images_loaded_in_chromium

FIGURE = re.compile(r"^(progression_\w+|curves|\w+_final|sweep_curves|eval_\w+|reconstruct_\w+|job\d+_samples)$")
# a tiny book: every run one epoch of 128 images (the DCGAN stand-in at 64 px, the digits runs)
TINY = ["--offline", "--quick", "train.epochs=1", "data.limit=128"]


def test_every_figure_and_number_of_the_seeds_belongs_to_exactly_one_book():
    entries = books.load_index()
    assert len(entries) >= 60
    loaded = {name: books.load(name) for name in books.names()}
    assert sorted(loaded) == ["dcgan-celeba-lab", "flows-cyclegan", "vae-cvae-vqvae-pix2pix",
                              "vae-gans-infogan", "vae-gans-srgan"]
    assert len({(e["report"], e["what"]) for e in entries}) == len(entries)  # each listed once
    claimed = set()
    for entry in entries:
        book = loaded[entry["book"]]
        assert book.report == entry["report"], entry
        run = book.run(entry["run"])
        assert any(w.startswith(("experiment=", "model=")) for w in run.train), entry  # a preset or a model
        if "figure" in entry:
            key = ("figure", book.name, run.id, entry["figure"])
            assert FIGURE.match(entry["figure"]), entry
            assert [f for s in book.sections for f in s.figures if (f.run, f.figure or f.file) == key[2:]], entry
        else:
            key = ("number", book.name, run.id, entry["number"])
            numbers = [n for s in book.sections for n in s.numbers if (n.run, n.name) == key[2:]]
            assert len(numbers) == 1, entry
            number = numbers[0]
            assert number.metric or number.scalar or number.parameters, entry  # where ours comes from
            if number.metric:
                assert run.eval is not None, entry  # the run is evaluated, so metrics.json has it
        assert key not in claimed, entry
        claimed.add(key)
    # and the other way: every figure and number of every book is in the list
    for book in loaded.values():
        for section in book.sections:
            for f in section.figures:
                assert ("figure", book.name, f.run, f.figure or f.file) in claimed, (book.name, f)
            for n in section.numbers:
                assert ("number", book.name, n.run, n.name) in claimed, (book.name, n.name)


def test_every_line_of_every_book_composes(compose):
    """The report's line and the offline stand-in of every run, each job of a sweep: real options and keys."""
    from genlab.app.books import PLACEHOLDER
    from genlab.app.compose import sweep_variants
    from genlab.core.paths import group_options

    presets = group_options("experiment")
    for name in books.names():
        book = books.load(name)
        for run in book.runs:
            for line in filter(None, (run.train, run.offline)):
                words = [w for w in [*line, *run.quick] if not PLACEHOLDER.search(w)]
                assert all(w.partition("=")[2] in presets for w in words if w.startswith("experiment=")), words
                for variant in sweep_variants(words):
                    cfg = compose(*variant)
                    assert cfg.model.name and cfg.data.name, (name, run.id)


def test_a_book_that_cannot_find_its_data_says_so_per_dataset_and_leaves_nothing(tmp_path):
    out = run_cli(["book", "vae-gans-srgan"], tmp_path, env_extra={"GENLAB_DATA": str(tmp_path / "nothing")})
    assert out.returncode == 2
    lines = out.stdout.splitlines()
    for dataset in ("mnist", "celeba", "cifar10", "div2k"):
        assert len([line for line in lines if line.startswith(f"{dataset}: missing (")]) == 1, out.stdout
    assert out.stderr.strip().splitlines() == [
        ("genlab: the book vae-gans-srgan needs mnist, celeba, cifar10, div2k, not found (above): give the folders "
        "(--data-root DIR, or --data NAME=DIR), or run the stand-ins with --offline")]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["book", "no-such-book"], "no book named 'no-such-book'; `genlab list books` shows them"),
    (["book", "dcgan-celeba-lab", "-m"], "-m: the book decides its runs' folders, sweeps and resumes"),
    (["book", "dcgan-celeba-lab", "hydra.sweep.dir=/tmp/x"], "the book decides its runs' folders"),
    (["book", "dcgan-celeba-lab", "train.resume=x"], "the book decides its runs' folders"),
    (["book", "dcgan-celeba-lab", "epochs"], "'epochs' is not an override: pass KEY=VALUE"),
    (["book", "dcgan-celeba-lab", "--data", "mnist=/data"], "--data mnist: the book dcgan-celeba-lab reads celeba"),
    (["book", "dcgan-celeba-lab", "--data", "celeba"], "--data 'celeba': pass NAME=FOLDER"),
    (["book", "dcgan-celeba-lab", "--data-root", "my data"], "a data folder here is letters, digits"),
])
def test_bad_book_command_lines_are_one_line(tmp_path, args, message):
    out = run_cli(args, tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and list(tmp_path.iterdir()) == []


def test_a_book_folder_is_a_new_one_or_the_same_books(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    out = run_cli(["book", "dcgan-celeba-lab", "--offline", "-o", "mine"], tmp_path)
    assert out.returncode == 2 and "already holds files and is not a book folder" in out.stderr
    assert os.listdir(tmp_path / "mine") == ["notes.txt"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "book.json").write_text('{"generator": "genlab book", "book": "flows-cyclegan", "runs": {}}')
    out = run_cli(["book", "dcgan-celeba-lab", "--offline", "-o", "other"], tmp_path)
    assert out.returncode == 2 and "holds the book 'flows-cyclegan', not 'dcgan-celeba-lab'" in out.stderr
    (tmp_path / "other" / "book.json").write_text("{not json")
    out = run_cli(["book", "dcgan-celeba-lab", "--offline", "-o", "other"], tmp_path)
    assert out.returncode == 2 and "is not a book's state (not JSON)" in out.stderr


def test_list_books_shows_each_book_with_what_it_reads(tmp_path):
    out = run_cli(["list", "books"], tmp_path, env_extra={"COLUMNS": "250"})
    assert out.returncode == 0, out.stderr
    for name in books.names():
        assert name in out.stdout
    assert "celeba (fashion_mnist)" in out.stdout  # the dataset each reads and its offline stand-in


def _digest(path: Path) -> tuple[int, str]:
    return path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


def _book_stopped_after_its_first_run(cwd: Path, args: list[str]) -> tuple[int, str]:
    """Start the book as a terminal would (its own process group), Ctrl-C the group as the second run begins."""
    process = subprocess.Popen([*GENLAB, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    seen = []
    for line in process.stdout:  # blocking reads: the signal goes when the book says the second run starts
        seen.append(line)
        if line.startswith("[2/3] collapse"):
            os.killpg(process.pid, signal.SIGINT)
    return process.wait(timeout=300), "".join(seen)


def test_a_book_runs_end_to_end_and_continues_after_ctrl_c_without_retraining(tmp_path):
    args = ["book", "dcgan-celeba-lab", *TINY, "-o", "bk"]
    code, output = _book_stopped_after_its_first_run(tmp_path, args)
    assert code == 130, output
    assert "book dcgan-celeba-lab stopped; run the same command to continue" in output
    book = tmp_path / "bk"
    first = book / "runs" / "dcgan" / "0" / "checkpoints" / "last.pt"
    before = _digest(first)
    assert not (book / "index.html").exists()

    out = run_cli(args, tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    assert "dcgan: trained before, re-used" in out.stdout
    assert _digest(first) == before  # the finished run was not trained again
    for run in ("collapse", "vanishing"):
        assert (book / "runs" / run / "0" / "checkpoints" / "last.pt").is_file()
    page = (book / "index.html").read_text()
    assert "missing figure" not in page and "missing figure" not in out.stdout
    shown = re.findall(r'<img src="(figures/[^"]+)"', page)
    assert len(shown) == 6 and all((book / f).is_file() for f in shown)
    assert page.count("offline stand-in for celeba") >= 2 and "--quick" in page
    assert "genlab train -m experiment=gan_mode_collapse" in page  # each figure with the command that made it

    again = run_cli(args, tmp_path)  # a finished book: nothing trains, the page is written anew
    assert again.returncode == 0 and again.stdout.count("trained before, re-used") == 3
    assert "$ genlab train" not in again.stdout
    # the same folder with other settings would mix two books: one line, nothing trained or changed
    other = run_cli(["book", "dcgan-celeba-lab", *TINY, "train.batch_size=32", "-o", "bk"], tmp_path)
    assert other.returncode == 2 and "was trained with another command line" in other.stderr, other.stderr
    assert "$ genlab train" not in other.stdout and _digest(first) == before
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install chromium): the page was not opened")
    loaded, total = images_loaded_in_chromium(book / "index.html", tmp_path / "profile")
    assert total == 6 and loaded == total


@pytest.mark.slow
@pytest.mark.parametrize("name", books.names())
def test_each_whole_book_offline_quick_runs_and_its_page_shows_every_figure(tmp_path, name):
    out = run_cli(["book", name, "--offline", "--quick", "-o", "bk"], tmp_path, timeout=3600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    page = (tmp_path / "bk" / "index.html").read_text()
    book = books.load(name)
    expected = sum(len(s.figures) for s in book.sections)
    assert "missing figure" not in page
    assert len(re.findall(r'<img src="figures/', page)) == expected
    for section in book.sections:
        assert section.title.replace("'", "&#x27;") in page
        for number in section.numbers:
            assert number.name.replace("'", "&#x27;") in page
    if CHROMIUM is not None:
        loaded, total = images_loaded_in_chromium(tmp_path / "bk" / "index.html", tmp_path / "profile")
        assert total == expected and loaded == total


GOOD_RUN = "{id: a, train: [model=dcgan]}"


@pytest.mark.parametrize("sections, message", [
    ("[{title: s, runs: [{id: a, trian: [model=dcgan]}]}]", r"run 1: unknown key 'trian' \(known: "),
    (f"[{{title: s, runs: [{GOOD_RUN}], figures: [{{run: b, figure: curves, report: x}}]}}]", "'b' names no run"),
    ("[{title: s, runs: [{id: a, train: ['train.init_from={b}']}, {id: b, train: [model=vae]}]}]",
     r"run a: \{b\} names no earlier run"),
    ("[{title: s, runs: [{id: a, train: [model=dcgan], needs: celeba}]}]", "needs celeba but has no offline"),
    (f"[{{title: s, runs: [{GOOD_RUN}], numbers: [{{name: n, report: 1, protocol: p, run: a}}]}}]",
     "give one of metric, scalar or parameters"),
    (f"[{{title: s, runs: [{GOOD_RUN}, {GOOD_RUN}]}}]", "two runs named 'a'"),
])
def test_a_mistyped_book_is_one_line_when_loaded(tmp_path, monkeypatch, sections, message):
    from genlab.core.errors import GenlabError

    monkeypatch.setattr(books, "BOOKS", tmp_path)
    (tmp_path / "bad.yaml").write_text(f"title: t\nreport: '000'\nsections: {sections}\n")
    with pytest.raises(GenlabError, match=message):
        books.load("bad")
