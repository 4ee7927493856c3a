"""genlab/core/files.py: the one rule every write goes through (only inside a declared folder, never through a link,
never over a file that was there unless allowed, what was made recorded), untrusted reads, and a check of
genlab's source that nothing writes around it."""

import ast
import os
from pathlib import Path

import pytest

from genlab.core import files
from genlab.core.errors import GenlabError


@pytest.fixture
def areas():
    """The folders this test may write into; the process's own are put back after it."""
    saved = list(files._AREAS)
    files._AREAS.clear()
    yield files
    files._AREAS[:] = saved


def _write(path, text="new"):
    return files.write(path, lambda tmp: Path(tmp).write_text(text))


def test_a_write_outside_every_declared_folder_is_refused(tmp_path, areas):
    files.declare(tmp_path / "run", replace=True)
    _write(tmp_path / "run" / "a" / "b.txt")
    assert (tmp_path / "run" / "a" / "b.txt").read_text() == "new"
    for outside in (tmp_path / "elsewhere.txt", tmp_path / "run" / ".." / "escape.txt", Path("/tmp/genlab_x.txt")):
        with pytest.raises(GenlabError, match="outside every folder this command may write"):
            _write(outside)
        assert not outside.exists()


def test_no_write_goes_through_a_link_below_the_folder(tmp_path, areas):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "notes.txt").write_text("mine")
    run = tmp_path / "run"
    run.mkdir()
    (run / "report").symlink_to(victim)
    (run / "metrics.jsonl").symlink_to(victim / "notes.txt")
    files.declare(run, replace=True, what="the run folder")
    with pytest.raises(GenlabError, match="report is a link: genlab does not write through links"):
        _write(run / "report" / "index.html")
    with pytest.raises(GenlabError, match="metrics.jsonl is a link"):
        files.append(run / "metrics.jsonl")
    with pytest.raises(GenlabError, match="metrics.jsonl is a link"):
        _write(run / "metrics.jsonl")
    with pytest.raises(GenlabError, match="report is a link"):
        files.make_folder(run / "report" / "sub")
    assert sorted(p.name for p in victim.iterdir()) == ["notes.txt"] and (victim / "notes.txt").read_text() == "mine"
    # the folder the user named may itself be a link: it is theirs to name
    named = tmp_path / "named"
    named.symlink_to(victim)
    files.declare(named, replace=False)
    _write(named / "out.png")
    assert (victim / "out.png").read_text() == "new"


def test_an_existing_file_is_replaced_only_where_allowed(tmp_path, areas):
    (tmp_path / "out.png").write_text("the user's own")
    files.declare(tmp_path, replace=False, hint="pass --overwrite to replace it")
    with pytest.raises(GenlabError, match="out.png already exists: pass --overwrite to replace it"):
        _write(tmp_path / "out.png")
    assert (tmp_path / "out.png").read_text() == "the user's own"
    _write(tmp_path / "fresh.png", "1")
    _write(tmp_path / "fresh.png", "2")  # what this process made it may write again
    assert (tmp_path / "fresh.png").read_text() == "2"
    files.write(tmp_path / "out.png", lambda tmp: Path(tmp).write_text("asked for"), replace=True)
    assert (tmp_path / "out.png").read_text() == "asked for"
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left by the refused writes


def test_a_failed_start_removes_only_what_this_process_made(tmp_path, areas):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "thesis.tex").write_text("months of work")
    files.declare(shared, replace=False)
    _write(shared / "metrics.jsonl")
    files.make_folder(shared / "samples")
    _write(shared / "samples" / "epoch_000.png")
    (shared / "other_program.log").write_text("written during the start")  # not ours
    (shared / "samples" / "theirs.png").write_text("put into our folder")
    _write(shared / "curves.png")
    (shared / "theirs.tmp").write_text("another program's file, renamed over ours")  # a new inode: theirs now
    os.replace(shared / "theirs.tmp", shared / "curves.png")
    removed = files.remove_made(shared)
    assert sorted(p.name for p in removed) == ["metrics.jsonl", "samples"]
    assert sorted(p.name for p in shared.iterdir()) == ["curves.png", "other_program.log", "thesis.tex"]


def test_untrusted_reads_refuse_links_and_non_files_and_cap_sizes(tmp_path):
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("secret")
    (run / "link.png").symlink_to(tmp_path / "secret.txt")
    (run / "linked_dir").symlink_to(tmp_path)
    (run / "big.jsonl").write_bytes(b"x" * 2000)
    with pytest.raises(GenlabError, match="link.png is a link"):
        files.read_bytes(run / "link.png", 100, root=run)
    with pytest.raises(GenlabError, match="linked_dir is a link"):
        files.read_bytes(run / "linked_dir" / "secret.txt", 100, root=run)
    with pytest.raises(GenlabError, match="not a regular file"):
        files.read_bytes(run / "samples", 100, root=run)
    with pytest.raises(GenlabError, match="2,000 bytes, more than the 1,000 genlab reads"):
        files.read_bytes(run / "big.jsonl", 1000, root=run)
    # lines: an over-long one is skipped without being held, a binary one too
    (run / "m.jsonl").write_bytes(b"first\n" + b"y" * 5000 + b"\n\xff\xfe\n" + b"last\n")
    assert list(files.read_lines(run / "m.jsonl", max_line=100)) == ["first", "last"]


