"""The data kinds beyond labelled images (paired, unpaired, super-resolution, vectors): their batch sources, and a
tiny model of each trained through the real trainer, interrupted and resumed exactly.

The datasets here are test-only registrations built from real data (scikit-learn's digits and two-moons points)
with the real batch sources of genlab/data/kinds.py; the families to come register their own (data=paired,
data=unpaired, data=sr_folder, data=toy2d) on the same sources.
"""

import math
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genlab.core.errors import GenlabError
from genlab.data import Data, DataSpec
from genlab.data.base import resize_uint8, to_unit_range
from genlab.data.bicubic import downscale
from genlab.data.kinds import PairedBatches, SuperResolutionBatches, UnpairedBatches, VectorBatches

CPU = torch.device("cpu")


def _digits(size: int):
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
    return resize_uint8(images, size), torch.from_numpy(digits.target)


def _moons(n: int = 640):
    from sklearn.datasets import make_moons

    x, y = make_moons(n, noise=0.05, random_state=0)
    x = torch.from_numpy(x).float()
    return (x - x.mean(0)) / x.std(0), torch.from_numpy(y)


# ---- the batch sources ------------------------------------------------------------------------------------

def test_paired_batches_crop_and_flip_a_and_b_alike_and_resume_mid_epoch():
    a, _ = _digits(20)
    a = a[:64]
    source = PairedBatches(a, 255 - a, batch_size=8, seed=3, device=CPU, crop=16, flip=True)
    batches = list(source.epoch(0))
    assert len(batches) == 8 and list(batches[0]) == ["a", "b"] and batches[0]["a"].shape == (8, 1, 16, 16)
    for batch in batches:  # b is a's negative: the same crop and flip reached both
        assert torch.allclose(batch["b"], -batch["a"], atol=1e-5)
    crops = {tuple(b["a"][0].flatten()[:40].tolist()) for b in batches}
    assert len(crops) > 1
    resumed = list(source.epoch(0, start_batch=5))  # a resume at batch 5 sees what a straight run saw
    assert all(torch.equal(x["a"], y["a"]) and torch.equal(x["b"], y["b"]) for x, y in zip(batches[5:], resumed))
    assert not torch.equal(torch.cat([b["a"] for b in source.epoch(1)]), torch.cat([b["a"] for b in batches]))
    with pytest.raises(GenlabError, match="as many A as B images"):
        PairedBatches(a, a[:10], 8, 0, CPU)
    with pytest.raises(GenlabError, match="crop 32 is larger"):
        PairedBatches(a, a, 8, 0, CPU, crop=32)


def test_unpaired_batches_draw_independent_orders_and_an_epoch_is_the_larger_domain():
    images, labels = _digits(16)
    a, b = images[labels < 5][:50], images[labels >= 5][:20]
    source = UnpairedBatches(a, b, batch_size=5, seed=0, device=CPU, flip=False)
    assert len(source) == 10 and source.n_images == 50  # the larger domain sets the epoch
    batches = list(source.epoch(0))
    seen_a = torch.cat([x["a"] for x in batches])
    seen_b = torch.cat([x["b"] for x in batches])

    def index_of(stack, pool):
        flat = to_unit_range(pool).flatten(1)
        return [int((flat - im.flatten()).abs().sum(1).argmin()) for im in stack]

    order_a, order_b = index_of(seen_a, a), index_of(seen_b, b)
    assert sorted(order_a) == list(range(50))  # every A once
    assert sorted(order_b[:20]) == sorted(order_b[20:40]) == list(range(20))  # B cycles, each item once a cycle
    assert order_b[:20] != order_b[20:40]  # with a fresh permutation each cycle
    assert order_a[:20] != order_b[:20]  # independent of A's order
    resumed = list(source.epoch(0, start_batch=7))
    assert len(resumed) == 3
    assert all(torch.equal(x["a"], y["a"]) and torch.equal(x["b"], y["b"]) for x, y in zip(batches[7:], resumed))
    parts = list(source.ordered(batch_size=16))
    assert [list(p) for p in parts] == [["a"]] * 4 + [["b"]] * 2 and sum(p.size for p in parts) == 70
    with pytest.raises(GenlabError, match="images in both domains"):
        UnpairedBatches(a, b[:0], 5, 0, CPU)


