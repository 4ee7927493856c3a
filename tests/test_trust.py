"""The second trust pass: no write outside a run folder by any route, no user file replaced unasked, the newer
commands (translate, upscale, sample, eval, report, reconstruct, completion) as clean as train, and no stop lost.
Each test is a row (or rows) of docs/reliability.md; tests/hostile.py makes the hostile folders."""

import gzip
import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests import hostile
from tests.conftest import GENLAB, run_cli
from tests.hostile import one_line_or_success, run_here

TINY = ["train.steps=2", "data.limit=64", "train.batch_size=32", "model.ngf=8", "model.ndf=8", "train.progress=none"]


def one_line(ran) -> str:
    """Exit 2 and one `genlab:` line (from run_cli's CompletedProcess or run_here's Ran)."""
    assert getattr(ran, "escaped", None) is None, repr(ran.escaped)
    assert ran.returncode == 2, (ran.returncode, ran.stdout[-2000:], ran.stderr[-2000:])
    lines = [line for line in ran.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("genlab: ") and "Traceback" not in ran.stdout + ran.stderr, \
        ran.stderr
    return lines[0]


@pytest.fixture
def canary(tmp_path):
    folder = hostile.make_canary(tmp_path / "canary")
    before = hostile.snapshot(folder)
    yield folder
    assert hostile.snapshot(folder) == before, "a file outside the run folder was changed"


@pytest.fixture
def copy_of(hostile_runs, tmp_path):
    def copy(name: str, into: str = "run") -> Path:
        target = tmp_path / into
        shutil.copytree(hostile_runs[name], target, symlinks=True)
        return target

    return copy


# ---- written outside the run folder, or a user's file changed ---------------------------------------------

@pytest.mark.parametrize("where", ["command line", "config-dir preset", "sweep"])
def test_a_hydra_job_name_cannot_send_the_log_file_out_of_the_run(tmp_path, where):
    victim = tmp_path / "victim.log"
    victim.write_text("the user's own log\n")
    args = [*TINY, "hydra.run.dir=deep/run"]
    if where == "config-dir preset":
        (tmp_path / "mine" / "experiment").mkdir(parents=True)
        (tmp_path / "mine" / "experiment" / "x.yaml").write_text(
            "# @package _global_\nhydra:\n  job:\n    name: ../../victim\n")
        args += ["--config-dir", "mine", "experiment=x"]
    elif where == "sweep":
        args = ["-m", *TINY, "train.seed=1,2", "hydra.sweep.dir=deep/sweep", "hydra.job.name=../../../victim"]
    else:
        args.append("hydra.job.name=../../victim")
    line = one_line(run_here(["train", *args], tmp_path))
    assert "hydra.job.name" in line and "plain name" in line
    assert victim.read_text() == "the user's own log\n" and not (tmp_path / "deep").exists()


def test_a_search_path_that_imports_a_module_is_refused_before_hydra_reads_it(tmp_path):
    marker = tmp_path / "imported"
    (tmp_path / "evil_configs").mkdir()
    (tmp_path / "evil_configs" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    env = {"PYTHONPATH": str(tmp_path)}
    sys.path.insert(0, str(tmp_path))  # the module is importable here, as it is with PYTHONPATH below
    try:
        for value in ("[pkg://evil_configs]", "[pkg\\://evil_configs]"):  # Hydra's grammar unescapes \\:
            line = one_line(run_here(["train", *TINY, f"hydra.searchpath={value}"], tmp_path))
            assert "no hydra.searchpath on the command line" in line and "--config-dir" in line
    finally:
        sys.path.remove(str(tmp_path))
    assert not marker.exists()
    line = one_line(run_cli(["train", *TINY, "hydra.searchpath=[pkg://evil_configs]"], tmp_path, env_extra=env))
    assert "hydra.searchpath" in line
    # the same in a root config of a --config-dir folder (Hydra reads the primary config's search path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "myroot.yaml").write_text("defaults:\n  - config\n  - _self_\nhydra:\n  searchpath:\n"
                                                   "    - pkg://evil_configs\n")
    line = one_line(run_cli(["train", "--config-dir", "mine", "--config-name", "myroot", *TINY], tmp_path,
                            env_extra=env))
    assert "pkg://evil_configs" in line
    assert not marker.exists() and not (tmp_path / "outputs").exists()


def test_a_checkpoint_says_how_to_build_the_model_never_where_to_read_or_write(hostile_runs, tmp_path, canary):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(8):
        Image.new("RGB", (16, 16), (i * 30, 0, 0)).save(images / f"{i}.png")

    def elsewhere(state):  # an image_folder run whose data is cached in the canary folder
        state.pop("spec")
        state["config"]["data"] = {"name": "image_folder", "root": str(images), "size": 32, "channels": 1,
                                   "cache": True, "cache_dir": str(canary / "cache"), "download": True,
                                   "num_workers": 0, "limit": None, "test_fraction": 0.0}

    run = tmp_path / "run"
    shutil.copytree(hostile_runs["dcgan"], run)
    hostile._craft_checkpoint(run, elsewhere)
    line = one_line(run_here(["sample", run, "-n", "4"], tmp_path))
    assert "keeps no DataSpec" in line
    # with its DataSpec the model is built, and `genlab eval` reads the data where genlab's defaults say
    vae = tmp_path / "vae"
    shutil.copytree(hostile_runs["vae"], vae)
    hostile.mutations(canary)["ckpt_places"](vae)
    ran = run_here(["eval", vae, "--metrics", "likelihood", "-n", "10"], tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "\"nelbo\"" in (vae / "metrics.json").read_text()
    # a data place genlab has no default for is asked of the user, never taken from the file
    from genlab.core.metrics import MetricUnavailable
    from genlab.eval.places import run_data_config
    from genlab.train.runs import load_run

    cfg = load_run(vae).cfg.copy()
    cfg.data = {"name": "image_folder", "root": str(canary), "size": 32, "channels": 1}
    with pytest.raises(MetricUnavailable, match=f"pass --data 'data.root={canary}'"):
        run_data_config(cfg, [])
    assert run_data_config(cfg, [f"data.root={images}"]).root == str(images)


def test_hydra_writes_no_name_genlab_does_not_know_into_a_users_folder(tmp_path):
    """Hydra writes .hydra/ and the run's log itself: their names are fixed (or checked against the folder), and
    the run folder comes from the command line, not from a --config-dir file."""
    folder = tmp_path / "mine"
    (folder / "docs").mkdir(parents=True)
    (folder / "notes.log").write_text("my notes\n")
    (folder / "docs" / "config.yaml").write_text("my docs\n")
    for args, expected in ((["hydra.job.name=notes"], "already holds notes.log"),
                           (["hydra.output_subdir=docs"], "Hydra's record of a run is its .hydra folder"),
                           (["+hydra.job_logging.handlers.file.mode=w"], "appends (no mode, no rotation)")):
        line = one_line(run_here(["train", *TINY, f"hydra.run.dir={folder}", *args], tmp_path))
        assert expected in line, line
    assert (folder / "notes.log").read_text() == "my notes\n" and (folder / "docs" / "config.yaml").read_text() == \
        "my docs\n" and sorted(p.name for p in folder.iterdir()) == ["docs", "notes.log"]
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "cfg" / "experiment").mkdir(parents=True)
    (tmp_path / "cfg" / "experiment" / "x.yaml").write_text(f"# @package _global_\nhydra:\n  run:\n    dir: {home}\n")
    line = one_line(run_here(["train", *TINY, "--config-dir", "cfg", "experiment=x"], tmp_path))
    assert "hydra.run.dir is set by your --config-dir files" in line and list(home.iterdir()) == []


def test_a_sweep_into_a_folder_that_is_not_empty_is_refused(hostile_runs, tmp_path):
    sweep = tmp_path / "sw"
    (sweep / "0").mkdir(parents=True)
    (sweep / "0" / "notes.txt").write_text("mine")
    (sweep / "multirun.yaml").write_text("mine")
    # a start that would fail inside the job (a vae cannot start from a dcgan run): the folder is refused first
    line = one_line(run_here(["train", "-m", "model=vae", *TINY[:2], f"train.init_from={hostile_runs['dcgan']}",
                              f"hydra.sweep.dir={sweep}"], tmp_path))
    assert "is not empty: a sweep writes its jobs' folders into it" in line
    assert (sweep / "0" / "notes.txt").read_text() == "mine" and (sweep / "multirun.yaml").read_text() == "mine"


def test_an_output_inside_a_run_folder_is_checked_from_the_run_folder(copy_of, tmp_path, canary):
    run = copy_of("dcgan")
    hostile.mutations(canary)["generated_link"](run)
    line = one_line(run_here(["sample", run, "-n", "4", "-o", run / "generated" / "mine.png"], tmp_path))
    assert "generated is a link" in line
    hostile.mutations(canary)["report_link"](run)
    line = one_line(run_here(["report", run, "-o", run / "report" / "x"], tmp_path))
    assert "report is a link" in line
    # a checkpoint outside any run folder sits in a folder of the user's: nothing beside it is replaced
    loose = tmp_path / "downloads"
    (loose / "generated").mkdir(parents=True)
    shutil.copy(run / "checkpoints" / "last.pt", loose / "model.pt")
    (loose / "generated" / "samples_n4_seed0.png").write_text("mine")
    line = one_line(run_here(["sample", loose / "model.pt", "-n", "4"], tmp_path))
    assert "not in a run folder" in line and (loose / "generated" / "samples_n4_seed0.png").read_text() == "mine"


def test_a_folder_with_a_hydra_record_or_log_of_its_own_is_not_written_into(tmp_path):
    folder = tmp_path / "analysis"
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text("my other app's config\n")
    (folder / "train.log").write_text("my other app's log\n")
    line = one_line(run_cli(["train", *TINY, "data.limit=10", f"hydra.run.dir={folder}"], tmp_path))
    assert "already holds .hydra" in line and "hydra.run.dir" in line
    assert (folder / ".hydra" / "config.yaml").read_text() == "my other app's config\n"
    assert (folder / "train.log").read_text() == "my other app's log\n"
    assert sorted(p.name for p in folder.iterdir()) == [".hydra", "train.log"]


@pytest.mark.parametrize("command", ["sample", "translate", "upscale", "reconstruct", "report"])
def test_an_existing_output_is_replaced_only_with_overwrite(hostile_runs, tmp_path, command):
    data = hostile_runs["data"]
    out = tmp_path / ("mine" if command == "report" else "mine.png")
    if command == "report":
        out.mkdir()
        (out / "index.html").write_text("my own page")
    else:
        out.write_text("the user's own file")
    args = {"sample": ["sample", hostile_runs["dcgan"], "-n", "4", "-o", out],
            "translate": ["translate", hostile_runs["pix2pix"], data / "inputs" / "in0.png", out],
            "upscale": ["upscale", hostile_runs["srresnet"], data / "inputs" / "in0.png", out],
            "reconstruct": ["reconstruct", hostile_runs["vae"], data / "inputs", "-o", out],
            "report": ["report", hostile_runs["dcgan"], "-o", out]}[command]
    line = one_line(run_here(args, tmp_path))
    assert "--overwrite" in line and str(out) in line
    if command == "report":
        assert (out / "index.html").read_text() == "my own page" and [p.name for p in out.iterdir()] == ["index.html"]
    else:
        assert out.read_text() == "the user's own file"
    ran = run_here([*args, "--overwrite"], tmp_path)
    assert ran.returncode == 0, ran.stderr
    page = out / "index.html" if command == "report" else out
    assert page.read_bytes() != b"my own page" and page.read_bytes()[:4] in (b"\x89PNG", b"<!do")


@pytest.mark.parametrize("link,command", [("report_link", "report"), ("generated_link", "sample"),
                                          ("reconstructions_link", "reconstruct"), ("eval_link", "eval")])
def test_no_command_writes_through_a_link_in_a_run_folder(copy_of, tmp_path, canary, link, command):
    run = copy_of("vae" if command in ("reconstruct", "eval") else "dcgan")
    hostile.mutations(canary)[link](run)
    if command == "eval":  # the anomaly figures go to eval/: a run whose figures would be drawn
        (run / "eval").unlink()
        (run / "eval").symlink_to(canary)
        (run / "metrics.json").symlink_to(canary / "notes.txt")
    args = {"report": ["report", run], "sample": ["sample", run, "-n", "4"],
            "reconstruct": ["reconstruct", run, canary / "photo.png"],
            "eval": ["eval", run, "--metrics", "likelihood", "-n", "10"]}[command]
    line = one_line(run_here(args, tmp_path))
    assert "is a link: genlab does not write through links" in line


def _longer(steps: int, base=hostile.DCGAN) -> list[str]:
    return [o for o in base if not o.startswith("train.steps")] + [f"train.steps={steps}"]


def test_a_resume_never_copies_what_a_link_in_the_old_run_points_at(copy_of, tmp_path, canary, train, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="genlab")
    old = copy_of("dcgan", "old")
    secret = canary / "notes.txt"
    for png in sorted((old / "samples").glob("epoch_*.png"))[:1]:
        png.unlink()
        png.symlink_to(secret)
    (old / "metrics.jsonl").unlink()
    (old / "metrics.jsonl").symlink_to(canary / "metrics.jsonl")
    (old / "tb" / "leak.txt").symlink_to(secret)
    new = tmp_path / "new"
    train(new, *_longer(6), f"train.resume={old}")
    copied = [p for p in new.rglob("*") if p.is_file()]
    assert not any(p.is_symlink() for p in new.rglob("*"))
    assert not any(b"months of work" in p.read_bytes() or b"secret" in p.read_bytes() for p in copied)
    assert "resume: left behind metrics.jsonl" in caplog.text and "is a link" in caplog.text


def test_a_failed_start_in_a_shared_folder_removes_only_what_it_wrote(tmp_path):
    from genlab.core import files
    from genlab.train import rundir
    from genlab.train.runwriter import RunWriter

    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "README").write_text("mine")
    saved = list(files._AREAS)
    try:
        rundir.claim(shared, timestamped=False)
        writer = RunWriter(shared)
        writer.open({}, cfg=None)
        writer.scalars(0, 0.0, {"loss": 1.0}, 0.1)  # step 0: not a trained step
        (shared / "results.csv").write_text("another program wrote this during the start")
        (shared / "samples" / "mine.png").write_text("and this into genlab's folder")
        writer.close()
        rundir.remove_failed_start(shared)
    finally:
        rundir.release(shared)
        rundir._CLAIMED.clear()
        files._AREAS[:] = saved
    assert sorted(p.name for p in shared.iterdir()) == ["README", "results.csv"]


