"""`genlab eval`: the metrics, their protocols, and the numbers they must order correctly."""

import json
import math

import pytest
import torch

from genlab.core.imaging import frechet_distance, inception_score, kernel_inception_distance, ms_ssim, precision_recall
from tests.conftest import FASHION_SYSTEM, run_cli


def test_frechet_distance_matches_the_closed_form_for_gaussians():
    torch.manual_seed(0)
    a = torch.randn(20000, 4)
    b = torch.randn(20000, 4) * 2 + torch.tensor([1.0, 0, 0, 0])
    # |m|^2 + tr(I + 4I - 2 (4I)^(1/2)) = 1 + 4 * (1 + 4 - 4)
    assert frechet_distance(a, b) == pytest.approx(5.0, rel=0.02)
    assert abs(frechet_distance(a, a)) < 1e-6
    # singular covariances (dead ReLU units) stay finite
    dead = torch.cat([torch.randn(500, 3), torch.zeros(500, 5)], dim=1)
    assert math.isfinite(frechet_distance(dead, dead + 0.1))


class Flatten(torch.nn.Module):
    def forward(self, x):
        return x.flatten(1).double()


pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:torchmetrics.*")


def test_kid_and_inception_score_agree_with_torchmetrics():
    from torchmetrics.image.inception import InceptionScore
    from torchmetrics.image.kid import KernelInceptionDistance

    torch.manual_seed(0)
    a, b = torch.randn(60, 16), torch.randn(60, 16) + 0.5
    theirs = KernelInceptionDistance(feature=Flatten(), subsets=1, subset_size=60)
    theirs.update(a, real=True)
    theirs.update(b, real=False)
    mine, _ = kernel_inception_distance(b, a, subsets=1, subset_size=60)  # every subset is all: order-free
    assert mine == pytest.approx(float(theirs.compute()[0]), rel=1e-6)

    logits = torch.randn(50, 10) * 3
    reference = InceptionScore(feature=Flatten(), splits=1)
    reference.update(logits)
    assert inception_score(logits, splits=1)[0] == pytest.approx(float(reference.compute()[0]), rel=1e-6)


def test_precision_recall_of_same_and_disjoint_sets():
    torch.manual_seed(0)
    real = torch.randn(300, 8)
    assert precision_recall(real, real.clone()) == (1.0, 1.0)
    from genlab.core.metrics import MetricUnavailable

    with pytest.raises(MetricUnavailable, match="more than k=3"):
        precision_recall(real, real[:3])
    precision, recall = precision_recall(real, torch.randn(300, 8) + 100)
    assert precision == 0.0 and recall == 0.0
    # a generator that draws only one of two real modes: high precision, recall about one half
    two_modes = torch.cat([torch.randn(150, 8), torch.randn(150, 8) + 10])
    precision, recall = precision_recall(two_modes, torch.randn(150, 8))
    assert precision > 0.8 and 0.3 < recall < 0.55  # (same-distribution sets score about 0.87 at k=3)


def test_ms_ssim_is_one_for_identical_images_and_low_for_unrelated_ones():
    torch.manual_seed(0)
    x = torch.rand(4, 1, 32, 32)
    same, scales = ms_ssim(x, x.clone())
    assert torch.allclose(same, torch.ones(4), atol=1e-5) and scales == 3  # 32 -> 16 -> 8, a 7x7 window fits
    different, _ = ms_ssim(x, torch.rand(4, 1, 32, 32))
    assert (different < 0.2).all()


@pytest.fixture(scope="module")
def untrained_run(tmp_path_factory):
    """A DCGAN trained for a single step on digits: enough for the one-line answers."""
    from genlab.app.compose import compose
    from genlab.app.entry import run_training

    root = tmp_path_factory.mktemp("runs")
    run_training(compose(["train.progress=none", "train.steps=1", "train.sample_every=100"]), root / "untrained")
    return root


@pytest.fixture(scope="module")
def digit_runs(untrained_run):
    """Beside it, a DCGAN trained 15 epochs on digits (for the slow tests that rank the two)."""
    from genlab.app.compose import compose
    from genlab.app.entry import run_training

    run_training(compose(["train.progress=none", "train.epochs=15", "train.sample_every=100"]),
                 untrained_run / "trained")
    return untrained_run


