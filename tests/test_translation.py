"""Image-to-image translation: pix2pix and CycleGAN, their data, `genlab translate` and their evaluation."""

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from genlab.core.errors import GenlabError
from tests.conftest import FASHION_SYSTEM, run_cli

needs_fashion = pytest.mark.skipif(not FASHION_SYSTEM.is_dir(), reason="apt-get install dataset-fashion-mnist")

TINY_P2P = ["model=pix2pix", "data=edges2fashion", "data.limit=96", "data.test_limit=40", "model.ngf=8",
            "model.ndf=8", "model.d_layers=2", "train.batch_size=16", "train.sample_every=100", "train.log_every=1"]
TINY_CYCLE = ["model=cyclegan", "data=sandal2sneaker", "data.limit=48", "data.test_limit=20", "model.ngf=8",
              "model.ndf=8", "model.n_blocks=1", "model.d_layers=2", "model.pool_size=4", "train.batch_size=4",
              "train.sample_every=100", "train.log_every=1"]


def _count(module):
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_match_the_papers_networks():
    from genlab.models.blocks import PatchDiscriminator
    from genlab.models.cyclegan import ResNetGenerator
    from genlab.models.pix2pix import UNetGenerator

    assert _count(UNetGenerator(3, 3, depth=8)) == 54_413_955  # the report's Keras table sums to 54.4M
    patch = PatchDiscriminator(6)
    assert _count(patch) == 2_768_705
    assert PatchDiscriminator.receptive_field(3) == 70
    with torch.no_grad():
        assert patch(torch.zeros(1, 6, 256, 256)).shape == (1, 1, 30, 30)  # 30x30 scores at 256 px
    resnet = ResNetGenerator(3, 3, 64, n_blocks=9, norm="instance")
    assert _count(resnet) == pytest.approx(11.378e6, rel=1e-3)
    with torch.no_grad():  # the U-Net reaches 1x1 at its trained size and keeps the size
        assert UNetGenerator(1, 3, depth=5, ngf=8)(torch.zeros(2, 1, 32, 32)).shape == (2, 3, 32, 32)
        assert ResNetGenerator(1, 1, 8, 1)(torch.zeros(1, 1, 36, 44)).shape == (1, 1, 36, 44)


def test_the_image_pool_returns_a_stored_fake_half_the_time_once_full():
    from genlab.models.cyclegan import ImagePool

    torch.manual_seed(0)
    pool = ImagePool(10)
    first = torch.arange(10.0).view(10, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # filling: every fake passes through and is kept
    stored, fresh = 0, 0
    for i in range(2000):
        new = torch.full((1, 1, 1, 1), 100.0 + i)
        out = pool.query(new)
        if float(out) == 100.0 + i:
            fresh += 1
        else:
            stored += 1
            assert float(out) < 100.0 + i  # an older fake
    assert len(pool.images) == 10
    assert 0.45 < stored / 2000 < 0.55 and stored + fresh == 2000
    again = ImagePool(10)
    again.load_state_dict(pool.state_dict(), "cpu")
    assert all(torch.equal(a, b) for a, b in zip(again.images, pool.images))
    assert torch.equal(ImagePool(0).query(first), first)


def test_the_default_decay_is_constant_then_reaches_zero_at_the_last_step():
    from genlab.models.cyclegan import CycleGAN
    from genlab.train.schedules import build_schedule

    schedule = build_schedule({}, CycleGAN.default_schedule)
    total, spe = 200, 10  # 20 epochs: 10 constant, 10 decaying (the report's horse2zebra run)
    factors = [schedule.factor(s, total, spe) for s in range(total + 1)]
    assert factors[:100] == [1.0] * 100
    assert factors[150] == pytest.approx(0.5) and factors[199] == pytest.approx(0.01) and factors[200] == 0.0
    assert all(a > b for a, b in itertools.pairwise(factors[100:]))
    assert "0.5 of the run" in schedule.describe()


@needs_fashion
@pytest.mark.parametrize("model", ["pix2pix", "cyclegan"])
def test_a_run_interrupted_mid_decay_resumes_exactly(tmp_path, train, interrupt_at, model):
    from genlab.core.errors import Interrupted
    from genlab.models.cyclegan import CycleGAN
    from genlab.models.pix2pix import Pix2Pix

    settings = [*(TINY_P2P if model == "pix2pix" else TINY_CYCLE), "train.epochs=4", "train.ema=0.9"]
    train(tmp_path / "straight", *settings)
    straight = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    per_epoch = straight["batches_per_epoch"]
    at = 2 * per_epoch + 1  # inside the third epoch: the second half, where the rate decays
    with interrupt_at(Pix2Pix if model == "pix2pix" else CycleGAN, at), pytest.raises(Interrupted):
        train(tmp_path / "first", *settings)
    train(tmp_path / "resumed", *settings, f"train.resume={tmp_path / 'first'}")
    resumed = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.equal(straight["model"][k], resumed["model"][k]) for k in straight["model"])
    for name in straight["ema"]["shadow"]:
        assert all(torch.equal(v, resumed["ema"]["shadow"][name][k]) for k, v in straight["ema"]["shadow"][name].items())
    for name, opt in straight["optimizers"].items():
        assert opt["param_groups"][0]["lr"] == resumed["optimizers"][name]["param_groups"][0]["lr"]
        assert opt["param_groups"][0]["lr"] == pytest.approx(2e-4 / (2 * per_epoch))  # the last step's
    if model == "cyclegan":  # the pools of past fakes came back with the checkpoint
        assert straight["extra"]["pool_a"].shape == (4, 1, 32, 32)
        assert torch.equal(straight["extra"]["pool_a"], resumed["extra"]["pool_a"])
    names = {k for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines() for k in json.loads(line)}
    expected = {"G_GAN", "G_L1", "D_real", "D_fake"} if model == "pix2pix" else \
        {"D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B"}
    assert expected <= names