def test_a_yaml_alias_bomb_is_refused_without_expanding_it(tmp_path):
    from tests.hostile import ALIAS_BOMB

    assert files.yaml_nodes("a: [1, 2]\nb: {c: 3}\n") < 20
    with pytest.raises(GenlabError, match="expands to more than 200,000 YAML nodes"):
        files.check_yaml_text(ALIAS_BOMB, "bomb.yaml")  # 9**9 nodes expanded; counted in a few hundred steps
    with pytest.raises(GenlabError, match="is not valid YAML"):
        files.check_yaml_text("a: !!python/object/apply:os.system ['true']\n", "evil.yaml")


# ---- the source: every write goes through genlab/core/files.py ---------------------------------------------------

GENLAB = Path(__file__).resolve().parent.parent / "genlab"
# rundir makes the run folder and the folders above it (before any area exists); files.py is the rule itself
OWN = {"core/files.py", "train/rundir.py"}
# calls that write, by the end of their name
WRITES = (".write_text", ".write_bytes", ".mkdir", "os.mkdir", "os.makedirs", "os.replace", "os.rename",
          "shutil.copyfile", "shutil.copy", "shutil.copy2", "shutil.copytree", "shutil.move", ".save", ".savefig",
          "np.save", "tempfile.mkdtemp", "tempfile.mkstemp", "tempfile.TemporaryDirectory", "np.memmap",
          "SummaryWriter", "os.open", "open", "wandb.init", ".touch", ".rename", ".symlink_to", "os.symlink",
          "os.link", ".hardlink_to")
# a writer callback fills the temporary file files.write hands it (tmp), or a buffer in memory
SAFE_TARGETS = {"tmp", "buffer"}
# the few writes that go around files.write, each with why it keeps the rule
ALLOWED = {
    ("data/cache.py", "np.memmap"): "maps a file made by files.mkstemp_in, published by files.publish",
    ("data/cache.py", "os.open"): "reserves the blocks of that same file (posix_fallocate)",
    ("train/loggers.py", "SummaryWriter"): "writes inside RUN/tb, made by files.prepare_folder (never a link)",
    ("train/loggers.py", "wandb.init"): "writes inside RUN/wandb, made by files.prepare_folder (never a link)",
    ("eval/inception.py", "tempfile.TemporaryDirectory"): "a fresh temporary folder, declared before it is written",
    ("train/runs.py", ".save"): "a PNG into a staging folder made by files.stage_folder",
    ("core/errors.py", "os.open"): "/dev/null onto a closed terminal's descriptors (SIGHUP)",
}


def _writes_around_the_rule(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        opens = name == "open" or (name.endswith(".open") and name != "os.open")  # open(), Path.open, gzip.open
        if opens:
            position = 1 if name == "open" or name.startswith(("gzip.", "bz2.", "lzma.", "io.")) else 0
            mode = node.args[position] if len(node.args) > position else next(
                (k.value for k in node.keywords if k.arg == "mode"), None)
            if not (isinstance(mode, ast.Constant) and set(str(mode.value)) & set("wax+")):
                continue  # a read (Image.open(path), writer.open(...), open(path))
        elif not any(name == w or w.startswith(".") and name.endswith(w) or name.endswith("." + w) and w != "open"
                     for w in WRITES):
            continue
        targets = {ast.unparse(a) for a in node.args} | {ast.unparse(k.value) for k in node.keywords}
        receiver = ast.unparse(node.func.value) if isinstance(node.func, ast.Attribute) else ""
        if targets & SAFE_TARGETS or receiver in {"Path(tmp)"}:
            continue
        relative = str(path.relative_to(GENLAB)) if GENLAB in path.parents else path.name
        if any((relative, w) in ALLOWED for w in WRITES if name.endswith(w)):
            continue
        found.append((node.lineno, f"{relative}:{node.lineno}: {ast.unparse(node)[:100]}"))
    return [text for _, text in sorted(found)]


def test_genlab_writes_only_through_the_one_rule():
    offenders = []
    for path in sorted(GENLAB.rglob("*.py")):
        if path.relative_to(GENLAB).as_posix() in OWN:
            continue
        offenders += _writes_around_the_rule(path)
    assert not offenders, "writes that do not go through genlab/core/files.py:\n" + "\n".join(offenders)


def test_the_source_check_finds_a_write_around_the_rule(tmp_path):
    sample = tmp_path / "probe.py"
    sample.write_text("import gzip\nfrom pathlib import Path\n\ndef f(out):\n    Path(out).write_text('x')\n    "
                      "open(out, 'a').write('y')\n    open(out).read()\n    Path(out).open('w')\n    "
                      "gzip.open(out, 'wb')\n    Path(out).open().read()\n    Path(out).touch()\n    "
                      "Path(out).symlink_to('/etc')\n")
    found = _writes_around_the_rule(sample)
    assert [f.split(": ", 1)[1].split("(")[0] for f in found] == \
        ["Path", "open", "Path", "gzip.open", "Path", "Path"], found
