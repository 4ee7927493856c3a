"""Fitting the ecosystem: torch-fidelity's public Inception extractor, `genlab weights`, shell completion,
loggers (wandb), the Optuna sweeper, and the start/end summaries of a run."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli


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


def test_the_public_extractor_gives_the_numbers_of_the_former_torchmetrics_path(stand_in_inception):
    """Same weights, same images: torch-fidelity's FeatureExtractorInceptionV3 (now) and torchmetrics'
    NoTrainInceptionV3 with antialias=False (before) give the same features, so the same FID, KID and IS."""
    from torchmetrics.image.fid import NoTrainInceptionV3

    from genlab.evaluation import (_to_uint8_rgb, frechet_distance, inception_extractor, inception_features,
                                   inception_score, kernel_inception_distance)

    generator = torch.Generator().manual_seed(1)
    grey = torch.rand(5, 1, 32, 32, generator=generator) * 2 - 1  # a greyscale set, repeated to RGB
    colour = torch.rand(5, 3, 28, 28, generator=generator) * 2 - 1  # another size: the resize to 299 matters
    ours = inception_extractor(stand_in_inception, "cpu")
    before = NoTrainInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"], str(stand_in_inception),
                                antialias=False)
    now, then = {}, {}
    for name, images in (("grey", grey), ("colour", colour)):
        now[name] = inception_features(ours, images, "cpu", batch=3)
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
    from genlab.evaluation import MetricUnavailable, inception_extractor

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
    from genlab import weights

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
    monkeypatch.setenv("GENLAB_STANDIN_WEIGHTS", str(download))  # the variable is looked at first
    assert fake.places()[0] == ("$GENLAB_STANDIN_WEIGHTS", download) and fake.find() == download


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
    out = run_cli(["--install-completion", "bash"], home, env_extra=env)
    assert out.returncode == 0, out.stderr
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


def test_bash_completes_model_names_keys_values_and_flags_of_genlab_train(installed_completion, tmp_path):
    from genlab.paths import config_dir

    models = sorted(p.stem for p in (config_dir() / "model").glob("*.yaml"))
    assert sorted(bash_complete(installed_completion, ["genlab", "train", "model", "="], tmp_path)) == models
    assert bash_complete(installed_completion, ["genlab", "train", "model", "=", "v"], tmp_path) == ["vae", "vqvae"]
    assert bash_complete(installed_completion, ["genlab", "train", "mod"], tmp_path) == ["model=", "model."]
    # a lone key is opened (bash would put a space after `experiment=`): every option, as experiment=NAME
    experiments = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))
    assert bash_complete(installed_completion, ["genlab", "train", "experi"], tmp_path) == \
        [f"experiment={e}" for e in experiments]
    assert bash_complete(installed_completion, ["genlab", "train", "train.epo"], tmp_path) == \
        ["train.epochs=", "train.epochs=100"]  # and a lone leaf shows its current value (digits' tuned 100)
    optim = bash_complete(installed_completion, ["genlab", "train", "optim."], tmp_path)
    assert {"optim.lr=", "optim.betas=", "optim.schedule."} <= set(optim) and "train.epochs=" not in optim
    # keys of the config the line composes so far: the VAE's, once model=vae is typed
    vae = bash_complete(installed_completion, ["genlab", "train", "model", "=", "vae", "model."], tmp_path)
    assert "model.latent_dim=" in vae and "model.ngf=" not in vae
    assert bash_complete(installed_completion, ["genlab", "train", "train.epochs", "="], tmp_path) == ["100"]
    assert "--nproc" in bash_complete(installed_completion, ["genlab", "train", "--"], tmp_path)
    assert bash_complete(installed_completion, ["genlab", "tr"], tmp_path) == ["train", "translate"]


def test_bash_completes_run_folders_for_the_commands_that_read_runs(installed_completion, tmp_path):
    runs = ["outputs/dcgan_digits/2026-01-01_10-00-00", "outputs/dcgan_digits/2026-01-02_10-00-00",
            "outputs/vae_digits/2026-01-03_10-00-00", "outputs/multirun/2026-01-04_10-00-00/0"]
    for run in runs:
        (tmp_path / run / "checkpoints").mkdir(parents=True)
        (tmp_path / run / "checkpoints" / "last.pt").write_bytes(b"")
    (tmp_path / "outputs" / "multirun" / "2026-01-04_10-00-00" / "multirun.yaml").write_text("")
    (tmp_path / "notes").mkdir()  # a folder with no run in it is not offered
    complete = lambda *words: bash_complete(installed_completion, ["genlab", *words], tmp_path)  # noqa: E731
    assert complete("sample", "") == ["outputs/dcgan_digits/", "outputs/multirun/", "outputs/vae_digits/"]
    assert complete("sample", "outputs/d") == runs[:2]
    assert complete("eval", "outputs/v") == [runs[2]]  # a lone folder is opened down to its run
    for command in ("translate", "upscale", "reconstruct"):
        assert complete(command, "outputs/dcgan_digits/2026-01-02") == [runs[1]]
    assert complete("report", "outputs/multirun/2") == ["outputs/multirun/2026-01-04_10-00-00",
                                                        "outputs/multirun/2026-01-04_10-00-00/"]
    assert complete("train", "train.resume", "=", "outputs/d") == runs[:2]


def test_zsh_and_fish_get_whole_words_and_hydras_completion_hint_is_replaced(tmp_path):
    zsh = run_cli([], tmp_path, env_extra={"_GENLAB_COMPLETE": "complete_zsh",
                                           "_TYPER_COMPLETE_ARGS": "genlab train model=dc"})
    assert zsh.returncode == 0 and '"model=dcgan"' in zsh.stdout and "\n" not in zsh.stdout.strip()
    fish = run_cli([], tmp_path, env_extra={"_GENLAB_COMPLETE": "complete_fish", "_TYPER_COMPLETE_FISH_ACTION":
                                            "get-args", "_TYPER_COMPLETE_ARGS": "genlab train data=fashion"})
    assert fish.returncode == 0 and fish.stdout.split("\t")[0] == "data=fashion_mnist"
    out = run_cli(["train", "-sc", "install=bash"], tmp_path)
    assert out.returncode == 2 and "genlab --install-completion" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    help_text = run_cli(["train", "--hydra-help", "model=vae"], tmp_path)
    assert help_text.returncode == 0, help_text.stderr
    assert "genlab --install-completion" in help_text.stdout and "-sc install" not in help_text.stdout
    assert not list(tmp_path.iterdir())  # nothing written


def test_genlab_list_shows_each_description_whole(tmp_path):
    from genlab.paths import config_dir, description

    out = run_cli(["list", "experiment"], tmp_path, env_extra={"COLUMNS": "1000"})
    assert out.returncode == 0, out.stderr
    for path in (config_dir() / "experiment").glob("*.yaml"):
        text = description(path.read_text())
        assert text and text in out.stdout, path.name
    assert "the nine others, 90% of the test split, are the anomalies" in out.stdout  # a third comment line
