"""Hostile and broken input: nothing runs code from data or flags, no user file is lost, every mistake is one
line. Each test here is a row of docs/reliability.md; a new family adds its own rows and tests."""

import json
import os
import pickle
import resource
import shlex
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import GENLAB, run_cli
from tests.hostile import run_here  # the same main() in this process: an error line without a new interpreter

TINY = ["train.epochs=1", "data.limit=128", "train.batch_size=32", "model.ngf=8", "model.ndf=8",
        "train.progress=none"]


def one_line_error(out) -> str:
    assert out.returncode == 2, (out.returncode, out.stdout[-2000:], out.stderr[-2000:])
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("genlab: ") and "Traceback" not in out.stderr + out.stdout
    assert getattr(out, "escaped", None) is None, out.escaped  # run_here: nothing got out of main()
    return lines[0]


class Payload:
    """A pickle that, when unpickled, creates `marker`: proof that a loader ran code from a file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


def strict_json(line: str):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(line, parse_constant=refuse)


# ---- code execution ---------------------------------------------------------------------------------------

def test_hydras_rerun_flag_is_refused_and_its_pickle_never_loaded(tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / "config.pickle").write_bytes(pickle.dumps(Payload(marker)))
    line = one_line_error(run_here(["train", "--experimental-rerun", "config.pickle"], tmp_path))
    assert "--experimental-rerun" in line and "train.resume" in line
    assert not marker.exists() and not (tmp_path / "outputs").exists()


def test_a_poisoned_cifar_batch_is_refused_without_running_it(tmp_path):
    from omegaconf import OmegaConf

    from genlab.core.errors import GenlabError
    from genlab.data import build_data

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "ran"
    for i, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        entry = {"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2, 3], "batch_label": b"x"}
        if i == 2:
            entry["labels"] = Payload(marker)
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
    cfg = OmegaConf.create({"name": "cifar10", "root": str(tmp_path), "size": 32, "limit": None, "download": False,
                            "num_workers": 0})
    with pytest.raises(GenlabError, match="refused .*data_batch_3.*posix.system is not allowed"):
        build_data(cfg, batch_size=2, seed=0, device=torch.device("cpu"))
    assert not marker.exists()


@pytest.mark.parametrize("how", ["override", "config-dir"])
def test_hydra_callbacks_and_targets_are_refused(tmp_path, how):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    if how == "override":
        args = ["+hydra.callbacks.wipe._target_=os.truncate", f"+hydra.callbacks.wipe.path={victim}",
                "+hydra.callbacks.wipe.length=0"]
    else:
        configs = tmp_path / "my_configs" / "experiment"
        configs.mkdir(parents=True)
        (configs / "evil.yaml").write_text(
            "# @package _global_\nhydra:\n  callbacks:\n    wipe:\n      _target_: os.truncate\n"
            f"      path: {victim}\n      length: 0\n")
        args = ["--config-dir", str(tmp_path / "my_configs"), "experiment=evil"]
    line = one_line_error(run_here(["train", *TINY, *args], tmp_path))
    assert "_target_" in line and "os.truncate" in line
    assert victim.read_text() == "keep me" and not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("override,expected", [
    ("hydra.launcher._target_=os.system", "must be a class defined in a Hydra plugin"),
    # Hydra's locate follows attributes: an allowed prefix may lead on to os.system
    ("hydra.launcher._target_=hydra_plugins.hydra_joblib_launcher.joblib_launcher.os.system",
     "must be a class defined in a Hydra plugin"),
    # a class of Hydra's internals that imports a module by name is no sweeper
    ("hydra.sweeper._target_=hydra._internal.core_plugins.structured_config_source.StructuredConfigSource",
     "must be a class defined in a Hydra plugin"),
    ("+hydra.job_logging.formatters.plain.class=os.system", "logging handlers must be standard"),
    ("hydra.job_logging.handlers.file.filename=/tmp/genlab_elsewhere.log", "a log file must be the run's own"),
    ("hydra.job_logging.handlers.file.filename=${hydra.runtime.output_dir}/notes.txt", "a log file must be the run's own"),
    ("+hydra.job_logging.handlers.file.mode=w", "a plain logging.FileHandler that appends"),
    ("hydra.job_logging.handlers.file.class=logging.handlers.RotatingFileHandler", "no rotation"),
    ("hydra.output_subdir=../../elsewhere", "Hydra's record of a run is its .hydra folder"),
    ("hydra.output_subdir=docs", "Hydra's record of a run is its .hydra folder"),
    ("hydra.sweep.subdir=../elsewhere", "inside the sweep folder"),
    ("+hydra.job_logging.handlers.h=${oc.create:{class:subprocess.Popen}}", "oc.create"),
    ("+hydra.job.env_set.LD_PRELOAD=/tmp/x.so", "sets no environment variables"),
])
def test_configs_cannot_run_code_or_write_elsewhere(override, expected):
    from genlab.app.checks import checked_config
    from genlab.app.compose import CommandLine
    from genlab.core.errors import GenlabError

    with pytest.raises(GenlabError, match=expected):
        checked_config(["train.epochs=1", override], CommandLine())


def test_a_target_in_a_preset_is_refused(tmp_path):
    from genlab.app.checks import checked_config
    from genlab.app.compose import CommandLine
    from genlab.core.errors import GenlabError

    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "evil.yaml").write_text("# @package _global_\nmodel:\n  _target_: os.system\n")
    with pytest.raises(GenlabError, match="model._target_=os.system: genlab .* does not instantiate _target_"):
        checked_config(["experiment=evil"], CommandLine(config_dir=str(tmp_path)))


def test_a_logging_factory_in_a_config_folder_is_refused(tmp_path):
    logging_dir = tmp_path / "my_configs" / "hydra" / "job_logging"
    logging_dir.mkdir(parents=True)
    (logging_dir / "evil.yaml").write_text(
        "version: 1\nformatters:\n  x:\n    '()': os.system\n    command: touch ran\nroot:\n  handlers: []\n")
    line = one_line_error(run_here(["train", *TINY, "--config-dir", str(tmp_path / "my_configs"),
                                   "hydra/job_logging=evil"], tmp_path))
    assert "may not call factories" in line and not (tmp_path / "ran").exists()


def test_a_pickled_object_checkpoint_is_refused_without_the_unsafe_advice(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"model": Payload(marker), "config": {}}, tmp_path / "evil.pt")
    (tmp_path / "notes.pt").write_text("not a checkpoint at all")
    for name in ("evil.pt", "notes.pt"):
        for command in (["sample", name], ["eval", name], ["train", f"train.resume={name}"]):
            # the first through a real `genlab`, the rest through the same main() in this process
            run = run_cli if command[0] == "sample" and name == "evil.pt" else run_here
            line = one_line_error(run(command, tmp_path))
            assert "not a readable genlab checkpoint" in line or "not a genlab checkpoint" in line, line
            assert "weights_only" not in line
    assert not marker.exists() and not (tmp_path / "outputs").exists()


# ---- no user file is lost -------------------------------------------------------------------------------

def test_a_failed_start_in_an_existing_folder_removes_only_what_it_added(tmp_path):
    folder = tmp_path / "my_project"
    (folder / "notes").mkdir(parents=True)
    (folder / "notes" / "thesis.tex").write_text("months of work")
    (folder / "README").write_text("mine")
    line = one_line_error(run_here(["train", "data.limit=10", f"hydra.run.dir={folder}"], tmp_path))
    assert "fewer than train.batch_size" in line
    assert sorted(p.name for p in folder.iterdir()) == ["README", "notes"]
    assert (folder / "notes" / "thesis.tex").read_text() == "months of work"


def test_run_folders_started_in_the_same_second_are_distinct(tmp_path):
    # ${now:%Y} makes the same time-stamped folder for both: the second must get its own
    pattern = "hydra.run.dir=outputs/${now:%Y}"
    procs = [subprocess.Popen(GENLAB + ["train", *TINY, pattern], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    runs = sorted((tmp_path / "outputs").iterdir())
    year = time.strftime("%Y")
    assert [r.name for r in runs] == [year, f"{year}_2"]
    for run in runs:
        steps = [strict_json(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert steps == sorted(steps) and steps.count(0) == 1  # one run's records, not two interleaved
        assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 4


def test_a_folder_a_live_run_holds_is_refused(tmp_path):
    import fcntl

    from genlab.core.errors import GenlabError
    from genlab.train import rundir

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "live.txt").write_text("the live run's file")
    held = os.open(folder, os.O_RDONLY)  # what a live run holds: an flock on its folder
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with pytest.raises(GenlabError, match="another genlab run is writing into"):
            rundir.claim(folder, timestamped=False)
        line = one_line_error(run_here(["train", *TINY, f"hydra.run.dir={folder}"], tmp_path))
        assert "another genlab run is writing into" in line
    finally:
        os.close(held)
    assert [p.name for p in folder.iterdir()] == ["live.txt"]


def test_a_folder_holding_a_finished_run_is_not_written_into(tmp_path):
    folder = tmp_path / "run"
    assert run_cli(["train", *TINY, f"hydra.run.dir={folder}"], tmp_path).returncode == 0
    before = (folder / "metrics.jsonl").read_text()
    line = one_line_error(run_here(["train", *TINY, f"hydra.run.dir={folder}"], tmp_path))
    assert "already holds a genlab run" in line and f"train.resume={folder}" in line
    assert (folder / "metrics.jsonl").read_text() == before


# ---- tracebacks that became one line --------------------------------------------------------------------

def _bomb(path: Path) -> None:
    """A 20,000 x 20,000 PNG of some 50 kB: 400 megapixels to decode."""
    Image.new("1", (20000, 20000)).save(path)


def test_a_decompression_bomb_is_refused_in_a_dataset_and_in_reconstruct(tmp_path):
    data = tmp_path / "faces"
    data.mkdir()
    for i in range(40):
        Image.new("RGB", (16, 16), (i * 5, 0, 0)).save(data / f"{i:03d}.png")
    _bomb(data / "zzz_bomb.png")
    line = one_line_error(run_cli(["train", *TINY, "data=image_folder", f"data.root={data}", "data.size=16",
                                   "train.batch_size=8", "data.num_workers=0"], tmp_path))
    assert "zzz_bomb.png" in line and "decompression bomb" in line
    assert not (tmp_path / "outputs").exists()  # the failed start left no run, nor the folders above it


def test_reconstruct_refuses_a_bomb_and_a_label_for_an_unconditional_run(tmp_path, train):
    run = tmp_path / "vae"
    train(run, "model=vae", "train.epochs=1", "data.limit=64")
    _bomb(tmp_path / "bomb.png")
    assert "decompression bomb" in one_line_error(run_here(["reconstruct", str(run), "bomb.png"], tmp_path))
    Image.new("L", (8, 8)).save(tmp_path / "digit.png")
    line = one_line_error(run_here(["reconstruct", str(run), "digit.png", "--label", "3"], tmp_path))
    assert "unconditional" in line and "--label" in line


def test_a_full_disk_while_saving_a_checkpoint_is_one_line(tmp_path):
    """A real write failure: files may grow to 300 kB; the first checkpoint is larger."""

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write returns EFBIG instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))

    env = dict(os.environ, HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    out = subprocess.run(GENLAB + ["train", *TINY, "model.ngf=32", "model.ndf=32"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600, preexec_fn=small_files)
    line = one_line_error(out)
    assert "cannot write a checkpoint" in line and "nothing was saved" in line


def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path, train, monkeypatch):
    from genlab.core import checkpoint
    from genlab.core.errors import GenlabError

    calls = []
    real_save = torch.save

    def failing_save(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) == 2:
            real_save(obj, f)  # half a file, then the disk fills
            raise RuntimeError("[enforce fail at inline_container.cc] PytorchStreamWriter failed writing file")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", failing_save)
    with pytest.raises(GenlabError, match="cannot write a checkpoint .*is the disk full.*previous checkpoint is unchanged"):
        train(tmp_path, "train.epochs=2", "data.limit=64", "model.ngf=8", "model.ndf=8")
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 1
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["last.pt"]  # no temporary file left


def test_a_checkpoints_path_that_is_a_file_and_a_run_folder_under_proc(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "checkpoints").write_text("my notes, not a folder")
    line = one_line_error(run_here(["train", *TINY, f"hydra.run.dir={folder}"], tmp_path))
    assert "already holds checkpoints, which a run writes" in line  # refused before Hydra writes anything
    assert (folder / "checkpoints").read_text() == "my notes, not a folder"
    assert not list(folder.glob(".*.tmp")) and not list(folder.glob("**/*.tmp"))
    line = one_line_error(run_here(["train", *TINY, "hydra.run.dir=/proc/genlab_run"], tmp_path))
    assert "/proc/genlab_run" in line


def test_a_diverging_run_stops_with_one_line_and_keeps_its_record(tmp_path):
    out = run_cli(["train", "model=vae", "optim.lr=1e6", "train.epochs=2", "data.limit=256", "train.log_every=1",
                   "train.progress=none"], tmp_path)
    line = one_line_error(out)
    assert "train.on_nan=stop" in line and "loss is nan" in line and line.startswith("genlab: step ")
    assert "no checkpoint was saved before it" in line
    (run,) = (tmp_path / "outputs" / "vae_digits").iterdir()  # it logged steps before diverging: kept
    records = [strict_json(text) for text in (run / "metrics.jsonl").read_text().splitlines()]
    step = int(line.split()[2].rstrip(":"))
    assert max(r["step"] for r in records) == step - 1 and (run / "curves.png").is_file()


def test_metrics_jsonl_never_holds_nan_or_infinity(tmp_path):
    from genlab.core.records import read_metrics
    from genlab.train.runwriter import RunWriter

    writer = RunWriter(tmp_path, active=True)
    writer.open({})
    writer.scalars(1, 0.5, {"loss": float("nan"), "kl": float("inf"), "recon": 0.25}, 1.0)
    writer.close()
    (record,) = [strict_json(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert record["loss"] is None and record["kl"] is None and record["recon"] == 0.25
    assert read_metrics(tmp_path / "metrics.jsonl") == [record]


def test_on_nan_stop_keeps_the_last_good_checkpoint(tmp_path, train, monkeypatch):
    from genlab.core.errors import TrainingStopped
    from genlab.models.vae import VAE

    real_step = VAE.training_step

    def nan_after_six(self, batch, step):
        scalars = real_step(self, batch, step)
        if step >= 6:
            scalars["loss"] = scalars["loss"] * float("nan")
        return scalars

    monkeypatch.setattr(VAE, "training_step", nan_after_six)
    with pytest.raises(TrainingStopped, match=r"step 7: loss is nan .*last good checkpoint is .*last.pt"):
        train(tmp_path, "model=vae", "train.epochs=3", "data.limit=128", "train.batch_size=32", "train.log_every=10")
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 4 and all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    records = [strict_json(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in records) <= 4  # nothing of the diverged steps was logged


def test_on_nan_skip_trains_on_without_applying_bad_steps(tmp_path, train, monkeypatch):
    from genlab.data import Batch
    from genlab.models.vae import VAE

    real_step = VAE.training_step

    def nan_on_odd_steps(self, batch, step):
        if step % 2:
            before = {k: v.clone() for k, v in self.state_dict().items()}
            scalars = real_step(self, Batch(image=batch["image"] * float("nan"), label=batch["label"]), step)
            after = self.state_dict()
            assert all(torch.equal(before[k], after[k]) for k in before if "running" not in k and "num_batches" not in k)
            return scalars
        return real_step(self, batch, step)

    monkeypatch.setattr(VAE, "training_step", nan_on_odd_steps)
    last = train(tmp_path, "model=vae", "train.epochs=2", "data.limit=128", "train.batch_size=32",
                 "train.log_every=4", "train.on_nan=skip")
    assert last["nonfinite_skipped"] == 2 and np.isfinite(last["loss"])
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


# ---- Ctrl-C and SIGTERM ------------------------------------------------------------------------------------

def _start(args, cwd):
    env = dict(os.environ, HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9", PYTHONUNBUFFERED="1")
    return subprocess.Popen(GENLAB + ["train", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    raise AssertionError("timed out")


def _trained_a_step(run_root: Path) -> bool:
    for metrics in run_root.glob("*/*/metrics.jsonl"):
        if any('"d_loss"' in line or '"loss"' in line for line in metrics.read_text().splitlines()):
            return True
    return False


@pytest.mark.parametrize("signum", [pytest.param(signal.SIGINT, marks=pytest.mark.slow), signal.SIGTERM])
def test_a_stopped_run_saves_and_prints_a_command_that_continues_it(tmp_path, signum):
    args = ["model=vae", "model.latent_dim=3", "train.epochs=500", "train.log_every=1", "train.progress=none"]
    proc = _start(args, tmp_path)
    _wait_for(lambda: _trained_a_step(tmp_path / "outputs"))
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signum, stderr
    (run,) = (tmp_path / "outputs" / "vae_digits").iterdir()
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    (hint,) = [line.split("Continue with: ", 1)[1] for line in stdout.splitlines() if "Continue with: " in line]
    words = shlex.split(hint)
    assert words[:2] == ["genlab", "train"] and f"train.resume={run}" in words
    assert {"model=vae", "model.latent_dim=3", "train.epochs=500"} <= set(words)
    # the printed command, as given, composes a run of the same model and length that resumes this one
    shown = run_cli([*words[1:], "--cfg", "job"], tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "name: vae" in shown.stdout and "latent_dim: 3" in shown.stdout and "epochs: 500" in shown.stdout
    assert f"resume: {run}" in shown.stdout and state["step"] >= 1


def test_a_stop_while_starting_leaves_no_run_folder(tmp_path):
    proc = _start(["model=vae", "train.progress=none"], tmp_path)
    # genlab makes the run folder before Hydra starts; signal at once, seconds before the first training step
    _wait_for(lambda: any((tmp_path / "outputs").glob("vae_digits/*")))
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr and "Continue with" not in stdout
    assert not (tmp_path / "outputs").exists()  # nor the folders made on the way to it


def test_a_bad_image_found_while_training_leaves_no_run_folder(tmp_path):
    data = tmp_path / "images"
    data.mkdir()
    for i in range(40):
        Image.new("L", (16, 16), i * 5).save(data / f"{i:03d}.png")
    (data / "020.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    line = one_line_error(run_cli(["train", *TINY, "data=image_folder", f"data.root={data}", "data.size=16",
                                   "data.channels=1", "train.batch_size=8", "data.num_workers=0"], tmp_path))
    assert "020.png" in line
    assert not (tmp_path / "outputs").exists()  # nor the folders made on the way to it


# ---- SIGKILL at random moments -------------------------------------------------------------------------

@pytest.mark.slow
def test_sigkill_at_random_moments_never_breaks_a_run_and_the_resumed_run_equals_a_straight_one(tmp_path):
    import random

    settings = ["train.epochs=8", "data.limit=256", "train.batch_size=16", "model.ngf=16", "model.ndf=16",
                "train.log_every=1", "train.progress=none", "train.keep_every=0"]
    rng = random.Random(0)
    latest = None  # the newest run folder with a checkpoint: each attempt resumes it, as a user would
    kills = attempt = 0
    while kills < 20 or latest is None:
        attempt += 1
        assert attempt < 80
        run = tmp_path / f"attempt_{attempt:02d}"
        resume = [f"train.resume={latest}"] if latest else []
        proc = _start([*settings, *resume, f"hydra.run.dir={run}"], tmp_path)
        # half the kills anywhere from start-up on, half while it trains and writes checkpoints
        if attempt % 2:
            time.sleep(rng.uniform(0.0, 6.0))
        else:
            try:
                _wait_for(lambda run=run: (run / "metrics.jsonl").is_file() and '"d_loss"' in (run / "metrics.jsonl").read_text(),
                          timeout=120)
            except AssertionError:
                pass
            time.sleep(rng.uniform(0.0, 1.5))
        finished = proc.poll() is not None
        proc.kill()
        proc.communicate(timeout=60)
        kills += not finished
        if (run / "checkpoints" / "last.pt").is_file():
            state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)  # never torn
            assert state["step"] > 0 and "model" in state
            latest = run
        if (run / "metrics.jsonl").is_file():
            lines = (run / "metrics.jsonl").read_text().split("\n")
            for line in lines[:-1]:  # every finished line is JSON; only an unfinished last one may be cut
                strict_json(line)
        if finished:
            assert proc.returncode == 0
            latest = None  # it trained to the end: start a new chain
    out = run_cli(["train", *settings, f"train.resume={latest}", f"hydra.run.dir={tmp_path / 'resumed'}"], tmp_path)
    assert out.returncode == 0, out.stderr
    out = run_cli(["train", *settings, f"hydra.run.dir={tmp_path / 'straight'}"], tmp_path)
    assert out.returncode == 0, out.stderr
    resumed = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)
    straight = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    assert resumed["step"] == straight["step"] == 128
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


def test_a_broken_yaml_in_a_config_folder_is_one_line(tmp_path):
    (tmp_path / "my_configs" / "experiment").mkdir(parents=True)
    (tmp_path / "my_configs" / "experiment" / "broken.yaml").write_text("model:\n  ngf: [1, 2\n")
    line = one_line_error(run_here(["train", "--config-dir", "my_configs", "experiment=broken"], tmp_path))
    assert "line" in line and not (tmp_path / "outputs").exists()
