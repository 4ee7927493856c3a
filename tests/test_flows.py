"""Normalizing flows: MADE, MAF, IAF, RealNVP; exact likelihoods, dequantisation, toy densities, anomaly scores."""

import json
import math

import pytest
import torch
from omegaconf import OmegaConf

import genlab.data
import genlab.models  # noqa: F401
from genlab.core.errors import GenlabError
from genlab.core.registry import MODELS
from genlab.data import Batch, DataSpec
from genlab.models.flows import MADE, Dequantize, hidden_degrees, input_degrees
from tests.conftest import FASHION_SYSTEM, run_cli
from tests.hostile import run_here  # the same main() in this process

VECTORS = DataSpec("toy", 0, 0, kind="vectors", shapes={"x": [5]})
IMAGES = DataSpec("digits", 1, 4, 10)  # 1 x 4 x 4: a Jacobian of 16 x 16
BASE = {"log_scale_clamp": 5.0, "logit_lambda": 1e-6}
CONFIGS = {
    "made": {"hidden": 16, "hidden_layers": 2, "order": "natural", "order_seed": 0},
    "maf": {"layers": 3, "hidden": 16, "hidden_layers": 2, "order": "natural", "order_seed": 0},
    "maf_random": {"layers": 3, "hidden": 16, "hidden_layers": 1, "order": "random", "order_seed": 3},
    "iaf": {"layers": 3, "hidden": 16, "hidden_layers": 2, "order": "natural", "order_seed": 0},
    "realnvp": {"coupling": "affine", "layers": 2, "width": 8, "blocks": 1},
    "realnvp_additive": {"coupling": "additive", "layers": 2, "width": 8, "blocks": 1},
}
TINY_FLOW = ["model=maf", "model.layers=2", "model.hidden=32", "model.hidden_layers=1", "data=digits", "data.size=8",
             "train.batch_size=64", "train.log_every=5", "device=cpu"]


def flow(key: str, spec, seed: int = 0):
    """A flow with random (not identity) weights: the zero-initialised output layers are perturbed too."""
    name = key.split("_")[0]
    model = MODELS[name](OmegaConf.create({"name": name, **BASE, **CONFIGS[key]}), spec)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * (0.05 if name == "realnvp" else 0.2))
    return model.double().eval()


# ---- acceptance 1: invertibility, log-dets, the autoregressive property ----------------------------------
@pytest.mark.parametrize("key", list(CONFIGS))
@pytest.mark.parametrize("spec", [VECTORS, IMAGES], ids=["vectors", "images"])
def test_inverse_of_forward_recovers_x_and_the_log_det_is_the_jacobians(key, spec):
    model = flow(key, spec)
    shape = spec.shape("x") if spec.kind == "vectors" else spec.shape("image")
    x = torch.randn(4, *shape, dtype=torch.float64)
    z, log_det = model.to_noise(x)
    assert torch.allclose(model.to_data(z), x, atol=1e-8)
    assert z.abs().max() > 0 and not torch.allclose(z.reshape(4, -1), x.reshape(4, -1), atol=1e-3)  # not identity
    for i in range(2):
        jacobian = torch.autograd.functional.jacobian(lambda v: model.to_noise(v[None])[0].flatten(), x[i])
        jacobian = jacobian.reshape(math.prod(shape), math.prod(shape))
        assert float(log_det[i].detach()) == pytest.approx(float(torch.linalg.slogdet(jacobian)[1]), abs=1e-7)
    if key == "realnvp_additive":
        assert torch.equal(log_det, torch.zeros_like(log_det))  # volume-preserving
    else:
        assert log_det.abs().max() > 1e-3