def test_superres_batches_pair_each_hr_crop_with_its_downscaled_lr():
    images, _ = _digits(32)
    hr = list(images[:40])
    source = SuperResolutionBatches(hr, batch_size=4, seed=1, device=CPU, scale=2, crop=16, flip=True)
    batches = list(source.epoch(0))
    assert batches[0]["hr"].shape == (4, 1, 16, 16) and batches[0]["lr"].shape == (4, 1, 8, 8)
    for batch in batches:
        hr_uint8 = ((batch["hr"] + 1) * 127.5).round().to(torch.uint8)
        assert torch.allclose(batch["lr"], to_unit_range(downscale(hr_uint8, 2)), atol=1e-6)
    resumed = list(source.epoch(0, start_batch=6))
    assert all(torch.equal(x["hr"], y["hr"]) for x, y in zip(batches[6:], resumed))
    again = list(source.epoch(1))
    assert not torch.equal(again[0]["hr"], batches[0]["hr"])  # new crops each epoch
    odd = SuperResolutionBatches([torch.zeros(3, 37, 50, dtype=torch.uint8)], 1, 0, CPU, scale=4, crop=16,
                                 names=["odd.png"])
    (name, whole), = list(odd.whole())
    assert name == "odd.png" and whole["hr"].shape == (1, 3, 36, 48) and whole["lr"].shape == (1, 3, 9, 12)
    with pytest.raises(GenlabError, match="odd.png is 50x37, smaller than the 48-pixel HR crop"):
        SuperResolutionBatches([torch.zeros(3, 37, 50, dtype=torch.uint8)], 1, 0, CPU, scale=4, crop=48,
                               names=["odd.png"])
    with pytest.raises(GenlabError, match="not a multiple of the scale 4"):
        SuperResolutionBatches(hr, 1, 0, CPU, scale=4, crop=18)


def test_vector_batches_hold_points_and_refuse_non_finite_ones():
    x, y = _moons(100)
    source = VectorBatches(x, batch_size=32, seed=0, device=CPU, labels=y)
    batches = list(source.epoch(0))
    assert len(batches) == 3 and list(batches[0]) == ["x", "label"] and batches[0]["x"].shape == (32, 2)
    assert torch.equal(next(iter(source.epoch(0, 2)))["x"], batches[2]["x"])
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(GenlabError, match="1 of the 100 points hold NaN"):
        VectorBatches(bad, 32, 0, CPU)


# ---- a tiny model of each kind through the real trainer -----------------------------------------------------

def _split(n):
    test = torch.arange(n) % 5 == 4
    return ~test, test


class OfflineData:
    """A test-only dataset: real data that ships with scikit-learn, always there."""

    @staticmethod
    def locate(cfg):
        return None


class PairedDigits(OfflineData):
    """A digit (A) and its negative (B), loaded at 20 px and cropped to 16 with flips, as pix2pix jitters."""
    kind = "paired"

    @staticmethod
    def build(cfg, batch_size, seed, device):
        images, _ = _digits(20)
        train, test = _split(len(images))
        make = lambda part: PairedBatches(images[part], 255 - images[part], batch_size, seed, device, 16, True)
        spec = DataSpec("test_paired", 1, 16, kind="paired", n_train=int(train.sum()), n_test=int(test.sum()),
                        shapes={"a": [1, 16, 16], "b": [1, 16, 16]})
        return Data(spec, make(train), make(test))


class UnpairedDigits(OfflineData):
    """Domain A: digits 0-4; domain B: digits 5-9, fewer of them."""
    kind = "unpaired"

    @staticmethod
    def build(cfg, batch_size, seed, device):
        images, labels = _digits(16)
        a, b = images[labels < 5][:300], images[labels >= 5][:200]
        spec = DataSpec("test_unpaired", 1, 16, kind="unpaired", n_train=300, n_test=60,
                        shapes={"a": [1, 16, 16], "b": [1, 16, 16]})
        test = UnpairedBatches(images[labels < 5][-30:], images[labels >= 5][-30:], batch_size, seed, device)
        return Data(spec, UnpairedBatches(a, b, batch_size, seed, device, flip=True), test)


class SuperResDigits(OfflineData):
    """32 px digits as HR; 16 px HR crops, LR down-scaled 2x."""
    kind = "superres"

    @staticmethod
    def build(cfg, batch_size, seed, device):
        images, _ = _digits(32)
        train, test = _split(len(images))
        make = lambda part: SuperResolutionBatches(list(images[part][:400]), batch_size, seed, device, 2, 16, True)
        spec = DataSpec("test_superres", 1, 16, kind="superres", n_train=400, n_test=int(test.sum()),
                        shapes={"lr": [1, 8, 8], "hr": [1, 16, 16]})
        return Data(spec, make(train), make(test))


