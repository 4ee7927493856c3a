"""Fitting the ecosystem: torch-fidelity's public Inception extractor, `genlab weights`, shell completion,
loggers (wandb), the Optuna sweeper, and the start/end summaries of a run."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli
from tests.hostile import run_here  # the same main() in this process


# ---- FID / KID / IS through torch-fidelity's public extractor ------------------------------------------------------
@pytest.fixture(scope="module")
def stand_in_inception(tmp_path_factory) -> Path:
    """Inception-v3 weights of the right names and shapes, random values (the real file is a download)."""
    from unittest import mock

    import torch_fidelity.feature_extractor_inceptionv3 as tf

    with mock.patch.object(tf, "load_state_dict_from_url", lambda *a, **k: None), \
         mock.patch.object(tf.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None):
        net = tf.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    generator = torch.Generator().manual_seed(0)
    for module in net.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            module.weight.data = torch.randn(module.weight.shape, generator=generator) * 0.05
    path = tmp_path_factory.mktemp("inception") / "inception.pth"
    torch.save(net.state_dict(), path)
    return path


@pytest.mark.slow  # two Inception-v3 networks over ten images at 299 px: half a minute on a busy CPU
def test_the_public_extractor_gives_the_numbers_of_the_former_torchmetrics_path(stand_in_inception):
    """Same weights, same images: torch-fidelity's FeatureExtractorInceptionV3 (now) and torchmetrics'
    NoTrainInceptionV3 with antialias=False (before) give the same features, so the same FID, KID and IS."""
    from torchmetrics.image.fid import NoTrainInceptionV3

    from genlab.core.imaging import frechet_distance, inception_score, kernel_inception_distance
    from genlab.eval.inception import _to_uint8_rgb, inception_extractor, inception_features

    generator = torch.Generator().manual_seed(1)
    grey = torch.rand(5, 1, 32, 32, generator=generator) * 2 - 1  # a greyscale set, repeated to RGB
    colour = torch.rand(5, 3, 28, 28, generator=generator) * 2 - 1  # another size: the resize to 299 matters
    ours = inception_extractor(stand_in_inception, "cpu")
    before = NoTrainInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"], str(stand_in_inception),
                                antialias=False)
    now, then = {}, {}
    for name, images in (("grey", grey), ("colour", colour)):
        # one batch, as torchmetrics passes them: on some CPUs (AVX2) the logits' matmul rounds its last bit
        # differently for another batch size, whichever path it is
        now[name] = inception_features(ours, images, "cpu", batch=len(images))
        with torch.no_grad():
            pool, logits = before._torch_fidelity_forward(_to_uint8_rgb(images))
        then[name] = (pool.double(), logits.double())
        assert torch.equal(now[name][0], then[name][0]) and torch.equal(now[name][1], then[name][1])
    assert now["grey"][0].shape == (5, 2048) and now["grey"][1].shape == (5, 1008)
    assert frechet_distance(now["grey"][0], now["colour"][0]) == frechet_distance(then["grey"][0], then["colour"][0])
    assert kernel_inception_distance(now["grey"][0], now["colour"][0], subsets=3, subset_size=4) == \
        kernel_inception_distance(then["grey"][0], then["colour"][0], subsets=3, subset_size=4)
    assert inception_score(now["colour"][1], splits=1) == inception_score(then["colour"][1], splits=1)


def test_a_weights_file_that_runs_code_or_is_not_inception_is_one_line(tmp_path):
    """torch-fidelity loads a path with the full unpickler; genlab reads the file with weights_only first."""
    from genlab.core.metrics import MetricUnavailable
    from genlab.eval.inception import inception_extractor

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    torch.save({"Conv2d_1a_3x3.conv.weight": Boom()}, tmp_path / "evil.pth")
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    for name in ("evil.pth", "other.pth"):
        with pytest.raises(MetricUnavailable, match=f"{name} is not the torch-fidelity Inception weights file"):
            inception_extractor(tmp_path / name, "cpu")
    assert not (tmp_path / "ran").exists()


# ---- genlab weights ---------------------------------------------------------------------------------------------
def test_genlab_weights_lists_every_file_and_add_puts_a_checked_download_in_place(tmp_path, monkeypatch):
    from genlab.core import weights
    from genlab.core.errors import GenlabError

    content = b"stand-in weights\n"
    digest = hashlib.sha256(content).hexdigest()
    fake = weights.WeightsFile("standin", f"standin-{digest[:8]}.pth", "https://example.org/standin.pth",
                               "a test", 1)
    weights.known()  # the families register theirs on import
    monkeypatch.setattr(weights, "_FILES", dict(weights._FILES))  # the stand-in is forgotten after the test
    weights.register(fake)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("GENLAB_STANDIN_WEIGHTS", raising=False)
    assert {w.name for w in weights.known()} >= {"standin", "inception", "vgg19"}  # the families registered theirs
    download = tmp_path / "Downloads" / "whatever.bin"
    download.parent.mkdir()
    download.write_bytes(content)
    assert fake.find() is None
    which, target, copied = weights.add(download)
    assert (which, target, copied) == (fake, tmp_path / "torch" / "hub" / "checkpoints" / fake.file, True)
    assert target.read_bytes() == content and fake.find() == target and fake.verified(target)
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".part")]
    assert weights.add(download)[2] is False  # the same file again: nothing to do
    monkeypatch.setenv("GENLAB_STANDIN_WEIGHTS", str(download))  # the variable is looked at, alone
    assert fake.places() == [("$GENLAB_STANDIN_WEIGHTS", download)] and fake.find() == download
    monkeypatch.setenv("GENLAB_STANDIN_WEIGHTS", str(tmp_path / "nowhere.pth"))  # the cache's copy is not used
    assert fake.find() is None and "GENLAB_STANDIN_WEIGHTS=" in fake.missing("a test", "or not")
    with pytest.raises(GenlabError, match="GENLAB_STANDIN_WEIGHTS=.* is set, and genlab reads standin only there"):
        weights.add(download)  # a copy into the cache would not be read while the variable is set


def test_genlab_weights_cli_lists_missing_files_and_refuses_an_unknown_one(tmp_path):
    env = {"TORCH_HOME": str(tmp_path / "torch")}
    out = run_cli(["weights"], tmp_path, env_extra=env)
    assert out.returncode == 0, out.stderr
    for expected in ("inception", "weights-inception-2015-12-05-6726825d.pth", "missing", "vgg19-dcbb9e9d.pth",
                     "GENLAB_INCEPTION_WEIGHTS=FILE", "genlab weights add FILE", "fid, kid, is"):
        assert expected in out.stdout
    (tmp_path / "odd.pth").write_bytes(b"not weights")
    out = run_cli(["weights", "add", "odd.pth"], tmp_path, env_extra=env)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "is none of the weights genlab knows" in out.stderr and not (tmp_path / "torch").exists()


# ---- shell completion -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def installed_completion(tmp_path_factory) -> tuple[Path, dict]:
    """`genlab --install-completion bash` into a fresh HOME, and a PATH whose `genlab` is this Python's."""
    home = tmp_path_factory.mktemp("home")
    bin_dir = home / "bin"
    bin_dir.mkdir()
    (bin_dir / "genlab").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m genlab "$@"\n')
    (bin_dir / "genlab").chmod(0o755)
    env = {"HOME": str(home), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SHELL": "/bin/bash"}
    # Typer finds a user's shell from the parent processes; under pytest there may be none, so the shell is named
    # (Typer's switch for tests turns --install-completion into an option that takes it)
    out = subprocess.run(["genlab", "--install-completion", "bash"], cwd=home, capture_output=True, text=True,
                         timeout=120, env={**os.environ, **env, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert out.returncode == 0 and "bash completion installed" in out.stdout, out.stdout + out.stderr
    script = home / ".bash_completions" / "genlab.sh"
    assert script.is_file() and str(script) in (home / ".bashrc").read_text()
    return script, env


def bash_complete(installed, words: list[str], cwd: Path) -> list[str]:
    """What bash's TAB offers: COMP_WORDS / COMP_CWORD through the installed script's function. `words` are
    bash's words (it splits `model=v` into `model`, `=`, `v`); the last one is the word under the cursor."""
    script, env = installed
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    program = (f"source '{script}'\nCOMP_WORDS=({quoted})\nCOMP_CWORD={len(words) - 1}\n"
               "_genlab_completion genlab\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n")
    out = subprocess.run(["bash", "--norc", "-c", program], cwd=cwd, capture_output=True, text=True, timeout=120,
                         env={**os.environ, **env})
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    return [line for line in out.stdout.splitlines() if line]


def in_process(monkeypatch, words: list[str]) -> list[str]:
    """What the installed script's call answers, run in this process by Typer's test runner, with the
    environment bash gives: COMP_WORDS joined by newlines, COMP_CWORD, _GENLAB_COMPLETE=complete_bash."""
    from typer.testing import CliRunner

    from genlab.app.cli import app

    result = CliRunner().invoke(app, [], prog_name="genlab", env={
        "_GENLAB_COMPLETE": "complete_bash", "COMP_WORDS": "\n".join(words), "COMP_CWORD": str(len(words) - 1)})
    assert result.exit_code == 0, result.output
    return [line for line in result.output.splitlines() if line]


def test_bash_completes_model_names_and_run_folders_through_the_installed_script(installed_completion, tmp_path):
    from genlab.core.paths import config_dir

    models = sorted(p.stem for p in (config_dir() / "model").glob("*.yaml"))
    # bash splits `model=` into `model`, `=`: the cursor after `=`, then on a started value
    assert sorted(bash_complete(installed_completion, ["genlab", "train", "model", "="], tmp_path)) == models
    assert bash_complete(installed_completion, ["genlab", "train", "model", "=", "v"], tmp_path) == ["vae", "vqvae"]
    runs = _run_tree(tmp_path)
    assert bash_complete(installed_completion, ["genlab", "sample", ""], tmp_path) == \
        ["outputs/dcgan_digits/", "outputs/multirun/", "outputs/vae_digits/"]
    assert bash_complete(installed_completion, ["genlab", "sample", "outputs/d"], tmp_path) == runs[:2]
    assert bash_complete(installed_completion, ["genlab", "tr"], tmp_path) == ["train", "translate"]


def _run_tree(root: Path) -> list[str]:
    runs = ["outputs/dcgan_digits/2026-01-01_10-00-00", "outputs/dcgan_digits/2026-01-02_10-00-00",
            "outputs/vae_digits/2026-01-03_10-00-00", "outputs/multirun/2026-01-04_10-00-00/0"]
    for run in runs:
        (root / run / "checkpoints").mkdir(parents=True)
        (root / run / "checkpoints" / "last.pt").write_bytes(b"")
    (root / "outputs" / "multirun" / "2026-01-04_10-00-00" / "multirun.yaml").write_text("")
    (root / "notes").mkdir()  # a folder with no run in it is not offered
    return runs


def test_train_completion_opens_keys_of_the_composed_config_and_their_values(monkeypatch, tmp_path):
    from genlab.core.paths import config_dir

    monkeypatch.chdir(tmp_path)
    complete = lambda *words: in_process(monkeypatch, ["genlab", *words])
    assert complete("train", "mod") == ["model=", "model."]
    # a lone key is opened (bash would put a space after `experiment=`): every option, as experiment=NAME
    experiments = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))
    assert complete("train", "experi") == [f"experiment={e}" for e in experiments]
    # a lone leaf shows its current value (digits' tuned 100 epochs)
    assert complete("train", "train.epo") == ["train.epochs=", "train.epochs=100"]
    assert complete("train", "train.epochs", "=") == ["100"]
    optim = complete("train", "optim.")
    assert {"optim.lr=", "optim.betas=", "optim.schedule."} <= set(optim) and "train.epochs=" not in optim
    # keys of the config the line composes so far: the VAE's, once model=vae is typed
    vae = complete("train", "model", "=", "vae", "model.")
    assert "model.latent_dim=" in vae and "model.ngf=" not in vae
    assert "--nproc" in complete("train", "--")
    assert "tune" in complete("train", "hydra/sweeper", "=")
    runs = _run_tree(tmp_path)
    assert complete("eval", "outputs/v") == [runs[2]]  # a lone folder is opened down to its run
    for command in ("translate", "upscale", "reconstruct"):
        assert complete(command, "outputs/dcgan_digits/2026-01-02") == [runs[1]]
    assert complete("report", "outputs/multirun/2") == ["outputs/multirun/2026-01-04_10-00-00",
                                                        "outputs/multirun/2026-01-04_10-00-00/"]
    assert complete("train", "train.resume", "=", "outputs/d") == runs[:2]
    # a flag's value: its choices, or nothing of genlab's so that bash completes file names
    assert complete("train", "--cfg", "") == ["job", "hydra", "all"]
    assert complete("train", "--config-dir", "") == []
    # an unknown model on the line is passed over (the keys are the default model's); a config that fails to
    # compose completes nothing rather than failing in the shell
    assert "model.ngf=" in complete("train", "model", "=", "nosuch", "model.")
    import genlab.app.completion

    def broken(typed):
        raise RuntimeError("a config that does not compose")

    monkeypatch.setattr(genlab.app.completion, "_leaves", broken)
    assert complete("train", "optim.") == []


def test_zsh_and_fish_get_whole_words_and_hydras_completion_hint_is_replaced(tmp_path):
    zsh = run_cli([], tmp_path, env_extra={"_GENLAB_COMPLETE": "complete_zsh",
                                           "_TYPER_COMPLETE_ARGS": "genlab train model=dc"})
    assert zsh.returncode == 0 and '"model=dcgan"' in zsh.stdout and "\n" not in zsh.stdout.strip()
    fish = run_cli([], tmp_path, env_extra={"_GENLAB_COMPLETE": "complete_fish", "_TYPER_COMPLETE_FISH_ACTION":
                                            "get-args", "_TYPER_COMPLETE_ARGS": "genlab train data=fashion"})
    assert fish.returncode == 0 and fish.stdout.split("\t")[0] == "data=fashion_mnist"
    out = run_here(["train", "-sc", "install=bash"], tmp_path)
    assert out.returncode == 2 and "genlab --install-completion" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    help_text = run_cli(["train", "--hydra-help", "model=vae"], tmp_path)
    assert help_text.returncode == 0, help_text.stderr
    assert "genlab --install-completion" in help_text.stdout and "-sc install" not in help_text.stdout
    assert not list(tmp_path.iterdir())  # nothing written


def test_genlab_list_shows_each_description_whole(tmp_path):
    from genlab.core.paths import config_dir, description

    out = run_cli(["list", "experiment"], tmp_path, env_extra={"COLUMNS": "1000"})
    assert out.returncode == 0, out.stderr
    for path in (config_dir() / "experiment").glob("*.yaml"):
        text = description(path.read_text())
        assert text and text in out.stdout, path.name
    assert "the nine others, 90% of the test split, are the anomalies" in out.stdout  # a third comment line


# ---- loggers ----------------------------------------------------------------------------------------------------
def wandb_records(path: Path) -> list:
    """The records of a wandb run file (run-<id>.wandb), read back with wandb's own protobuf messages. The file
    is a LevelDB-style log: a 7-byte header, then 32 KiB blocks of chunks (crc32 4, length 2, type 1: full,
    first, middle, last), a block's tail of under 7 bytes being padding."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, records, pos, pending = 32768, [], 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0:  # zero padding to the end of the block
            pos += block - pos % block if pos % block else 0
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def test_a_wandb_run_in_offline_mode_writes_its_folder_with_the_scalars_config_and_images(tmp_path):
    pytest.importorskip("wandb", reason="pip install 'genlab[wandb]'")
    home = tmp_path / "home"
    home.mkdir()
    out = run_cli(["train", "logger=[tensorboard,wandb]", "logger.wandb.tags=[smoke]", "data.limit=256",
                   "train.steps=12", "train.log_every=4", "train.batch_size=32", "hydra.run.dir=run"], tmp_path,
                  env_extra={"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")})
    assert out.returncode == 0, out.stderr
    assert not [p for p in home.rglob("*") if "wandb" in p.name]  # wandb wrote nothing outside the run folder
    run = tmp_path / "run"
    assert "wandb: offline run in" in out.stderr + out.stdout and "wandb sync" in out.stderr + out.stdout
    files = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1
    records = wandb_records(files[0])
    history = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            items = {}
            for item in record.history.item:  # a key, or a nested one: [tag, field] for an image's fields
                path = [item.key] if item.key else list(item.nested_key)
                node = items
                for part in path[:-1]:
                    node = node.setdefault(part, {})
                node[path[-1]] = json.loads(item.value_json)
            history.setdefault(items.pop("_step"), {}).update(items)
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in logged if "g_loss" in r]
    assert [r["step"] for r in losses] == [4, 8, 12]
    for record in logged:  # every scalar of metrics.jsonl, at its step, under TensorBoard's tag
        for name, tag in (("g_loss", "train/g_loss"), ("lr/g", "lr/g"), ("epoch_img_per_s", "perf/epoch_img_per_s")):
            if name in record:
                assert history[record["step"]][tag] == pytest.approx(record[name])
    grid = history[0]["visuals/samples"]  # the sample grid before the first step, its PNG beside the log
    assert grid["_type"] == "image-file" and (files[0].parent / "files" / grid["path"]).is_file()
    (start,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    config = {u.key: json.loads(u.value_json) for u in start.config.update}
    assert config["model"]["name"] == "dcgan" and config["train"]["steps"] == 12
    assert (start.run_group, start.display_name, list(start.tags)) == ("dcgan_digits", "run", ["smoke"])
    # TensorBoard beside it, read back by its own reader, with the config once
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tb")).Reload()
    assert [e.step for e in events.Scalars("train/g_loss")] == [4, 8, 12]
    assert "config/text_summary" in events.Tags()["tensors"]


def test_logger_choices_and_settings_are_checked_in_one_line(tmp_path):
    from genlab.app.checks import check_command_line
    from genlab.core.errors import GenlabError

    for overrides, expected in ((["logger=[tensorboard,wandbb]"], "unknown logger 'wandbb'"),
                                (["logger=wandb", "logger.wandb.mode=cloud"], "logger.wandb.mode must be one of"),
                                (["logger=wandb", "logger.wandb.tags=smoke"], "logger.wandb.tags must be a list"),
                                (["train.objective_direction=up"], "train.objective_direction must be one of min, max"),
                                (["train.objective_n=5"], "train.objective_n must be"),
                                (["loss=[hinge,lsgan]"], "loss takes one option"),
                                (["logger=null"], "chooses no logger"),
                                (["logger=tensorboard,wandb"], "list them: logger=\\[tensorboard,wandb\\]"),
                                (["logger.wandb.mode=online"], "add logger=wandb"),
                                (["-m", "hydra/sweeper=tune", "model=vae", "hydra.sweeper.custom_search_space=os.system"],
                                 "genlab runs no code named in configs"),
                                (["-m", "hydra/sweeper=tune", "model=vae", "hydra.sweeper.storage=sqlite:///s.db"],
                                 "a study database is written outside the sweep folder")):
        with pytest.raises(GenlabError, match=expected):
            check_command_line(overrides)
    out = run_here(["train", "logger=wandbb"], tmp_path)  # and as the user sees it
    assert out.returncode == 2 and out.stderr.strip().splitlines() == \
        ["genlab: unknown logger 'wandbb' (did you mean wandb?); choose one of: tensorboard, wandb"]
    assert not list(tmp_path.iterdir())


def test_logger_wandb_alone_writes_no_tensorboard_events(tmp_path, train):
    pytest.importorskip("wandb", reason="pip install 'genlab[wandb]'")
    train(tmp_path / "run", "logger=wandb", "data.limit=64", "train.batch_size=32", "train.steps=2")
    assert not (tmp_path / "run" / "tb").exists() and list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert (tmp_path / "run" / "metrics.jsonl").is_file() and (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


# ---- the Optuna sweeper -----------------------------------------------------------------------------------------
def test_an_optuna_sweep_gets_the_objectives_direction_and_needs_an_objective(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="pip install 'genlab[optuna]'")
    from genlab.app.checks import check_command_line
    from genlab.core.errors import GenlabError

    def direction(*args):
        line = check_command_line(args if "hydra.mode=MULTIRUN" in args else ["-m", *args])
        return [o for o in line.overrides if o.startswith("hydra.sweeper.direction")]

    # the VAE's test_nelbo, lower is better: the sweeper's minimize stands; SRGAN logs SRResNet's test_psnr_y,
    # which SRResNet states is better higher, so genlab turns it round
    assert direction("hydra/sweeper=tune", "model=vae", "optim.lr=interval(1e-4,1e-2)") == []
    assert direction("hydra/sweeper=tune", "model=srgan", "data=sr_photos", "model.content=mse",
                     "model.from_scratch=true", "train.objective=test_psnr_y", "optim.lr=interval(1e-5,1e-4)") == \
        ["hydra.sweeper.direction=maximize"]
    # hydra.mode=MULTIRUN is -m: checked the same way
    assert direction("hydra.mode=MULTIRUN", "hydra/sweeper=tune", "model=srresnet", "data=sr_photos",
                     "optim.lr=interval(1e-5,1e-3)") == ["hydra.sweeper.direction=maximize"]
    with pytest.raises(GenlabError, match="hydra.sweeper.direction must be minimize or maximize, got 'MAXIMIZE'"):
        direction("hydra/sweeper=tune", "model=vae", "hydra.sweeper.direction=MAXIMIZE", "optim.lr=interval(1e-4,1e-2)")
    # the plugin's own default (minimize) against SRResNet's PSNR: genlab knows better
    assert direction("hydra/sweeper=optuna", "model=srresnet", "data=sr_photos", "optim.lr=interval(1e-5,1e-3)") == \
        ["hydra.sweeper.direction=maximize"]
    assert direction("sweep=tune_gan_lr") == []  # fd_domain (scored at the end): lower is better, as set
    # a direction set on the line stays, unless it contradicts one genlab knows
    assert direction("hydra/sweeper=tune", "hydra.sweeper.direction=maximize", "train.objective=d_real",
                     "optim.lr=interval(1e-4,1e-2)") == ["hydra.sweeper.direction=maximize"]
    with pytest.raises(GenlabError, match="hydra.sweeper.direction=maximize but train.objective test_nelbo is better "
                                          "lower"):
        direction("hydra/sweeper=tune", "hydra.sweeper.direction=maximize", "model=vae", "optim.lr=interval(1e-4,1e-2)")
    # and so does one a preset of the user's sets for a scalar genlab knows nothing of
    presets = tmp_path / "mine" / "sweep"
    presets.mkdir(parents=True)
    (presets / "real.yaml").write_text("# @package _global_\n# mine\ndefaults:\n  - override /hydra/sweeper: tune\n"
                                       "train:\n  objective: d_real\nhydra:\n  sweeper:\n    direction: maximize\n"
                                       "    params:\n      optim.lr: interval(1e-4, 1e-2)\n")
    assert direction("--config-dir", str(tmp_path / "mine"), "sweep=real") == []
    for args, expected in ((["hydra/sweeper=optuna", "optim.lr=interval(1e-4,1e-2)"],
                            "dcgan states none: pass train.objective=NAME"),
                           (["hydra/sweeper=tune", "train.objective=precision_recall", "optim.lr=interval(1e-4,1e-2)"],
                            "that metric's numbers have other names"),
                           (["hydra/sweeper=tune", "model=maf", "data=toy2d", "train.objective=fd_domain",
                             "optim.lr=interval(1e-4,1e-2)"], "train.objective=fd_domain scores images data")):
        with pytest.raises(GenlabError, match=expected):
            direction(*args)


@pytest.mark.slow
def test_an_optuna_trial_without_its_objective_stops_the_sweep_in_one_line(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="pip install 'genlab[optuna]'")
    out = run_cli(["train", "-m", "sweep=tune_vae_lr", "train.objective=test_nelb", "model=vae",
                   "hydra.sweeper.n_trials=2", "data.limit=64", "train.steps=1", "train.batch_size=32",
                   "hydra.sweep.dir=sweep"], tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("genlab: train.objective=test_nelb: this run logged no "
                                                          "test_nelb; it logged ")
    assert (tmp_path / "sweep" / "0" / "checkpoints" / "last.pt").is_file()  # the trial's run is kept


@pytest.mark.slow
def test_an_optuna_sweep_of_three_trials_completes_and_keeps_the_best(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="pip install 'genlab[optuna]'")
    import yaml

    out = run_cli(["train", "-m", "sweep=tune_vae_lr", "model=vae", "hydra.sweeper.n_trials=3", "data.limit=128",
                   "train.epochs=1", "hydra.sweep.dir=sweep"], tmp_path)
    assert out.returncode == 0, out.stderr
    jobs = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir() and p.name.isdigit())
    assert [j.name for j in jobs] == ["0", "1", "2"]
    rates, scores = [], []
    for job in jobs:
        config = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
        records = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
        rates.append(config["optim"]["lr"])
        scores.append([r["test_bits_per_dim"] for r in records if "test_bits_per_dim" in r][-1])
    assert len(set(rates)) == 3 and all(1e-4 <= r <= 1e-2 for r in rates)  # sampled, log-uniform in the range
    best = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(min(scores))  # minimised: the lowest test bits/dim
    assert best["best_params"]["optim.lr"] == pytest.approx(rates[scores.index(min(scores))])


def test_typers_own_usage_errors_are_one_line_with_where_to_look(tmp_path):
    for args, expected in ((["trian"], "genlab: no such command 'trian'. Did you mean 'train'? (see `genlab --help`)"),
                           (["eval", "run", "--metric", "fid"], ("genlab: eval: no such option: --metric (Possible "
                                                                 "options: --device, --metrics) (see `genlab eval --help`)")),
                           (["sample"], "genlab: sample: missing argument 'run' (see `genlab sample --help`)")):
        out = run_cli(args, tmp_path)
        assert out.returncode == 2 and out.stderr.strip().splitlines() == [expected], out.stderr


def test_waits_show_a_progress_bar_on_a_terminal_and_nothing_in_a_log(tmp_path, train):
    """`genlab sample -o FOLDER/` on a terminal (a pseudo-terminal here) draws a bar while it writes; with its
    output in a file it prints only its result line."""
    import pty
    import select

    train(tmp_path / "run", "data.limit=64", "train.batch_size=32", "train.steps=1", "model.ngf=8", "model.ndf=8")
    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "genlab", "sample", "run", "-n", "400", "-o", "many/"],
                               cwd=tmp_path, stdin=slave, stdout=slave, stderr=slave, env={**os.environ, "COLUMNS": "100"})
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal closed: the process ended
            break
        if not chunk:
            break
        seen += chunk
    assert process.wait(timeout=60) == 0, seen.decode(errors="replace")
    os.close(master)
    text = seen.decode(errors="replace")
    assert "writing many/" in text and "400 samples from" in text and len(list((tmp_path / "many").iterdir())) == 400
    logged = run_cli(["sample", "run", "-n", "20", "-o", "few/"], tmp_path)
    assert logged.returncode == 0 and "writing few/" not in logged.stdout + logged.stderr


def test_metrics_json_is_merged_per_metric_and_a_damaged_one_is_replaced(tmp_path):
    from genlab.core import files
    from genlab.eval.store import merge_metrics

    files.declare(tmp_path, replace=True, what="the run folder")  # what `genlab eval` declares for its run
    path = tmp_path / "metrics.json"
    path.write_text("{not json")
    header = {"run": "r", "checkpoint": "c1", "step": 10, "weights": "trained"}
    fid = {"value": 12.0, "protocol": {"n_generated": 100}, "metric": "fid"}
    merge_metrics(path, header, {"metrics": {"fid": fid}, "skipped": {}, "ran": ["fid"]})
    first = json.loads(path.read_text())
    assert first["metrics"]["fid"]["value"] == 12.0 and first["metrics"]["fid"]["step"] == 10
    # a later call that scores fd_domain and has to skip fid (no weights here) keeps fid's number and stamp
    later = {"run": "r", "checkpoint": "c2", "step": 20, "weights": "trained"}
    fd = {"value": 3.0, "protocol": {}, "metric": "fd_domain"}
    merge_metrics(path, later, {"metrics": {"fd_domain": fd}, "skipped": {"fid": "no weights"}, "ran": ["fd_domain"]})
    record = json.loads(path.read_text())
    assert record["metrics"]["fid"] == first["metrics"]["fid"] and record["metrics"]["fd_domain"]["step"] == 20
    assert record["skipped"] == {"fid": "no weights"} and record["step"] == 20
    # fid scored again replaces only its own outputs
    merge_metrics(path, later, {"metrics": {"fid": {**fid, "value": 9.0}}, "skipped": {}, "ran": ["fid"]})
    record = json.loads(path.read_text())
    assert record["metrics"]["fid"]["value"] == 9.0 and record["metrics"]["fd_domain"]["value"] == 3.0
    assert record["skipped"] == {}
    # an entry written before entries had stamps takes the old file's checkpoint and step, not the new one's
    path.write_text(json.dumps({"checkpoint": "old", "step": 5, "time": "then", "weights": "ema",
                                "metrics": {"fd_domain": {"value": 1.0, "protocol": {}}}, "skipped": {}}))
    merge_metrics(path, later, {"metrics": {"fid": fid}, "skipped": {}, "ran": ["fid"]})
    legacy = json.loads(path.read_text())["metrics"]["fd_domain"]
    assert (legacy["checkpoint"], legacy["step"], legacy["time"], legacy["weights"]) == ("old", 5, "then", "ema")