@pytest.mark.parametrize("order", ["natural", "random"])
def test_made_outputs_depend_only_on_inputs_of_lower_degree(order):
    dim = 6
    degrees = input_degrees(dim, order, torch.Generator().manual_seed(1))
    made = MADE(degrees, [20, 20]).double()
    with torch.no_grad():
        for p in made.parameters():
            p.normal_()
    xs = torch.randn(40, dim, dtype=torch.float64)
    for output in (0, 1):  # shift, log-scale
        # |d out_i / d x_j| summed over 40 points (at one point a ReLU path may be off)
        jacobian = sum(torch.autograd.functional.jacobian(lambda v, output=output: made(v[None])[output][0], x).abs() for x in xs)
        allowed = degrees[None, :] < degrees[:, None]  # input j may reach output i only if deg(j) < deg(i)
        assert torch.all(jacobian[~allowed] == 0)
        assert torch.all(jacobian[allowed] > 0)  # and every allowed path is used: the test can fail
    assert (degrees.sort().values == torch.arange(1, dim + 1)).all()
    if order == "natural":
        assert torch.equal(degrees, torch.arange(1, dim + 1))
    # the hidden rule is >=, the output rule strict: the masks say so directly
    hidden, output = made.body[0].mask, made.out.mask
    assert torch.equal(hidden.bool(), hidden_degrees(20, dim)[:, None] >= degrees[None, :])
    assert not output[degrees.argmin()].any() and not output[dim + degrees.argmin()].any()  # x_1: no inputs


def test_with_fewer_hidden_units_than_dimensions_every_input_still_reaches_the_outputs():
    dim = 12
    made = MADE(input_degrees(dim, "natural"), [4]).double()  # 4 units for 11 degrees: spread 1, 4, 8, 11
    assert hidden_degrees(4, dim).tolist() == [1, 4, 8, 11]
    used = made.body[0].mask.bool().any(0)  # which inputs feed some hidden unit
    assert used[: dim - 1].all()  # all but the last (whose degree D no output may see anyway)


def test_iaf_parameter_gradients_through_its_sequential_density_match_finite_differences():
    """IAF's density solves z one dimension at a time; autograd must see every pass, or training is wrong."""
    model = flow("iaf", DataSpec("toy", 0, 0, kind="vectors", shapes={"x": [3]}))
    x = torch.randn(4, 3, dtype=torch.float64)
    weight = model.layers[0].made.body[0].weight
    loss = model.nll(x)["nll"].sum()
    (grad,) = torch.autograd.grad(loss, weight)
    for index in [(0, 0), (3, 1), (7, 0)]:
        if not model.layers[0].made.body[0].mask[index]:
            continue
        with torch.no_grad():
            weight[index] += 1e-6
            up = float(model.nll(x)["nll"].sum())
            weight[index] -= 2e-6
            down = float(model.nll(x)["nll"].sum())
            weight[index] += 1e-6
        assert float(grad[index]) == pytest.approx((up - down) / 2e-6, rel=1e-4, abs=1e-7)
    assert grad.abs().sum() > 0


def test_maf_density_is_one_pass_and_iaf_sampling_is_one_pass(monkeypatch):
    """The direction named in the code is the one that is fast: count MADE calls."""
    calls = {"n": 0}
    real_forward, real_column = MADE.forward, MADE.column

    def forward(self, x):
        calls["n"] += 1
        return real_forward(self, x)

    def column(self, x, i, weights):  # one dimension's pass of a sequential solve
        calls["n"] += 1
        return real_column(self, x, i, weights)

    monkeypatch.setattr(MADE, "forward", forward)
    monkeypatch.setattr(MADE, "column", column)
    x = torch.randn(3, 5, dtype=torch.float64)
    for key, density, sampling in (("maf", 3, 15), ("iaf", 3 * 6, 3)):  # 3 layers, D = 5 (+1: IAF's log-scales)
        model = flow(key, VECTORS)
        calls["n"] = 0
        z, _ = model.to_noise(x)
        assert calls["n"] == density, key
        calls["n"] = 0
        model.to_data(z)
        assert calls["n"] == sampling, key


def test_dequantisation_round_trips_8_bit_images_and_counts_the_logit_log_det():
    pixels = torch.randint(0, 256, (3, 1, 4, 4))
    x = pixels.float() / 127.5 - 1
    transform = Dequantize(1e-6)
    y, log_det = transform.to_flow(x, torch.Generator().manual_seed(0))
    assert torch.equal(transform.to_image(y), x)  # back onto the same 8-bit values
    u = torch.sigmoid(y.double()).sub(1e-6).div(1 - 2e-6)
    assert ((u * 256).floor() == pixels).all()
    # d logit(lam + (1 - 2 lam) u) / du, by autograd, element by element
    u = u.requires_grad_()
    s = 1e-6 + (1 - 2e-6) * u
    (torch.log(s) - torch.log1p(-s)).sum().backward()
    assert torch.allclose(log_det.double(), u.grad.log().flatten(1).sum(1), rtol=1e-5)