# ---- tracebacks and hangs that are one line now ---------------------------------------------------------

@pytest.mark.parametrize("mutation,field", [("ckpt_model_string", "model"), ("ckpt_config_list", "config"),
                                            ("ckpt_spec_unknown", "spec.colour_space"), ("ckpt_ema_text", "ema.decay"),
                                            ("ckpt_step_text", "step"), ("ckpt_interpolation", "config.model.name"),
                                            ("ckpt_model_key_type", "train.batch_size"),
                                            ("ckpt_spec_huge", "spec.size")])
def test_a_crafted_checkpoint_is_one_line_naming_its_field(copy_of, tmp_path, canary, mutation, field):
    run = copy_of("dcgan")
    hostile.mutations(canary)[mutation](run)
    commands = [["sample", run, "-n", "4"], ["eval", run, "--metrics", "precision_recall", "-n", "10"]]
    if mutation != "ckpt_model_key_type":  # a resume reads the checkpoint's state, not its config's train.* keys
        commands.append(["train", *TINY, f"train.resume={run}"])
    for args in commands:
        line = one_line(run_here(args, tmp_path))
        assert field in line and "checkpoint" in line, (args[0], line)
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("args", [["train", *TINY, "train.epochs=${oc.env:GENLAB_TEST_UNSET}"],
                                  ["train", "model.ngf=${oc.env:GENLAB_TEST_UNSET}", "--cfg", "job", "--resolve"],
                                  ["config", "show", "train.epochs=${oc.env:GENLAB_TEST_UNSET}"]])