class Moons(OfflineData):
    """scikit-learn's two moons, standardised."""
    kind = "vectors"

    @staticmethod
    def build(cfg, batch_size, seed, device):
        x, y = _moons()
        train, test = _split(len(x))
        spec = DataSpec("test_moons", 0, 0, kind="vectors", n_train=int(train.sum()), n_test=int(test.sum()),
                        shapes={"x": [2]})
        return Data(spec, VectorBatches(x[train], batch_size, seed, device, y[train]),
                    VectorBatches(x[test], batch_size, seed, device, y[test]))


def _net(c_in, c_out, width=8):
    return nn.Sequential(nn.Conv2d(c_in, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, c_out, 3, padding=1), nn.Tanh())


class TinyModel:
    """What each tiny model shares: built from the DataSpec, one network per optimiser, the EMA on `g`."""

    default_optim: ClassVar[dict] = {"lr": 1e-2, "betas": (0.5, 0.999)}
    default_schedule: ClassVar[dict] = {"name": "linear", "decay_epochs": 2}
    ema_networks = ("g",)

    def networks(self):
        return {"g": self.g}


def _model_classes():  # noqa: C901  (four tiny models defined in one place, as a family file would)
    from genlab.models import GenerativeModel

    class Translator(TinyModel, GenerativeModel):
        accepts = ("paired",)
        translates = ("a", "b")
        curve_groups: ClassVar[dict] = {"losses": ["l1"]}

        def translate(self, x):
            return self.g(x)

        def __init__(self, cfg, spec, loss=None):
            super().__init__()
            self.g = _net(spec.shape("a")[0], spec.shape("b")[0])

        def training_step(self, batch, step):
            l1 = F.l1_loss(self.g(batch["a"]), batch["b"])
            self.update(l1, "g")
            return {"l1": l1.detach()}

        def visuals(self, batch):
            return {"samples": torch.cat([batch["a"], self.g(batch["a"]), batch["b"]])}

    class Cycle(TinyModel, GenerativeModel):
        accepts = ("unpaired",)

        def __init__(self, cfg, spec, loss=None):
            super().__init__()
            self.g = nn.ModuleDict({"ab": _net(1, 1), "ba": _net(1, 1)})
            self.d = nn.Sequential(nn.Conv2d(1, 4, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 4, 2, 1))

        def networks(self):
            return {"g": self.g, "d": self.d}

        def training_step(self, batch, step):
            a, b = batch["a"], batch["b"]
            fake_b = self.g["ab"](a)
            with self.frozen(self.d):
                cycle = F.l1_loss(self.g["ba"](fake_b), a) + F.l1_loss(self.g["ab"](self.g["ba"](b)), b)
                g_loss = cycle + (self.d(fake_b) - 1).pow(2).mean()
                self.update(g_loss, "g")
            d_loss = (self.d(b) - 1).pow(2).mean() + self.d(fake_b.detach()).pow(2).mean()
            self.update(d_loss, "d")
            return {"cycle": cycle.detach(), "d_loss": d_loss.detach()}

        def visuals(self, batch):
            return {"samples": torch.cat([batch["a"], self.g["ab"](batch["a"])])}

    class Upscaler(TinyModel, GenerativeModel):
        accepts = ("superres",)
        translates = ("lr", "hr")

        def translate(self, x):
            return self.g(x)

        def __init__(self, cfg, spec, loss=None):
            super().__init__()
            scale = spec.shape("hr")[-1] // spec.shape("lr")[-1]
            c = spec.shape("hr")[0]
            self.g = nn.Sequential(nn.Conv2d(c, 8, 3, padding=1), nn.PReLU(), nn.Conv2d(8, c * scale**2, 3, padding=1),
                                   nn.PixelShuffle(scale))

        def training_step(self, batch, step):
            mse = F.mse_loss(self.g(batch["lr"]), batch["hr"])
            self.update(mse, "g")
            return {"mse": mse.detach()}

        def visuals(self, batch):
            return {"samples": torch.cat([F.interpolate(batch["lr"], scale_factor=2), self.g(batch["lr"]), batch["hr"]])}

        def evaluate(self, batches):
            errors = [F.mse_loss(self.g(b["lr"]), b["hr"], reduction="sum") / b["hr"][0].numel() for b in batches]
            return {"test_mse": float(sum(errors)) / len(errors)}

    class Coupling(nn.Module):
        """One affine coupling on 2-D points: x2 -> (x2 - t(x1)) exp(-s(x1)), after a learnt shift."""

        def __init__(self):
            super().__init__()
            self.shift = nn.Parameter(torch.zeros(2))
            self.net = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 2))

        def forward(self, x):
            x = x - self.shift
            s, t = self.net(x[:, :1]).chunk(2, dim=1)
            z = torch.cat([x[:, :1], (x[:, 1:] - t) * torch.exp(-s)], 1)
            return 0.5 * z.pow(2).sum(1) + s.sum(1) + math.log(2 * math.pi)  # the exact NLL in nats

    class Density(TinyModel, GenerativeModel):
        """A one-coupling flow: exact NLL, trained on the vectors kind."""
        accepts = ("vectors",)
        objective = ("test_nll", "min")

        def __init__(self, cfg, spec, loss=None):
            super().__init__()
            self.g = Coupling()

        def training_step(self, batch, step):
            nll = self.g(batch["x"]).mean()
            self.update(nll, "g")
            return {"nll": nll.detach()}

        def visuals(self, batch):
            return {}

        def evaluate(self, batches):
            return {"test_nll": float(torch.cat([self.g(b["x"]) for b in batches]).mean())}

        def score(self, batch):
            """-log p(x) in nats."""
            return self.g(batch["x"])

    return {"test_translator": Translator, "test_cycle": Cycle, "test_upscaler": Upscaler, "test_density": Density}