# ---- data --------------------------------------------------------------------------------------------------------

def _photo(seed: int, size=(40, 30)):
    """A crop of a real photo that scikit-image ships."""
    from skimage import data

    photo = data.astronaut()
    rng = np.random.default_rng(seed)
    top, left = rng.integers(0, 200, size=2)
    return photo[top : top + size[1], left : left + size[0]]


def _save(array, path: Path):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_paired_folders_in_both_layouts_and_their_mistakes(tmp_path, compose):
    from genlab.data import build_data

    side = tmp_path / "side"
    for split, n in (("train", 6), ("val", 2)):
        for i in range(n):
            a, b = _photo(i), 255 - _photo(i)
            _save(np.concatenate([a, b], axis=1), side / "set" / split / f"{i}.jpg")
    settings = ["data=paired", f"data.root={side}", "data.dataset=set", "data.size=16", "data.load_size=20"]
    data = build_data(compose(*settings).data, batch_size=2, seed=0, device=torch.device("cpu"))
    assert (data.spec.kind, data.spec.n_train, data.spec.n_test) == ("paired", 6, 2)
    assert data.spec.shapes == {"a": [3, 16, 16], "b": [3, 16, 16]}
    batch = next(data.train.epoch(0))
    assert batch["a"].shape == (2, 3, 16, 16)
    # B is A's negative in every pair: the same crop and flip reached both (JPEG keeps it approximate)
    assert (batch["a"] + batch["b"]).abs().mean() < 0.1
    swapped = build_data(compose(*settings, "data.direction=BtoA").data, batch_size=2, seed=0,
                         device=torch.device("cpu"))
    assert torch.equal(next(swapped.train.epoch(0))["a"], batch["b"])

    folders = tmp_path / "folders"
    for i in range(4):
        _save(_photo(i), folders / "set" / "A" / "train" / f"{i}.png")
        _save(_photo(i, (30, 30)), folders / "set" / "B" / "train" / f"{i}.png")
    _save(_photo(9), folders / "set" / "B" / "train" / "extra.png")
    with pytest.raises(GenlabError, match="paired folders must hold the same file names: extra.png is only in .*B"):
        build_data(compose("data=paired", f"data.root={folders}", "data.dataset=set", "data.size=16",
                           "data.load_size=16").data, 2, 0, torch.device("cpu"))
    (folders / "set" / "B" / "train" / "extra.png").unlink()
    data = build_data(compose("data=paired", f"data.root={folders}", "data.dataset=set", "data.size=16",
                              "data.load_size=16", "data.channels=1").data, 2, 0, torch.device("cpu"))
    assert data.spec.n_train == 4 and data.test is None and data.spec.shapes["b"] == [1, 16, 16]
    _save(_photo(5), folders / "set" / "A" / "val" / "5.png")
    with pytest.raises(GenlabError, match="A/val has no partner .*B/val: add it, or remove"):
        build_data(compose("data=paired", f"data.root={folders}", "data.dataset=set", "data.size=16",
                           "data.load_size=16").data, 2, 0, torch.device("cpu"))
    with pytest.raises(GenlabError, match="data.load_size=8 is smaller than the crop data.size=16"):
        build_data(compose("data=paired", f"data.root={folders}", "data.dataset=set", "data.size=16",
                           "data.load_size=8").data, 2, 0, torch.device("cpu"))