def test_an_unset_environment_variable_is_one_line(tmp_path, args):
    line = one_line(run_here(args, tmp_path))
    assert "GENLAB_TEST_UNSET is not set" in line


@pytest.mark.parametrize("mutations", [["metrics_torn", "png_text"], ["metrics_binary", "config_garbage"],
                                       ["metrics_wrong_types", "config_unsafe_tag"], ["config_alias_bomb"],
                                       ["metrics_huge_line", "metrics_json_types"]])
def test_report_leaves_out_what_it_cannot_read_with_a_line_for_each(copy_of, tmp_path, canary, mutations):
    run = copy_of("dcgan")
    for name in mutations:
        hostile.mutations(canary)[name](run)
    ran = run_here(["report", run], tmp_path)
    one_line_or_success(ran, mutations)
    assert ran.returncode == 0 and (run / "report" / "index.html").is_file()
    readable = {"metrics_torn", "metrics_wrong_types", "metrics_huge_line", "metrics_json_types"}
    if not set(mutations) <= readable:
        assert "left out" in ran.stdout
    assert not (canary / "ran").exists()  # the unsafe YAML tag built nothing


def test_report_on_a_sweep_with_a_broken_job_and_a_huge_metrics_line(copy_of, tmp_path, canary):
    sweep = copy_of("sweep")
    hostile.mutations(canary)["ckpt_text"](sweep / "1")
    hostile.mutations(canary)["config_garbage"](sweep / "1")
    with open(sweep / "1" / "metrics.jsonl", "r+b") as f:  # a 200 MB line: read in bounded pieces, never whole
        f.seek(0, 2)
        f.write(b'{"step": 9, "loss": "')
        f.truncate(200 << 20)
    ran = run_here(["report", sweep], tmp_path)
    one_line_or_success(ran, "sweep")
    assert ran.returncode == 0 and "left out" in ran.stdout and "job 0" in ran.stdout
    assert (sweep / "report" / "sweep.csv").read_text().count("\n") == 3