PAIRS = {"test_translator": "test_paired", "test_cycle": "test_unpaired", "test_upscaler": "test_superres",
         "test_density": "test_moons"}


@pytest.fixture
def kinds():
    """The tiny models and datasets above, registered for one test: a family's one registry line each."""
    import genlab.data
    import genlab.models  # noqa: F401
    from genlab.core.registry import DATASETS, MODELS

    models = _model_classes()
    datasets = {"test_paired": PairedDigits, "test_unpaired": UnpairedDigits, "test_superres": SuperResDigits,
                "test_moons": Moons}
    for name, cls in models.items():
        MODELS.register(name)(cls)
    for name, cls in datasets.items():
        DATASETS.register(name)(cls)
    yield models
    for name in models:
        MODELS._items.pop(name)
    for name in datasets:
        DATASETS._items.pop(name)


@pytest.mark.parametrize("model", list(PAIRS))
def test_a_tiny_model_of_each_kind_resumes_exactly_with_a_decay_and_ema(tmp_path, train, kinds, interrupt_at,
                                                                       model):
    from genlab.core.errors import Interrupted

    settings = [f"model.name={model}", f"data.name={PAIRS[model]}", "train.batch_size=32", "train.epochs=4",
                "train.log_every=1", "train.sample_every=100", "train.ema=0.9", "optim.schedule=linear",
                "optim.schedule.decay_epochs=2"]
    train(tmp_path / "straight", *settings)
    straight = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    per_epoch = straight["batches_per_epoch"]
    at = 2 * per_epoch + per_epoch // 2  # inside the third epoch, where the rate is decaying
    with interrupt_at(kinds[model], at), pytest.raises(Interrupted):
        train(tmp_path / "first", *settings)
    first = torch.load(tmp_path / "first" / "checkpoints" / "last.pt", weights_only=True)
    assert (first["step"], first["epoch"], first["batch"]) == (at + 1, 2, per_epoch // 2 + 1)
    train(tmp_path / "resumed", *settings, f"train.resume={tmp_path / 'first'}")
    resumed = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)

    assert straight["step"] == resumed["step"] == 4 * per_epoch
    assert set(straight["model"]) == set(resumed["model"])
    assert all(torch.equal(straight["model"][k], resumed["model"][k]) for k in straight["model"]), model
    shadow, shadow_resumed = straight["ema"]["shadow"]["g"], resumed["ema"]["shadow"]["g"]
    assert all(torch.equal(shadow[k], shadow_resumed[k]) for k in shadow)
    assert any(not torch.equal(shadow[k], straight["model"]["g." + k]) for k in shadow if shadow[k].is_floating_point())
    for name, opt in straight["optimizers"].items():
        rate = opt["param_groups"][0]["lr"]
        assert rate == resumed["optimizers"][name]["param_groups"][0]["lr"]
        assert rate == pytest.approx(1e-2 / (2 * per_epoch))  # the last step of a linear decay to zero
    import json

    logged = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "lr/g" in r] == list(range(1, 4 * per_epoch + 1))