def test_unpaired_folders_and_a_missing_or_empty_domain(tmp_path, compose):
    from genlab.app.checks import check_command_line
    from genlab.data import build_data

    root = tmp_path / "data"
    for side, n in (("trainA", 5), ("trainB", 3), ("testA", 2), ("testB", 2)):
        for i in range(n):
            _save(_photo(10 * i + len(side)), root / "h2z" / side / f"{i}.png")
    data = build_data(compose("data=unpaired", f"data.root={root}", "data.dataset=h2z", "data.size=16",
                              "data.load_size=18").data, 1, 0, torch.device("cpu"))
    assert (data.spec.kind, data.spec.n_train, len(data.train)) == ("unpaired", 5, 5)
    with pytest.raises(GenlabError, match="Get horse2zebra.zip from"):
        check_command_line(["model=cyclegan", "data=horse2zebra", f"data.root={tmp_path / 'nowhere'}"])
    for f in (root / "h2z" / "trainB").iterdir():
        f.unlink()
    with pytest.raises(GenlabError, match="trainB holds no images: each domain needs some"):
        build_data(compose("data=unpaired", f"data.root={root}", "data.dataset=h2z").data, 1, 0, torch.device("cpu"))
    with pytest.raises(GenlabError, match="model=pix2pix trains on paired data, and data=unpaired gives unpaired"):
        check_command_line(["model=pix2pix", "data=unpaired", f"data.root={root}", "data.dataset=h2z"])


@needs_fashion
def test_the_demo_edges_are_drawings_of_the_items(compose):
    from genlab.data import build_data

    data = build_data(compose("data=edges2fashion", "data.limit=64").data, 8, 0, torch.device("cpu"))
    batch = data.fixed_batch(8)
    edges, items = batch["a"], batch["b"]
    assert set(torch.unique(edges).tolist()) <= {-1.0, 1.0}  # black lines on white
    lines = edges < 0
    assert 0.05 < lines.float().mean() < 0.5
    # the lines sit where the item is: on or beside its non-background pixels
    near_item = torch.nn.functional.max_pool2d((items > -0.9).float(), 3, 1, 1) > 0
    assert (lines & near_item).sum() / lines.sum() > 0.95


# ---- genlab translate --------------------------------------------------------------------------------------------