@pytest.mark.slow  # two evaluations of 1,000 samples and the classifier's training: about a minute on 2 cores
def test_domain_fd_ranks_real_below_trained_below_untrained(digit_runs, tmp_path):
    env = {"GENLAB_CACHE": str(tmp_path / "cache"), "TORCH_HOME": str(tmp_path / "torch")}
    scores = {}
    for name in ("trained", "untrained"):
        out = run_cli(["eval", str(digit_runs / name), "-n", "1000"], tmp_path, env_extra=env)
        assert out.returncode == 0, out.stderr
        record = json.loads((digit_runs / name / "metrics.json").read_text())
        scores[name] = {k: v["value"] for k, v in record["metrics"].items()}
        # every number carries its protocol
        fd = record["metrics"]["fd_domain"]["protocol"]
        assert (fd["n_generated"], fd["n_real"], fd["real_split"], fd["image_size"]) == (1000, 359, "test", 32)
        assert "DomainClassifier" in fd["features"]
        # no Inception weights here: FID/KID/IS are skipped with the reason, not a traceback
        assert set(record["skipped"]) >= {"fid", "kid", "is"} and "Inception weights" in record["skipped"]["fid"]
        assert "skipped fid, kid, is:" in out.stdout and "Traceback" not in out.stderr
    print(scores)
    floor = scores["trained"]["fd_domain_real_floor"]
    assert floor < scores["trained"]["fd_domain"] < scores["untrained"]["fd_domain"]
    assert scores["trained"]["class_coverage"] > scores["untrained"]["class_coverage"]
    assert scores["trained"]["precision"] > scores["untrained"]["precision"]
    # the classifier was trained once and then read from the cache
    assert len(list((tmp_path / "cache" / "classifiers").glob("digits_32px_1ch_*.pt"))) == 1
    assert "training the digits domain classifier" in run_cli(
        ["eval", str(digit_runs / "untrained"), "-n", "50", "--metrics", "fd_domain"], tmp_path,
        env_extra={**env, "GENLAB_CACHE": str(tmp_path / "other")}).stderr
    again = run_cli(["eval", str(digit_runs / "untrained"), "-n", "50", "--metrics", "fd_domain"], tmp_path, env_extra=env)
    assert again.returncode == 0 and "training the" not in again.stderr


def test_missing_inception_weights_is_one_line(untrained_run, tmp_path):
    out = run_cli(["eval", str(untrained_run / "untrained"), "--metrics", "fid", "-n", "10"], tmp_path,
                  env_extra={"TORCH_HOME": str(tmp_path / "torch"), "GENLAB_CACHE": str(tmp_path / "cache")})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("genlab: fid: FID/KID/IS needs the Inception weights")
    assert "weights-inception-2015-12-05-6726825d.pth" in lines[0] and "fd_domain" in lines[0]


def _conditional_vae_eval(tmp_path, train, with_classifier: bool):
    train(tmp_path / "cvae", "model=cvae", "data.limit=64", "train.batch_size=32", "train.steps=2")
    out = run_cli(["eval", "cvae", "--metrics", "likelihood", "-n", "200"], tmp_path)  # the session's GENLAB_CACHE
    assert out.returncode == 0, out.stderr
    first = json.loads((tmp_path / "cvae" / "metrics.json").read_text())["metrics"]
    assert {"nelbo", "bits_per_dim"} <= set(first) and "fd_domain" not in first
    # a second call with other metrics adds to metrics.json: the first numbers stay, with their own time
    from tests.hostile import run_here  # the same main() in this process, after one real `genlab eval`

    out = run_here(["eval", "cvae", "--metrics", "ms_ssim", "-n", "200"], tmp_path)
    assert out.returncode == 0, out.stderr
    metrics = json.loads((tmp_path / "cvae" / "metrics.json").read_text())["metrics"]
    assert {"ms_ssim", "nelbo", "bits_per_dim"} <= set(metrics)
    assert metrics["nelbo"] == first["nelbo"] and metrics["nelbo"]["metric"] == "likelihood"
    assert metrics["ms_ssim"]["metric"] == "ms_ssim" and metrics["ms_ssim"]["time"] >= first["nelbo"]["time"]
    assert metrics["nelbo"]["protocol"]["n_real"] == 359 and metrics["bits_per_dim"]["value"] > 0
    assert metrics["ms_ssim"]["protocol"]["grouped_by"] == "requested label"  # a conditional model: no classifier
    assert metrics["ms_ssim"]["protocol"]["classes"] == 10 and metrics["ms_ssim_real"]["protocol"]["n_real"] == 359
    out = run_here(["eval", "cvae", "--metrics", "fidd"], tmp_path)
    assert out.returncode == 2 and "unknown metric 'fidd'" in out.stderr and "fd_domain" in out.stderr
    if with_classifier:  # the domain classifier's training: half a minute on a busy CPU, so in the slow twin
        out = run_here(["eval", "cvae", "--metrics", "fd_domain", "-n", "200"], tmp_path)
        assert out.returncode == 0, out.stderr
        metrics = json.loads((tmp_path / "cvae" / "metrics.json").read_text())["metrics"]
        assert metrics["fd_domain"]["metric"] == "fd_domain" and metrics["nelbo"] == first["nelbo"]
        assert 0 <= metrics["conditional_accuracy"]["value"] <= 1


def test_eval_of_a_conditional_vae_scores_classes_and_likelihood(tmp_path, train):
    _conditional_vae_eval(tmp_path, train, with_classifier=False)


@pytest.mark.slow
def test_eval_of_a_conditional_vae_scores_its_classes_with_the_domain_classifier(tmp_path, train):
    """The same, and fd_domain with the conditional accuracy (the digits classifier is trained)."""
    _conditional_vae_eval(tmp_path, train, with_classifier=True)