def test_a_resume_from_damaged_records_keeps_the_readable_ones(copy_of, tmp_path, canary, train):
    old = copy_of("dcgan", "old")
    hostile.mutations(canary)["metrics_wrong_types"](old)
    hostile.mutations(canary)["png_text"](old)
    new = tmp_path / "new"
    train(new, *_longer(6), f"train.resume={old}")
    from genlab.core.records import read_metrics

    steps = [r["step"] for r in read_metrics(new / "metrics.jsonl")]
    assert steps[:3] == [3, 5, 6] and set(steps) == {3, 5, 6}  # the readable old record, then the new ones


@pytest.mark.parametrize("value,expected", [("''", "takes a data option"), ("'digits data.size=abc'",
                                                                            "data.size must be an integer"),
                                            ("'digits data.root=\"unclosed'", "--ood-data")])
def test_eval_ood_data_mistakes_are_one_line(hostile_runs, tmp_path, value, expected):
    import shlex

    line = one_line(run_here(["eval", hostile_runs["vae"], "--metrics", "ood", "--ood-data",
                              *shlex.split(value)], tmp_path))
    assert expected in line


def test_counts_sizes_and_seeds_are_checked_with_their_limit_named(hostile_runs, tmp_path):
    runs, data = hostile_runs, hostile_runs["data"]
    big = tmp_path / "big.png"
    Image.new("1", (9000, 9000)).save(big)
    for args, expected in (
        (["sample", runs["dcgan"], "-n", str(10**12)], "1000000"),
        (["sample", runs["dcgan"], "-n", "5000"], "at most 1,024 samples"),
        (["sample", runs["dcgan"], "--seed", str(2**70)], "9223372036854775807"),
        (["reconstruct", runs["vae"], data / "inputs", "-n", str(10**9)], "1024"),
        (["eval", runs["vae"], "-n", str(10**9)], "100000"),
        (["translate", runs["pix2pix"], big, tmp_path / "t.png"], "9000 x 9000: more than the 4,194,304 pixels"),
        (["upscale", runs["srresnet"], big, tmp_path / "u.png"], "9000 x 9000: more than the 4,194,304 pixels"),
        (["upscale", runs["srresnet"], data / "inputs", tmp_path / "u", "--tile", str(10**6)], "4096"),
        (["train", "model=maf", "data=toy2d", "data.n_train=100000000"], "at most 10,000,000"),
        (["train", *TINY, "device.threads=100000"], "device.threads=100000: at most 1024"),
        (["train", *TINY, "train.seed=" + str(2**70)], "train.seed must fit in 64 bits"),
        (["train", "--nproc", "1000", *TINY], "--nproc 1000: at most"),
        (["report", runs["dcgan"], "--epochs", ",".join(map(str, range(500)))], "up to 100 epoch numbers"),
    ):
        line = one_line(run_here(args, tmp_path))
        assert expected in line, (args, line)
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "t.png").exists()