@needs_fashion
def test_translate_writes_one_output_per_input_at_its_size(tmp_path, train):
    from PIL import Image

    from tests.hostile import run_here  # main() in this process, after one real `genlab translate`

    train(tmp_path / "run", *TINY_P2P, "train.steps=2")
    inputs = tmp_path / "in"
    _save(np.full((37, 50), 255, np.uint8), inputs / "wide.png")
    _save(_photo(1), inputs / "photo.jpg")
    out = run_cli(["translate", "run", "in", "out"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "padded 50x37 to 64x64 (reflect; the network takes multiples of 32) and cropped back" in out.stdout
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["photo.png", "wide.png"]
    with Image.open(tmp_path / "out" / "wide.png") as img:
        assert img.size == (50, 37) and img.mode == "L"
    one = run_here(["translate", "run", "in/photo.jpg", "one.png"], tmp_path)
    assert one.returncode == 0 and (tmp_path / "one.png").is_file()
    again = run_here(["translate", "run", "in/photo.jpg", "two.png"], tmp_path)  # seeded: dropout stays on
    assert again.returncode == 0
    assert (tmp_path / "one.png").read_bytes() == (tmp_path / "two.png").read_bytes()
    onto = run_here(["translate", "run", "in/wide.png", "in/wide.png"], tmp_path)
    assert onto.returncode == 2 and "is an input: write the outputs somewhere else" in onto.stderr
    again = run_here(["translate", "run", "in", "out"], tmp_path)
    assert again.returncode == 2 and "out already exists and is not an empty folder" in again.stderr
    other = run_here(["translate", "run", "in", "new", "--direction", "BtoA"], tmp_path)
    assert other.returncode == 2 and "a pix2pix run translates one way" in other.stderr
    assert not (tmp_path / "new").exists()


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    from genlab.core.imaging import ssim

    a = _photo(3, (48, 40)).astype(np.float64) / 255
    b = np.clip(a + np.random.default_rng(0).normal(0, 0.05, a.shape), 0, 1)
    theirs = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                   data_range=1.0, channel_axis=2)
    ours = ssim(torch.from_numpy(a).permute(2, 0, 1)[None].float(), torch.from_numpy(b).permute(2, 0, 1)[None].float())
    assert float(ours) == pytest.approx(theirs, abs=1e-5)
    assert float(ssim(torch.ones(1, 1, 16, 16) * 0.3, torch.ones(1, 1, 16, 16) * 0.3)) == pytest.approx(1.0)


@needs_fashion
def test_eval_scores_each_family_by_its_own_metrics(tmp_path, train):
    from genlab.eval.store import evaluate_run
    from genlab.train.runs import load_run

    cpu = torch.device("cpu")
    train(tmp_path / "p2p", *TINY_P2P, "train.steps=2")
    scores = evaluate_run(load_run(tmp_path / "p2p"), None, n=10, seed=0, device=cpu)
    assert {"translation_l1", "translation_psnr", "translation_ssim", "baseline_ssim"} <= set(scores["metrics"])
    assert "fd_domain" not in scores["metrics"] and scores["metrics"]["translation_l1"]["protocol"]["n_images"] == 40
    if "translation_fid" not in scores["metrics"]:  # no Inception weights here: skipped with the way to get them
        assert "Inception weights" in scores["skipped"]["translation_fid"]


@needs_fashion
@pytest.mark.slow  # the A-vs-B classifier's training and the whole Fashion-MNIST shoe sets: half a minute
def test_eval_scores_cyclegan_by_domain_transfer(tmp_path, train):
    from genlab.eval.store import evaluate_run
    from genlab.train.runs import load_run

    cpu = torch.device("cpu")
    train(tmp_path / "cycle", *TINY_CYCLE, "train.steps=2")
    result = evaluate_run(load_run(tmp_path / "cycle"), None, n=10, seed=0, device=cpu)["metrics"]
    assert set(result) >= {"a_to_b_called_b", "b_to_a_called_a", "domain_accuracy_real"}
    assert "translation_l1" not in result  # unpaired: no targets to compare with
    protocol = result["a_to_b_called_b"]["protocol"]
    assert (protocol["n_test_a"], protocol["n_test_b"]) == (20, 20) and protocol["baseline"].startswith("real A called B")
    # sandals and sneakers are easy to tell apart, even by a classifier trained on 48 of each for 4 epochs
    assert result["domain_accuracy_real"]["value"] > 0.8
    assert all(0 <= result[k]["value"] <= 1 for k in ("a_to_b_called_b", "b_to_a_called_a"))


@needs_fashion
@pytest.mark.slow
def test_the_demos_learn_to_translate(tmp_path, train):
    """The offline presets, shortened: pix2pix fills edge drawings far better than the input itself, and
    CycleGAN's sandals are taken for sneakers (and back) by an A-vs-B classifier."""
    from genlab.eval.store import evaluate_run
    from genlab.train.runs import load_run

    cpu = torch.device("cpu")
    train(tmp_path / "p2p", "experiment=pix2pix_edges2fashion", "train.epochs=3")
    scores = {k: v["value"] for k, v in evaluate_run(load_run(tmp_path / "p2p"), ["translation"], 10, 0, cpu)
              ["metrics"].items()}
    print(scores)
    assert scores["translation_l1"] < 0.15 < scores["baseline_l1"] and scores["translation_ssim"] > 0.5
    train(tmp_path / "cycle", "experiment=cyclegan_sandal2sneaker", "data.limit=400", "train.epochs=4")
    metrics = evaluate_run(load_run(tmp_path / "cycle"), ["domain_transfer"], 10, 0, cpu)["metrics"]
    scores = {k: v["value"] for k, v in metrics.items()}
    print(scores)
    # measured 0.75 and 0.285 called the other domain (untranslated: about 0.06 and 0.005), and Frechet distances
    # to the target domain of 86 and 155 against 366 for the untranslated images (the full preset: 0.89, 0.76;
    # 27 and 45)
    untranslated = float(metrics["a_to_b_fd"]["protocol"]["baseline"].split(": ")[1])
    assert scores["a_to_b_called_b"] > 0.5 and scores["b_to_a_called_a"] > 0.15
    assert scores["a_to_b_fd"] < untranslated / 2 and scores["b_to_a_fd"] < untranslated / 2


@pytest.mark.parametrize("preset,expected", [
    ("pix2pix_maps", "Get maps.tar.gz from http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/"),
    ("cyclegan_horse2zebra", "Get horse2zebra.zip from"),
    ("cyclegan_apple2orange", "Get apple2orange.zip from"),
])
def test_the_report_presets_compose_and_say_where_their_data_is(tmp_path, compose, preset, expected):
    from genlab.app.checks import check_command_line

    cfg = compose(f"experiment={preset}")
    if preset == "pix2pix_maps":
        assert (cfg.model.name, cfg.data.size, cfg.train.batch_size, cfg.train.epochs) == ("pix2pix", 256, 2, 10)
        assert cfg.loss.name == "nonsaturating"
    else:
        assert (cfg.model.name, cfg.model.n_blocks, cfg.data.size, cfg.train.batch_size) == ("cyclegan", 6, 128, 1)
        assert cfg.loss.name == "lsgan"  # the model's paper loss, through its YAML
        assert compose(f"experiment={preset}", "loss=hinge").loss.name == "hinge"  # the command line still wins
    with pytest.raises(GenlabError, match=expected):
        check_command_line([f"experiment={preset}", f"data.root={tmp_path}"])
    assert not any(tmp_path.iterdir())


@needs_fashion
def test_cyclegan_translates_both_ways_and_tiny_images(tmp_path, train):
    from PIL import Image

    train(tmp_path / "run", *TINY_CYCLE, "train.steps=1")
    _save(np.full((3, 70), 128, np.uint8), tmp_path / "thin.png")
    for direction in ("AtoB", "BtoA"):
        out = run_cli(["translate", "run", "thin.png", f"{direction}.png", "--direction", direction], tmp_path)
        assert out.returncode == 0, out.stderr
        assert "padded 70x3 to 72x8 (replicate; the network takes multiples of 4, at least 8)" in out.stdout
        with Image.open(tmp_path / f"{direction}.png") as img:
            assert img.size == (70, 3)
    assert (tmp_path / "AtoB.png").read_bytes() != (tmp_path / "BtoA.png").read_bytes()  # G and F differ


@pytest.mark.parametrize("overrides,expected", [
    (["model=cyclegan", "data=sandal2sneaker", "data.size=16", "data.load_size=18"],
     "model.d_layers=3 down-samples a 16-pixel image below 3 x 3"),
    (["model=pix2pix", "data=paired"], "data=paired needs data.dataset=NAME"),
    (["model=pix2pix", "data=edges2fashion", "data.test_limit=0"], "data.test_limit must be a number of held-out"),
])
def test_translation_settings_that_cannot_work_are_one_line(overrides, expected):
    from genlab.app.checks import check_command_line

    if "edges2fashion" in overrides[1] and not FASHION_SYSTEM.is_dir():
        pytest.skip("needs Fashion-MNIST")
    with pytest.raises(GenlabError, match=expected):
        check_command_line(overrides)