@pytest.mark.slow
def test_fid_kid_is_run_end_to_end_with_inception_weights_on_disk(digit_runs, tmp_path):
    """With stand-in weights (random, same shapes) the whole Inception path runs: real weights are a download."""
    from unittest import mock

    import torch_fidelity.feature_extractor_inceptionv3 as tf

    with mock.patch.object(tf, "load_state_dict_from_url", lambda *a, **k: None), \
         mock.patch.object(tf.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None):
        net = tf.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.manual_seed(0)
    for module in net.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.normal_(module.weight, 0, 0.05)
    torch.save(net.state_dict(), tmp_path / "inception.pth")
    out = run_cli(["eval", str(digit_runs / "trained"), "--metrics", "fid,kid,is", "-n", "100"], tmp_path,
                  env_extra={"GENLAB_INCEPTION_WEIGHTS": str(tmp_path / "inception.pth")})
    assert out.returncode == 0, out.stderr
    metrics = json.loads((digit_runs / "trained" / "metrics.json").read_text())["metrics"]
    assert metrics["fid"]["value"] > 0 and math.isfinite(metrics["kid"]["value"]) and metrics["is"]["value"] >= 1
    assert metrics["fid"]["protocol"]["n_real"] == 359 and "Inception-v3" in metrics["fid"]["protocol"]["features"]
    # stand-in weights are not the published file: said, and recorded with their checksum
    assert metrics["fid"]["protocol"]["weights_published"] is False and metrics["fid"]["protocol"]["weights_sha256"]
    assert "not comparable with published ones" in out.stdout + out.stderr


@pytest.mark.skipif(not FASHION_SYSTEM.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_a_vae_ranks_another_dataset_as_out_of_distribution(tmp_path, train):
    from genlab.eval.store import evaluate_run
    from genlab.train.runs import load_run

    train(tmp_path / "vae", "model=vae", "data.size=16", "train.batch_size=64", "train.epochs=3",
          "train.sample_every=100")
    run = load_run(tmp_path / "vae")
    result = evaluate_run(run, ["ood"], n=10, seed=0, device=torch.device("cpu"), ood_data="fashion_mnist")
    auroc, auprc = result["metrics"]["ood_auroc"], result["metrics"]["ood_auprc"]
    print({k: v["value"] for k, v in result["metrics"].items()})
    assert auroc["protocol"]["n_in"] == 359 and auroc["protocol"]["n_out"] == 10000
    assert auroc["protocol"]["out_of_distribution"] == "fashion_mnist test"
    assert auroc["value"] > 0.65  # measured 0.735 (3 epochs): clothes are less likely than held-out digits
    assert auprc["protocol"]["chance"] == pytest.approx(10000 / 10359, abs=1e-4) and auprc["value"] > auprc["protocol"]["chance"]
    assert result["metrics"]["ood_mean_score_out"]["value"] > result["metrics"]["ood_mean_score_in"]["value"]
    # by hand: the same AUROC from the model's own score
    from sklearn.metrics import roc_auc_score

    from genlab.app.compose import compose
    from genlab.data import build_data

    digits = build_data(compose(["data.size=16"]).data, 500, 0, torch.device("cpu"))
    ood = build_data(compose(["data=fashion_mnist", "data.size=16"]).data, 500, 0, torch.device("cpu"))
    inside = torch.cat([run.model.score(b) for b in digits.test.ordered()])
    outside = torch.cat([run.model.score(b) for b in ood.test.ordered()])
    truth = [0] * len(inside) + [1] * len(outside)
    assert roc_auc_score(truth, torch.cat([inside, outside]).numpy()) == pytest.approx(auroc["value"], abs=1e-6)
    # a second dataset that needs a setting says which, and how to pass it
    from genlab.core.errors import GenlabError

    with pytest.raises(GenlabError, match=r"--ood-data image_folder needs data.root: pass it, e.g. --ood-data "
                                          r"'image_folder data.root=VALUE'"):
        evaluate_run(run, ["ood"], n=10, seed=0, device=torch.device("cpu"), ood_data="image_folder")
    with pytest.raises(GenlabError, match="--ood-data image_folder: data.root=.*nothing is not a folder"):
        evaluate_run(run, ["ood"], n=10, seed=0, device=torch.device("cpu"),
                     ood_data=f"image_folder data.root={tmp_path / 'nothing'}")


def test_ood_data_is_refused_in_one_line_where_it_cannot_apply(untrained_run, tmp_path):
    from tests.hostile import run_here

    out = run_here(["eval", str(untrained_run / "untrained"), "--metrics", "ood", "--ood-data", "digits"], tmp_path)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "genlab: ood does not apply to this run: dcgan gives no per-example score to rank by"]
    out = run_here(["eval", str(untrained_run / "untrained"), "--metrics", "fd_domain", "--ood-data", "digits"],
                   tmp_path)
    assert out.returncode == 2 and "--ood-data is read only by the ood metric" in out.stderr
    listing = run_cli(["list", "metrics"], tmp_path)
    assert listing.returncode == 0 and "translation" in listing.stdout and "ood" in listing.stdout