def test_idx_files_are_read_within_their_declared_size(tmp_path):
    from genlab.core.errors import GenlabError
    from genlab.data.tensors import read_idx

    five = tmp_path / "five-idx3-ubyte"
    five.write_bytes(bytes([0, 0, 8, 5]) + (2).to_bytes(4, "big") * 5 + bytes(32))
    with pytest.raises(GenlabError, match="declares 5 dimensions, not 3"):
        read_idx(five, 3)
    huge = tmp_path / "huge-idx3-ubyte"
    huge.write_bytes(bytes([0, 0, 8, 3]) + (60000).to_bytes(4, "big") + (28000).to_bytes(4, "big") * 2)
    with pytest.raises(GenlabError, match="more than the 1,073,741,824"):
        read_idx(huge, 3)
    bomb = tmp_path / "bomb-idx3-ubyte.gz"  # declares 4 images of 28x28, inflates to 64 MB more
    with gzip.open(bomb, "wb", compresslevel=9) as f:
        f.write(bytes([0, 0, 8, 3]) + (4).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(4 * 28 * 28))
        chunk = bytes(1 << 20)
        for _ in range(64):
            f.write(chunk)
    assert bomb.stat().st_size < 200_000
    with pytest.raises(GenlabError, match="holds more data than its header declares"):
        read_idx(bomb, 3)