def test_image_nll_is_the_logit_nll_less_the_transforms_log_det_plus_log_256_per_pixel():
    model = flow("maf", IMAGES).float()
    x = torch.randint(0, 256, (5, 1, 4, 4)).float() / 127.5 - 1
    parts = model.nll(x, torch.Generator().manual_seed(0))
    _, log_det = model.dequantize.to_flow(x, torch.Generator().manual_seed(0))
    assert torch.allclose(parts["nll"], parts["nll_logit"] - log_det + 16 * math.log(256), rtol=1e-5)
    scores = model.evaluate([Batch(image=x, label=torch.zeros(5, dtype=torch.long))])
    assert scores["test_bits_per_dim_8bit"] == pytest.approx(float(parts["nll"].detach().mean()) / (16 * math.log(2)), rel=1e-5)
    assert scores["test_nll_logit"] == pytest.approx(float(parts["nll_logit"].detach().mean()), rel=1e-5)


# ---- training through the real trainer ---------------------------------------------------------------------
def _test_scalars(run_dir, name):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["epoch"], r[name]) for r in rows if name in r]


def test_a_maf_on_digits_improves_bits_per_dim_clearly_and_draws_on_the_8_bit_grid(tmp_path, train):
    train(tmp_path / "maf", *TINY_FLOW, "train.epochs=8", "train.sample_every=8")
    curve = _test_scalars(tmp_path / "maf", "test_bits_per_dim_8bit")
    (first_epoch, untrained), (_, trained) = curve[0], curve[-1]
    assert first_epoch == 0 and untrained > 7.5  # near the 8 bits of a uniform image
    assert trained < untrained - 2.5, curve
    samples = tmp_path / "maf" / "samples"
    assert (samples / "epoch_000.png").is_file() and (samples / "epoch_008.png").is_file()
    from genlab.train.runs import load_run

    run = load_run(tmp_path / "maf")
    images = run.model.sample(512, generator=torch.Generator().manual_seed(0))
    assert torch.equal(images, ((images + 1) * 127.5).round() / 127.5 - 1)  # 8-bit values
    # not noise: the samples' mean image is the digits' mean image (an untrained flow's is flat grey)
    from genlab.data import build_data

    real = torch.cat([b["image"] for b in build_data(run.cfg.data, 64, 0, torch.device("cpu")).test.ordered()])

    def likeness(samples):
        return float(torch.corrcoef(torch.stack([samples.mean(0).flatten(), real.mean(0).flatten()]))[0, 1])

    untrained = MODELS["maf"](run.cfg.model, run.spec).sample(512, generator=torch.Generator().manual_seed(0))
    assert likeness(images) > 0.85 and likeness(untrained) < 0.5


