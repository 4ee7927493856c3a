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