def test_a_model_refuses_data_of_another_kind_in_one_line(kinds):
    from genlab.app.checks import check_command_line

    with pytest.raises(GenlabError, match="model=test_translator trains on paired data, and data=test_moons gives "
                                          "vectors"):
        check_command_line(["model.name=test_translator", "data.name=test_moons", "train.epochs=1"])


# ---- evaluation sources: input -> output pairs, whole images, family metrics ---------------------------------

def test_eval_scores_translations_against_targets_and_a_family_registers_its_metric(tmp_path, train, kinds,
                                                                                    monkeypatch):
    from genlab.core.metrics import metric
    from genlab.core.registry import METRICS
    from genlab.eval.store import evaluate_run
    from genlab.train.runs import load_run

    tiny = ["train.batch_size=32", "train.steps=3", "train.sample_every=100"]
    train(tmp_path / "paired", "model.name=test_translator", "data.name=test_paired", *tiny)
    train(tmp_path / "sr", "model.name=test_upscaler", "data.name=test_superres", *tiny)

    @metric("test_mean_output", kinds=("paired",))
    def mean_output(ctx):
        """The mean output pixel (a family's own metric, registered in its own file)."""
        values = [out.mean() for _, out, _ in ctx.pairs(limit=20)]
        return {"mean_output": {"value": float(sum(values) / len(values)), "protocol": {"n_images": 20}}}

    try:
        paired = evaluate_run(load_run(tmp_path / "paired"), None, n=20, seed=0, device=CPU)
    finally:
        METRICS._items.pop("test_mean_output")
    scores = paired["metrics"]
    assert {"translation_l1", "translation_psnr", "baseline_l1", "baseline_psnr", "mean_output"} <= set(scores)
    assert "fd_domain" not in scores and "fd_domain" not in paired["skipped"]  # an images metric: left out
    protocol = scores["translation_l1"]["protocol"]
    assert protocol["n_images"] == 359 and protocol["images"] == "the held-out crops"
    assert protocol["baseline"] == "the input itself" and protocol["sizes"] == [(16, 16)]
    # B is A's negative, so the input as output is off by |2a - 1| on average: the baseline must say so
    assert 0.3 < scores["baseline_l1"]["value"] < 1 and scores["translation_psnr"]["value"] > 0

    # a translator that returns its input scores exactly the baseline
    run = load_run(tmp_path / "paired")
    monkeypatch.setattr(type(run.model), "translate", lambda self, x: x)
    same = evaluate_run(run, ["translation"], n=20, seed=0, device=CPU)["metrics"]
    assert same["translation_l1"]["value"] == pytest.approx(same["baseline_l1"]["value"], abs=1e-7)
    assert same["translation_psnr"]["value"] == pytest.approx(same["baseline_psnr"]["value"], abs=1e-5)

    sr = evaluate_run(load_run(tmp_path / "sr"), None, n=20, seed=0, device=CPU)["metrics"]
    protocol = sr["translation_psnr"]["protocol"]
    assert protocol["images"] == "whole, one at a time" and protocol["sizes"] == [(32, 32)]
    assert protocol["baseline"] == "the input, bicubic-resized to the target's size" and protocol["n_images"] == 359
    assert sr["baseline_psnr"]["value"] > 15  # bicubic 2x on 32 px digits is close, not noise
    assert "mse" in sr  # the model's own held-out score, through the likelihood metric
    from genlab.core.errors import GenlabError

    with pytest.raises(GenlabError, match="fd_domain does not apply to this run: it scores images data"):
        evaluate_run(load_run(tmp_path / "sr"), ["fd_domain"], n=20, seed=0, device=CPU)
    with pytest.raises(GenlabError, match="does not draw images from noise; it translates images: use `genlab translate"):
        load_run(tmp_path / "sr").model.sample(4)


def test_psnr_of_a_known_error():
    from genlab.core.imaging import psnr

    target = torch.zeros(2, 3, 8, 8)
    # an error of 0.1 on [0, 1] pixels is 0.2 on [-1, 1] ones: 10 log10(1 / 0.01) = 20 dB
    assert psnr(target + 0.2, target).tolist() == pytest.approx([20.0, 20.0], abs=1e-4)
    assert psnr(target, target).tolist() == [100.0, 100.0]  # exact: capped, never infinite