def test_a_toy_flow_draws_its_density_beside_data_and_samples_and_resumes_exactly(tmp_path, train, interrupt_at):
    from genlab.core.errors import Interrupted
    from genlab.models.flows import RealNVP

    settings = ["model=realnvp", "model.layers=4", "model.width=16", "model.blocks=1", "data=toy2d",
                "data.n_train=1024", "data.n_test=256", "train.batch_size=128", "train.epochs=3", "train.ema=0.9",
                "device=cpu", "optim.schedule.name=cosine"]
    train(tmp_path / "straight", *settings)
    straight = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    with interrupt_at(RealNVP, 11), pytest.raises(Interrupted):
        train(tmp_path / "first", *settings)
    train(tmp_path / "resumed", *settings, f"train.resume={tmp_path / 'first'}")
    resumed = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)
    assert straight["step"] == 24 and all(torch.equal(straight["model"][k], resumed["model"][k])
                                          for k in straight["model"])
    figure = tmp_path / "straight" / "samples" / "epoch_003_density.png"
    from PIL import Image

    with Image.open(figure) as image:
        assert image.width > 900 and image.height > 250
    assert _test_scalars(tmp_path / "straight", "test_nll")[-1][1] < _test_scalars(tmp_path / "straight", "test_nll")[0][1]
    # genlab sample of a flow on points writes them as CSV (a grid of images means nothing here)
    out = run_cli(["sample", str(tmp_path / "straight"), "-n", "5"], cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = (tmp_path / "straight" / "generated" / "samples_n5_seed0.csv").read_text().splitlines()
    assert lines[0] == "x1,x2" and len(lines) == 6 and all(len(line.split(",")) == 2 for line in lines[1:])
    wrong = run_here(["sample", str(tmp_path / "straight"), "-o", str(tmp_path / "grid.png")], tmp_path)
    assert wrong.returncode == 2 and "draws points, not images: pass -o FILE.csv" in wrong.stderr


@pytest.mark.parametrize("shape", ["moons", "circles", "checkerboard", "eight_gaussians", "two_spirals", "pinwheel",
                                   "swissroll", "rings"])
def test_toy_shapes_are_standardised_and_the_checkerboard_fills_only_its_dark_squares(shape):
    from genlab.data.toy2d import toy_points

    points = torch.from_numpy(toy_points(shape, 4000, 0))
    assert points.shape == (4000, 2) and points.mean(0).abs().max() < 1e-5
    assert float(points.std(unbiased=False)) == pytest.approx(1.0, abs=1e-3)
    assert torch.equal(points, torch.from_numpy(toy_points(shape, 4000, 0)))
    if shape == "checkerboard":  # before standardising: uniform on the 8 dark squares of the [-2, 2]^2 board
        import numpy as np

        from genlab.data.toy2d import SHAPES

        cells = torch.floor(torch.from_numpy(SHAPES[shape](4000, np.random.RandomState(0), None)) + 2)
        assert len(torch.unique(cells, dim=0)) == 8 and cells.min() == 0 and cells.max() == 3
        assert ((cells[:, 0] + cells[:, 1]) % 2 == 0).all()  # dark squares only: column + row even


# ---- anomaly detection and likelihood under shift ------------------------------------------------------------
def test_anomaly_eval_on_a_held_out_class_writes_auroc_auprc_and_both_curves(tmp_path, train):
    train(tmp_path / "run", *TINY_FLOW, "data.normal_classes=[0]", "train.epochs=6", "train.sample_every=6")
    result = run_cli(["eval", str(tmp_path / "run"), "--anomaly"], cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    metrics = record["metrics"]
    assert set(record["figures"]) == {"anomaly_roc", "anomaly_pr", "anomaly_scores"}
    for name in record["figures"].values():
        assert (tmp_path / "run" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from sklearn.datasets import load_digits

    held_out = load_digits().target[4::5]  # the digits' test split: every fifth image, all classes
    zeros = int((held_out == 0).sum())
    protocol = metrics["anomaly_auroc"]["protocol"]
    assert protocol["n_normal"] == zeros and protocol["n_anomalous"] == len(held_out) - zeros
    assert metrics["anomaly_auroc"]["value"] > 0.9  # zeros are easy to tell from the other digits
    assert metrics["anomaly_auprc"]["protocol"]["chance"] == pytest.approx(1 - zeros / len(held_out), abs=1e-4)
    assert metrics["anomaly_auprc"]["value"] > 0.95
    assert "anomaly_auroc_complexity" in metrics and "accuracy" not in json.dumps(list(metrics))
    assert 0 <= metrics["anomaly_auroc_class_8"]["value"] <= 1
    from genlab.app.report import build_report

    _, index = build_report([tmp_path / "run"], tmp_path / "report")
    assert (tmp_path / "report" / "eval_anomaly_roc.png").is_file() and "eval_anomaly_roc.png" in index.read_text()
    # a run trained on every class has no anomalies to find: one line
    train(tmp_path / "all", *TINY_FLOW, "train.steps=2")
    again = run_cli(["eval", str(tmp_path / "all"), "--anomaly"], cwd=tmp_path, timeout=300)
    assert again.returncode == 2 and "data.normal_classes=[0]" in again.stderr and "Traceback" not in again.stderr
    assert not (tmp_path / "all" / "metrics.json").exists() and not (tmp_path / "all" / "eval").exists()


def test_input_complexity_is_the_png_length_in_bits():
    from genlab.eval.density import png_bits

    flat = -torch.ones(1, 1, 28, 28)
    noise = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    bits = png_bits(torch.cat([flat, noise]))
    assert bits[0] < 8 * 120 < 8 * 28 * 28 < bits[1]  # a flat image is a few dozen bytes; noise does not compress


@pytest.mark.parametrize("override, message", [
    ("data.normal_classes=[]", "leaves no normal images"),
    ("data.normal_classes=[12]", "classes 0 to 9, got 12"),
    ("data.normal_classes=[0,1,2,3,4,5,6,7,8,9]", "leaves no anomalous test images"),
    ("data.normal_classes=[1,1]", "lists a class twice"),
    ("data.normal_classes=1", "must be a list of class numbers, e.g. data.normal_classes=[0]"),
    ("model.logit_lambda=0.5", "model.logit_lambda must be in (0, 0.5)"),
    ("model.logit_lambda=0", "model.logit_lambda must be in (0, 0.5)"),
    ("model.order=backwards", "model.order must be one of natural, random"),
    ("model.log_scale_clamp=0", "model.log_scale_clamp must be positive"),
])
def test_bad_flow_settings_are_one_line_before_any_folder(override, message):
    from genlab.app.checks import check_command_line

    with pytest.raises(GenlabError) as caught:
        check_command_line(["model=maf", "data=digits", override])
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("args, message", [
    (["model=maf", "data=toy2d", "data.shape=spiral"], "data.shape must be one of moons"),
    (["model=maf", "data=toy2d", "data.normal_classes=[0]"], "unknown key data.normal_classes"),
    (["model=realnvp", "data=digits", "data.size=9"], "data.size must be even"),
    (["model=vae", "data=toy2d"], "trains on images data, and data=toy2d gives vectors"),
])
def test_bad_toy_and_pairing_inputs_are_one_line(args, message):
    from genlab.app.checks import check_command_line

    with pytest.raises(GenlabError, match=message):
        check_command_line(args)


def test_a_bad_class_list_on_the_command_line_is_one_line_and_no_folder(tmp_path):
    result = run_here(["train", "model=maf", "data=digits", "data.normal_classes=[12]"], tmp_path)
    assert result.returncode == 2 and "classes 0 to 9, got 12" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "outputs").exists()


def test_a_flow_whose_log_scales_blow_up_stops_in_one_line_and_keeps_no_bad_state(tmp_path, train):
    from genlab.core.errors import TrainingStopped

    with pytest.raises(TrainingStopped, match=r"loss is (nan|inf).*train.on_nan=stop"):
        train(tmp_path / "nan", *TINY_FLOW, "model.log_scale_clamp=1e6", "optim.lr=100", "train.epochs=3")
    assert not (tmp_path / "nan" / "checkpoints" / "last.pt").exists()  # it diverged before the first checkpoint


def test_an_ood_set_of_another_size_or_channel_count_is_one_line(tmp_path, train):
    train(tmp_path / "run", *TINY_FLOW, "train.steps=2")
    result = run_cli(["eval", str(tmp_path / "run"), "--metrics", "ood", "--ood-data", "digits data.size=16"],
                     cwd=tmp_path, timeout=300)
    assert result.returncode == 2 and "pick data of the same kind and shape" in result.stderr, result.stderr


def test_a_vae_is_scored_for_anomalies_by_its_elbo_without_the_complexity_correction(tmp_path, train):
    from genlab.eval.store import evaluate_run
    from genlab.train.runs import load_run

    train(tmp_path / "vae", "model=vae", "model.latent_dim=4", "data=digits", "data.size=8",
          "data.normal_classes=[0,1]", "train.steps=4", "device=cpu")
    run = load_run(tmp_path / "vae")
    result = evaluate_run(run, ["anomaly"], n=10, seed=0, device=torch.device("cpu"), anomaly=True)
    metrics = result["metrics"]
    assert 0 <= metrics["anomaly_auroc"]["value"] <= 1 and "negative ELBO" in metrics["anomaly_auroc"]["protocol"]["score"]
    assert metrics["anomaly_auroc"]["protocol"]["normal_classes"] == [0, 1]
    assert "anomaly_auroc_complexity" not in metrics  # -ELBO of [0, 1] pixels is no 8-bit code length
    assert set(result["figures"]) == {"anomaly_roc", "anomaly_pr", "anomaly_scores"}
    with pytest.raises(GenlabError, match="--anomaly is read only by the anomaly metric"):
        evaluate_run(run, ["likelihood"], n=10, seed=0, device=torch.device("cpu"), anomaly=True)
    with pytest.raises(GenlabError, match="anomaly does not apply to this run: no --anomaly given"):
        evaluate_run(run, ["anomaly"], n=10, seed=0, device=torch.device("cpu"))


@pytest.mark.slow
def test_the_toy_presets_learn_their_shapes(tmp_path, train):
    """maf_moons (22 s) and realnvp_checkerboard (47 s): test NLL far below the best Gaussian's."""
    import numpy as np

    from genlab.data.toy2d import toy_points

    for preset, shape in (("maf_moons", "moons"), ("realnvp_checkerboard", "checkerboard")):
        train(tmp_path / preset, f"experiment={preset}", "device=cpu")
        points = toy_points(shape, 24000, 0)[20000:]  # the test split
        gaussian = float(np.mean(0.5 * ((points - points.mean(0)) ** 2 / points.var(0)).sum(1)
                                 + 0.5 * np.log(2 * np.pi * points.var(0)).sum()))  # the best Gaussian's NLL
        nll = _test_scalars(tmp_path / preset, "test_nll")[-1][1]
        assert nll < gaussian - 0.8, (preset, nll, gaussian)
        assert (tmp_path / preset / "samples" / "epoch_050_density.png").is_file()


@pytest.mark.slow
def test_plain_likelihood_misses_trousers_and_the_complexity_correction_finds_them(tmp_path, train):
    """experiment=maf_anomaly_tops (about 2 min): trained on the five tops, the flow finds the simpler trousers
    more likely than its own tops; -log2 p(x) - L(x) ranks them as anomalies (docs/flows.md)."""
    from genlab.eval.store import evaluate_run
    from genlab.train.runs import load_run

    if not FASHION_SYSTEM.is_dir():
        pytest.skip("needs Debian's dataset-fashion-mnist")
    train(tmp_path / "tops", "experiment=maf_anomaly_tops", "device=cpu")
    metrics = evaluate_run(load_run(tmp_path / "tops"), ["anomaly"], n=10, seed=0, device=torch.device("cpu"),
                           anomaly=True)["metrics"]
    assert metrics["anomaly_auroc_class_1"]["value"] < 0.4  # trousers: worse than chance
    assert metrics["anomaly_auroc_complexity_class_1"]["value"] > 0.9
    assert metrics["anomaly_auroc_complexity"]["value"] > metrics["anomaly_auroc"]["value"] + 0.2


def test_flow_timing_times_the_run_and_its_mirror_image(tmp_path, train):
    """Seed 001's timing: a MAF samples a dimension at a time and trains in one pass; an IAF of the same layers (the
    mirror, built untrained) the other way round. Two passes D sequential steps apart: the ratios cannot cross."""
    train(tmp_path / "run", *TINY_FLOW, "train.steps=2")
    result = run_cli(["eval", str(tmp_path / "run"), "--metrics", "flow_timing"], cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics"]
    keys = {f"{who}_{what}" for who in ("flow", "mirror") for what in ("train_batch_s", "sample_batch_s",
                                                                        "sample_train_ratio")}
    assert set(metrics) == keys and all(m["value"] > 0 for m in metrics.values())
    assert metrics["flow_sample_train_ratio"]["value"] == pytest.approx(
        metrics["flow_sample_batch_s"]["value"] / metrics["flow_train_batch_s"]["value"])
    protocol = metrics["mirror_sample_train_ratio"]["protocol"]
    assert protocol["batch"] == 64 and protocol["dimensions"] == 64 and protocol["model"].startswith("IAF")
    assert metrics["flow_sample_train_ratio"]["value"] > metrics["mirror_sample_train_ratio"]["value"]
    # an unknown metric beside it is one line, not a traceback
    other = run_cli(["eval", str(tmp_path / "run"), "--metrics", "flow_timing,no_such"], cwd=tmp_path)
    assert other.returncode == 2 and "Traceback" not in other.stderr