def test_a_yaml_alias_bomb_or_a_link_to_a_system_file_in_a_config_folder_is_refused(tmp_path):
    presets = tmp_path / "mine" / "experiment"
    presets.mkdir(parents=True)
    (presets / "bomb.yaml").write_text("# @package _global_\n" + hostile.ALIAS_BOMB)
    line = one_line(run_here(["train", "--config-dir", "mine", "experiment=bomb", *TINY], tmp_path))
    assert "alias bomb" in line and "bomb.yaml" in line
    (presets / "bomb.yaml").unlink()
    (presets / "system.yaml").symlink_to("/etc/hostname")
    line = one_line(run_here(["train", "--config-dir", "mine", "experiment=system", *TINY], tmp_path))
    assert "is a link to /etc/hostname, outside --config-dir" in line
    (presets / "system.yaml").unlink()
    # a linked group folder inside the config folder is read too; one leading out of it is refused
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big.yaml").write_text(hostile.ALIAS_BOMB)
    (tmp_path / "mine" / "model").symlink_to(outside)
    line = one_line(run_here(["train", "--config-dir", "mine", *TINY], tmp_path))
    assert "model is a link to" in line and "outside --config-dir" in line
    (tmp_path / "mine" / "model").unlink()
    (tmp_path / "mine" / "model").mkdir()
    os.mkfifo(tmp_path / "mine" / "model" / "pipe.yaml")  # reading it would block forever
    line = one_line(run_here(["train", "--config-dir", "mine", *TINY], tmp_path))
    assert "pipe.yaml is not a regular file" in line
    (tmp_path / "mine" / "model" / "pipe.yaml").unlink()
    (presets / "deep.yaml").write_text("a: " + "[" * 20000 + "]" * 20000 + "\n")
    line = one_line(run_here(["train", "--config-dir", "mine", "experiment=deep", *TINY], tmp_path))
    assert "nests deeper than 100 levels" in line
    (presets / "deep.yaml").unlink()
    (tmp_path / "mine" / "notes").mkdir()  # not a config group: a project's own YAML is not read
    (tmp_path / "mine" / "notes" / "cloud.yaml").write_text("a: !Ref b\n")
    (presets / "typo.yaml").write_text("# @package _global_\ntrain:\n  epochz: 3\n")
    line = one_line(run_here(["train", "--config-dir", "mine", "experiment=typo", *TINY], tmp_path))
    assert "unknown key train.epochz (did you mean train.epochs?)" in line and "experiment=typo" in line
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("override,expected", [("hydra.run.dir=", "hydra.run.dir is empty"),
                                               ("hydra.run.dir='a\nb'", "newline")])