def test_an_ood_set_of_another_kind_and_an_epoch_of_no_batches_are_one_line(tmp_path, train, kinds):
    from genlab.eval.store import evaluate_run
    from genlab.train.runs import load_run

    train(tmp_path / "flow", "model.name=test_density", "data.name=test_moons", "train.batch_size=64", "train.steps=2")
    run = load_run(tmp_path / "flow")
    with pytest.raises(GenlabError, match=r"--ood-data digits gives images shaped \{'image': \[1, 32, 32\]\}, the run "
                                          r"trained on vectors shaped \{'x': \[2\]\}"):
        evaluate_run(run, ["ood"], n=10, seed=0, device=CPU, ood_data="digits")
    with pytest.raises(GenlabError, match="--ood-data takes a data option and data.KEY=VALUE settings"):
        evaluate_run(run, ["ood"], n=10, seed=0, device=CPU, ood_data="digits train.epochs=3")
    with pytest.raises(GenlabError, match="test_moons has 512 training images, fewer than train.batch_size=1000"):
        train(tmp_path / "empty", "model.name=test_density", "data.name=test_moons", "train.batch_size=1000")
    assert not (tmp_path / "empty").exists()


def test_evaluation_can_be_imported_by_a_model_file():
    """A family registers its metrics in its model file, which genlab.models imports: genlab.core.metrics must not
    import genlab.models (or runs) when it loads, or that import is circular."""
    import subprocess
    import sys

    code = "import sys, genlab.core.metrics; assert 'genlab.models' not in sys.modules and 'genlab.train.runs' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


# ---- capabilities: a model declared in a test file, used by the commands -------------------------------------

def test_a_model_from_a_test_file_declares_a_capability_the_commands_use(tmp_path, train, kinds):
    """A new model registered here alone (no genlab file changed) that declares Samples: `genlab sample` draws
    from it, `genlab translate` refuses it in one line, `genlab list models` shows what it can do."""
    from genlab.core.registry import MODELS
    from genlab.models import GenerativeModel
    from genlab.models.capabilities import Samples, Translates, capabilities, refusal
    from tests.hostile import run_here

    class PointSampler(TinyModel, GenerativeModel, Samples):
        """Gaussian points with a learnt mean and scale: draws samples, nothing else."""
        accepts = ("vectors",)

        def __init__(self, cfg, spec, loss=None):
            super().__init__()
            self.g = nn.Linear(2, 2)

        def training_step(self, batch, step):
            loss = (self.g.bias - batch["x"].mean(0)).pow(2).sum() + self.g.weight.pow(2).sum() * 0
            self.update(loss, "g")
            return {"loss": loss.detach()}

        def visuals(self, batch):
            return {}

        def sample(self, n, *, generator=None, labels=None):
            return self.g(torch.randn(n, 2, generator=generator).to(self.device))

    MODELS.register("test_sampler")(PointSampler)
    try:
        assert capabilities(PointSampler) == [Samples] and not isinstance(PointSampler.__new__(PointSampler),
                                                                            Translates)
        train(tmp_path / "run", "model.name=test_sampler", "data.name=test_moons", "train.batch_size=50",
              "train.epochs=1")
        drawn = run_here(["sample", str(tmp_path / "run"), "-n", "7"], tmp_path)
        assert drawn.returncode == 0, drawn.stderr
        points = (tmp_path / "run" / "generated" / "samples_n7_seed0.csv").read_text().splitlines()
        assert points[0] == "x1,x2" and len(points) == 8
        refused = run_here(["translate", str(tmp_path / "run"), str(tmp_path / "in.png"), str(tmp_path / "out.png")],
                           tmp_path)
        lines = refused.stderr.strip().splitlines()
        assert refused.returncode == 2 and len(lines) == 1 and "does not translate images" in lines[0], lines
        assert refused.escaped is None and not (tmp_path / "out.png").exists()
        listed = run_here(["list", "models"], tmp_path)
        row = next(line for line in listed.stdout.splitlines() if "test_sampler" in line)
        assert "draw samples" in row and "translate" not in row  # (rich may wrap the commands column)
        assert refusal(PointSampler, Translates, "test_sampler") == \
            "model test_sampler does not translate images; it can draw samples (`genlab sample`)"
    finally:
        MODELS._items.pop("test_sampler")