def test_a_run_folder_path_that_is_empty_or_holds_a_newline_is_one_line(tmp_path, override, expected):
    line = one_line(run_here(["train", *TINY, override], tmp_path))
    assert expected in line and list(tmp_path.iterdir()) == []


def test_a_completion_request_with_a_word_index_that_is_not_a_number_is_one_line(tmp_path):
    out = run_cli([], tmp_path, env_extra={"_GENLAB_COMPLETE": "complete_bash", "COMP_WORDS": "genlab train mo",
                                           "COMP_CWORD": "x"})
    assert "COMP_CWORD must be the index of a word" in one_line(out)


def test_a_full_disk_while_building_the_data_cache_is_one_line(tmp_path):
    """A memory-mapped file written on a full disk ends in SIGBUS: its blocks are reserved first (a real write
    limit here, RLIMIT_FSIZE, below the cache's size)."""
    faces = tmp_path / "faces"
    faces.mkdir()
    for i in range(40):
        Image.new("RGB", (32, 32), (i * 5, 0, 0)).save(faces / f"{i:03d}.png")

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))

    env = dict(os.environ, HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    out = subprocess.run(GENLAB + ["train", *TINY, "data=image_folder", f"data.root={faces}", "data.size=32",
                                   "data.cache=true", "data.num_workers=0", "train.batch_size=8"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, preexec_fn=small_files)
    line = one_line(out)
    assert "data.cache: cannot write the" in line and "GiB cache" in line
    assert not list((faces / ".genlab_cache").glob("*")) and not (tmp_path / "outputs").exists()


# ---- lost work and leftovers ----------------------------------------------------------------------------

def test_sighup_saves_and_says_how_to_continue(tmp_path):
    """A closed terminal or SSH session: the step in flight finishes, last.pt is saved, exit 129."""
    from tests.test_reliability import _start, _trained_a_step, _wait_for

    proc = _start(["model=vae", "model.latent_dim=3", "train.epochs=500", "train.log_every=1",
                   "train.progress=none"], tmp_path)
    _wait_for(lambda: _trained_a_step(tmp_path / "outputs"))
    proc.send_signal(signal.SIGHUP)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGHUP, stderr
    (run,) = (tmp_path / "outputs" / "vae_digits").iterdir()
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] >= 1
    assert "Continue with: genlab train" in stdout and "Continue with" in (run / "train.log").read_text()


def test_failed_starts_leave_no_folders_behind(tmp_path):
    """Starts that fail once Hydra runs (too few images for a batch): the run folder and the folders made on
    the way to it go (a real `genlab train`, then the same main() in this process)."""
    one_line(run_cli(["train", "data.limit=10", "train.batch_size=64"], tmp_path))
    one_line(run_here(["train", "model=vae", "data.limit=5"], tmp_path))
    assert not (tmp_path / "outputs").exists()
    (tmp_path / "outputs" / "dcgan_digits").mkdir(parents=True)  # folders that were there before stay
    one_line(run_here(["train", "data.limit=10", "train.batch_size=64"], tmp_path))
    assert (tmp_path / "outputs" / "dcgan_digits").is_dir() and not any((tmp_path / "outputs").rglob("*.log"))


def test_a_stop_dropped_inside_a_finaliser_still_stops_the_start(tmp_path):
    """The reported flake: a SIGTERM that lands while Python runs a finaliser (__del__, a weakref callback) is
    dropped ("Exception ignored"). genlab notices at the next step of its start and stops all the same."""
    script = textwrap.dedent("""
        import gc, os, signal, sys
        import genlab.train.rundir as rundir
        from genlab.app import main as cli

        real_claim = rundir.claim

        class Finaliser:
            def __del__(self):
                open("finalised", "w").close()
                os.kill(os.getpid(), signal.SIGTERM)  # the handler raises here, and Python drops it

        def claim_then_stop(*args, **kwargs):
            folder = real_claim(*args, **kwargs)
            Finaliser()
            gc.collect()
            return folder

        rundir.claim = claim_then_stop
        sys.argv = ["genlab", "train", "model=vae", "train.progress=none"]
        cli.main()
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert (tmp_path / "finalised").exists()  # the signal came inside the finaliser
    assert out.returncode == 128 + signal.SIGTERM, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and "Exception ignored" not in out.stderr, out.stderr
    assert not (tmp_path / "outputs").exists()


def test_flows_on_digits_train_at_their_native_8_pixels(compose):
    for model in ("made", "maf", "iaf", "realnvp"):
        assert compose(f"model={model}").data.size == 8
    assert compose("model=iaf", "data=mnist").data.size == 32  # other data keep their size


# ---- the canary: every route at once, every command ----------------------------------------------------------

WRITE_ROUTES = ("report_link", "generated_link", "reconstructions_link", "eval_link", "metrics_json_link",
                "metrics_link", "png_link", "tb_link", "config_link", "ckpt_places")


def test_a_canary_outside_survives_every_command_on_a_run_folder_that_tries_every_route(copy_of, tmp_path, canary,
                                                                                        hostile_runs):
    """A run folder whose every place a command writes to is a link to the canary folder, whose records link
    there too, and whose checkpoint names the canary as its data root, cache and download folder (and a
    .hydra record and train.log that link there): every command either refuses in one line or writes only in
    its own folder, and the canary is untouched (the fixture compares every file's bytes and time)."""
    routes = hostile.mutations(canary)
    crafted = {}
    for kind in ("vae", "pix2pix", "srresnet"):
        run = copy_of(kind, f"crafted_{kind}")
        for route in WRITE_ROUTES:
            routes[route](run)
        (run / "train.log").symlink_to(canary / "notes.txt")
        (run / "wandb").symlink_to(canary / "sub")
        crafted[kind] = run
    data = hostile_runs["data"]
    inputs = data / "inputs"
    commands = [
        ["sample", crafted["vae"], "-n", "4"], ["sample", crafted["vae"], "-n", "4", "-o", tmp_path / "mine.png"],
        ["eval", crafted["vae"], "--metrics", "likelihood", "-n", "10"],
        ["eval", crafted["vae"], "--metrics", "ood", "--ood-data", "digits", "-n", "10"],
        ["report", crafted["vae"]], ["report", crafted["vae"], "-o", tmp_path / "rep"],
        ["reconstruct", crafted["vae"], inputs], ["reconstruct", crafted["vae"], inputs, "-o", tmp_path / "r.png"],
        ["translate", crafted["pix2pix"], inputs, tmp_path / "translated"],
        ["upscale", crafted["srresnet"], inputs, tmp_path / "upscaled"],
        ["train", *_longer(6, hostile.VAE), f"train.resume={crafted['vae']}"],
        ["train", *_longer(6, hostile.VAE), f"train.resume={crafted['vae']}", f"hydra.run.dir={crafted['vae']}"],
    ]
    before = hostile.snapshot(canary)
    answers, codes = [], []
    for args in commands:
        ran = run_here(args, tmp_path)
        one_line_or_success(ran, args[:2])
        answers.append(ran.stderr.strip())
        codes.append(ran.returncode)
        assert hostile.snapshot(canary) == before, args  # whatever succeeded wrote only where it was told
    # what writes into the crafted folder itself refuses its links: sample and reconstruct by default, eval (its
    # metrics.json), report by default, the resume in place (train.log, metrics.jsonl); the rest succeed
    for i in (0, 2, 3, 4, 6, 11):
        assert "is a link" in answers[i], (commands[i][:2], answers[i])
    for i in (1, 5, 7, 8, 9, 10):
        assert codes[i] == 0, (commands[i][:2], answers[i])
    # the resumed run (in its own new folder) copied nothing a link pointed at
    resumed = [p for p in (tmp_path / "outputs").rglob("*") if p.is_file()] if (tmp_path / "outputs").exists() else []
    assert not any(b"months of work" in p.read_bytes() or b'"secret"' in p.read_bytes() for p in resumed)
    assert not (canary / "cache").exists() and not (canary / "MNIST").exists()
