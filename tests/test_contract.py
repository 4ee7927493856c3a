"""The contract every family builds on: learning-rate schedules, the generator EMA, real network modules."""

import json

import pytest
import torch

from genlab.train.schedules import build_schedule

TINY = ["data.limit=128", "train.batch_size=32", "train.log_every=1", "train.epochs=4", "train.sample_every=100"]
GAN = [*TINY, "model.ngf=8", "model.ndf=8"]


def test_schedules_are_pure_functions_of_the_step():
    spe, total = 10, 200  # 20 epochs of 10 steps
    linear = build_schedule({"name": "linear", "decay_epochs": 10})  # pix2pix: constant, then linear to 0
    assert [linear.factor(s, total, spe) for s in (0, 99)] == [1.0, 1.0]
    assert linear.factor(100, total, spe) == 1.0 and linear.factor(150, total, spe) == pytest.approx(0.5)
    assert linear.factor(199, total, spe) == pytest.approx(0.01)
    step = build_schedule({"name": "step", "milestones": [5], "gamma": 0.1})  # SRGAN: 1e-4 then 1e-5
    assert [step.factor(s, total, spe) for s in (0, 49, 50, 199)] == [1.0, 1.0, pytest.approx(0.1), pytest.approx(0.1)]
    cosine = build_schedule({"name": "cosine", "min_ratio": 0.1})
    assert cosine.factor(0, total, spe) == 1.0 and cosine.factor(100, total, spe) == pytest.approx(0.55)
    warm = build_schedule({"warmup": 4})
    assert [warm.factor(s, total, spe) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    # a model's paper default applies where optim.schedule.* is null, and a setting overrides it
    assert build_schedule({"name": None}, {"name": "linear", "decay_epochs": 100}).name == "linear"
    assert build_schedule({"name": "cosine"}, {"name": "linear"}).name == "cosine"


def test_the_trainer_writes_and_logs_the_scheduled_rate(tmp_path, train):
    train(tmp_path, *GAN, "optim.schedule=step", "optim.schedule.milestones=[2]", "optim.schedule.gamma=0.5")
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    rates = {r["step"]: (r["lr/g"], r["lr/d"]) for r in records if "lr/g" in r}
    assert rates[8] == (pytest.approx(2e-4), pytest.approx(2e-4)) and rates[9] == (pytest.approx(1e-4),) * 2
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert state["optimizers"]["g"]["param_groups"][0]["lr"] == pytest.approx(1e-4)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    assert [round(e.value, 6) for e in events.Scalars("lr/g")][7:9] == [2e-4, 1e-4]


@pytest.mark.parametrize("model", ["dcgan", "vae"])
def test_an_interrupted_run_with_a_schedule_and_ema_resumes_exactly(tmp_path, train, interrupt_at, model):
    from genlab.core.errors import Interrupted
    from genlab.models.gan import DCGAN
    from genlab.models.vae import VAE

    settings = [*(GAN if model == "dcgan" else TINY), f"model={model}", "train.ema=0.9", "optim.schedule=linear",
                "optim.schedule.decay_epochs=2"]
    train(tmp_path / "straight", *settings)
    with interrupt_at(DCGAN if model == "dcgan" else VAE, 9), pytest.raises(Interrupted):  # mid-epoch, in the decay
        train(tmp_path / "first", *settings)
    first = torch.load(tmp_path / "first" / "checkpoints" / "last.pt", weights_only=True)
    assert (first["step"], first["epoch"], first["batch"]) == (10, 2, 2)
    train(tmp_path / "resumed", *settings, f"train.resume={tmp_path / 'first'}")
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 16
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    for name in a["ema"]["shadow"]:
        shadow_a, shadow_b = a["ema"]["shadow"][name], b["ema"]["shadow"][name]
        assert set(shadow_a) == set(shadow_b) and all(torch.equal(shadow_a[k], shadow_b[k]) for k in shadow_a)
    assert a["ema"]["updates"] == b["ema"]["updates"] == 16
    for name in a["optimizers"]:
        assert a["optimizers"][name]["param_groups"][0]["lr"] == b["optimizers"][name]["param_groups"][0]["lr"]
    # and the EMA really is an average: not the trained weights
    prefix, shadow = ("generator.", a["ema"]["shadow"]["g"]) if model == "dcgan" else ("", a["ema"]["shadow"]["vae"])
    assert any(not torch.equal(a["model"][prefix + k], v) for k, v in shadow.items() if v.is_floating_point())


def test_sample_and_eval_use_the_ema_weights(tmp_path, train):
    from genlab.train.runs import load_run

    train(tmp_path / "run", *GAN, "train.ema=0.9")
    run = load_run(tmp_path / "run")
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert run.ema and "EMA weights" in run.name
    live = run.model.networks()["g"].state_dict()
    assert all(torch.equal(live[k], s) for k, s in state["ema"]["shadow"]["g"].items())
    assert not all(torch.equal(run.model.state_dict()[k], state["model"][k]) for k in state["model"])


def test_networks_are_real_modules_made_once(compose):
    from genlab.data import DataSpec
    from genlab.models import build_model

    spec = DataSpec("digits", 1, 16, 10, class_names=[str(i) for i in range(10)])
    for name in ("dcgan", "cgan", "acgan", "infogan", "vae", "cvae", "vqvae"):
        model = build_model(compose(f"model={name}", "data.size=16"), spec)
        first, second = model.networks(), model.networks()
        assert all(first[k] is second[k] for k in first), name  # EMA and compile use these objects
        owned = {id(p) for p in model.parameters()}
        assert all(id(p) in owned for net in first.values() for p in net.parameters()), name
        assert set(model.ema_networks) <= set(first), name


@pytest.mark.parametrize("overrides,expected", [
    (["model=vqvae", "train.ema=0.999"], "names no network to average"),
    (["train.ema=1.5"], "train.ema must be a decay in (0, 1)"),
    (["optim.schedule=bogus"], "optim.schedule.name must be one of constant, linear, step, cosine"),
    (["optim.schedule=step"], "needs optim.schedule.milestones"),
])
def test_bad_schedule_and_ema_settings_are_one_line(overrides, expected):
    from genlab.app.checks import check_command_line
    from genlab.core.errors import GenlabError

    with pytest.raises(GenlabError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        check_command_line(["train.epochs=1", *overrides])


def test_batches_are_named_and_a_model_refuses_data_of_another_kind(monkeypatch):
    import genlab.data
    import genlab.models  # noqa: F401
    from genlab.app.checks import check_command_line
    from genlab.app.compose import compose
    from genlab.core.errors import GenlabError
    from genlab.core.registry import DATASETS
    from genlab.data import Batch, build_data

    data = build_data(compose(["data.size=16", "data.limit=64"]).data, batch_size=16, seed=0,
                      device=torch.device("cpu"))
    batch = next(data.train.epoch(0))
    assert isinstance(batch, Batch) and list(batch) == ["image", "label"] and batch.size == 16
    assert isinstance(data.fixed_batch(8), Batch) and all(isinstance(b, Batch) for b in data.evaluation.ordered())

    monkeypatch.setattr(DATASETS["digits"], "kind", "vectors")  # as a 2-D density set will be
    with pytest.raises(GenlabError, match="model=dcgan trains on images data, and data=digits gives vectors"):
        check_command_line(["train.epochs=1"])


@pytest.fixture
def student():
    """A test-only model of a family to come: a GAN that starts its generator from a DCGAN run (as SRGAN starts
    from SRResNet) and adds a loss computed by a fixed feature network (as SRGAN's VGG). Registered for the
    test only."""
    from torch import nn

    import genlab.data
    import genlab.models  # noqa: F401
    from genlab.core.registry import MODELS
    from genlab.models.gan import DCGAN


    class Student(DCGAN):
        def init_weights(self, source_model, state):
            if source_model != "dcgan":
                return None
            generator = {k[len("generator."):]: v for k, v in state.items() if k.startswith("generator.")}
            self.generator.load_state_dict(generator)
            return f"the generator ({len(generator)} tensors); the discriminator starts fresh"

        def training_step(self, batch, step):
            features = self.loss_network("features", lambda: nn.Conv2d(1, 4, 3, padding=1))
            out = super().training_step(batch, step)
            out["feature_mean"] = features(batch["image"]).abs().mean().detach()
            return out

    MODELS.register("test_student")(Student)
    yield Student
    MODELS._items.pop("test_student")


def test_init_from_takes_another_models_weights_through_its_hook(tmp_path, train, student):
    train(tmp_path / "teacher", *GAN, "train.epochs=1")
    teacher = torch.load(tmp_path / "teacher" / "checkpoints" / "last.pt", weights_only=True)
    # a tiny rate: after one step the weights are still the ones the run started from
    train(tmp_path / "student", *GAN, "model.name=test_student", "train.steps=1", "optim.lr=1e-12",
          f"train.init_from={tmp_path / 'teacher'}")
    student = torch.load(tmp_path / "student" / "checkpoints" / "last.pt", weights_only=True)
    assert student["step"] == 1 and "ema" not in student
    for key, value in teacher["model"].items():
        same = torch.allclose(value.float(), student["model"][key].float(), atol=1e-6)
        assert same == key.startswith("generator.") or "num_batches_tracked" in key or "running" in key, key
    record = (tmp_path / "student" / "init_from.txt").read_text()
    assert str((tmp_path / "teacher" / "checkpoints" / "last.pt").resolve()) in record and "the generator" in record
    assert student["optimizers"]["g"]["state"][0]["step"] == 1  # a fresh optimiser: one step, not the teacher's
    assert not (tmp_path / "student" / "resumed_from.txt").exists()


def test_a_run_with_a_loss_network_loads_and_samples_without_it(tmp_path, train, student):
    from genlab.train.runs import generate, load_run

    last = train(tmp_path, *GAN, "model.name=test_student", "train.steps=2")
    assert last["feature_mean"] > 0  # the loss network ran
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    from genlab.app.compose import compose
    from genlab.data import DataSpec
    from genlab.models import build_model

    plain = build_model(compose([*GAN, "model=dcgan"]), DataSpec(**state["spec"]))
    assert set(state["model"]) == set(plain.state_dict())  # a plain DCGAN's tensors: none of the loss network
    run = load_run(tmp_path)
    images = torch.cat([part for part, _ in generate(run.model, 4, 0, None)])
    assert images.shape == (4, 1, 32, 32) and "_loss_networks" not in run.model.__dict__


def test_init_from_refuses_a_model_without_a_mapping_and_a_resume_beside_it(tmp_path, train):
    from genlab.app.checks import check_command_line
    from genlab.core.errors import GenlabError

    train(tmp_path / "vae", *TINY, "model=vae", "train.epochs=1")
    with pytest.raises(GenlabError, match="a dcgan run cannot start from a vae run"):
        train(tmp_path / "gan", *GAN, f"train.init_from={tmp_path / 'vae'}")
    with pytest.raises(GenlabError, match="pass one of them"):
        check_command_line([f"train.init_from={tmp_path / 'vae'}", f"train.resume={tmp_path / 'vae'}"])
    with pytest.raises(GenlabError, match="no run folder or checkpoint"):
        check_command_line(["train.init_from=/no/such/run"])


def test_the_sweep_objective_is_a_named_scalar_with_a_direction(compose, caplog, tmp_path, monkeypatch):
    import logging

    import genlab.app.objective
    from genlab.app.objective import spec, value
    from genlab.core.errors import GenlabError

    final = {"d_loss": 0.7, "g_loss": 2.0, "test_nelbo": 410.5, "loss": 400.0}
    with caplog.at_level(logging.INFO, logger="genlab"):
        assert value(compose("model=vae"), tmp_path, final) == 410.5  # the VAE's own: test_nelbo, lower is better
        assert "test_nelbo = 410.5 (lower is better)" in caplog.text
        assert value(compose("train.objective=g_loss"), tmp_path, final) == 2.0
        assert value(compose(), tmp_path, final) is None  # a GAN's training scalars rank nothing: it states none
        assert value(compose("train.objective=nothing_logged"), tmp_path, final) is None
        assert "logged no nothing_logged" in caplog.text
        # under a sweeper that optimises, a missing number is one line, not a failed trial and its traceback
        monkeypatch.setattr(genlab.app.objective, "_optimising", lambda: True)
        assert value(compose(), tmp_path, final) is None and "dcgan states none" in caplog.text
        with pytest.raises(GenlabError, match="train.objective=nothing_logged: this run logged no nothing_logged"):
            value(compose("train.objective=nothing_logged"), tmp_path, final)
    # the direction: the model's, the metric's, min for another scalar, or train.objective_direction
    assert spec(compose("model=vae")) == ("test_nelbo", "min")
    assert spec(compose("model=srresnet", "data=sr_photos")) == ("test_psnr_y", "max")
    assert spec(compose("train.objective=fd_domain")) == ("fd_domain", "min")
    assert spec(compose("train.objective=is")) == ("is", "max")
    assert spec(compose("train.objective=g_loss")) == ("g_loss", "min")
    assert spec(compose("train.objective=d_real", "train.objective_direction=max")) == ("d_real", "max")


def test_only_the_run_writer_writes_and_it_is_silent_on_other_ranks(tmp_path, train, monkeypatch):
    """Everything a run leaves in its folder goes through RunWriter: with the writer of a rank > 0 silent, a
    whole run, resume and init_from included, writes nothing at all. (tests/test_scale.py runs real ranks.)"""
    from genlab.train import runwriter

    train(tmp_path / "first", *GAN, "train.epochs=1", "train.ema=0.9")
    with monkeypatch.context() as patch:
        patch.setattr(runwriter, "is_main_process", lambda: False)
        last = train(tmp_path / "other_rank", *GAN, "train.epochs=2", "train.ema=0.9", "train.keep_every=1",
                     f"train.resume={tmp_path / 'first'}")
        assert "g_loss" in last and not (tmp_path / "other_rank").exists()
        train(tmp_path / "init", *GAN, "train.steps=2", f"train.init_from={tmp_path / 'first'}")
        assert not (tmp_path / "init").exists()
    for rank, world, main in (("1", "2", False), ("0", "2", True), ("1", None, True), ("1", "x", True)):
        monkeypatch.setenv("RANK", rank)
        if world is None:
            monkeypatch.delenv("WORLD_SIZE", raising=False)
        else:
            monkeypatch.setenv("WORLD_SIZE", world)
        assert runwriter.is_main_process() is main, (rank, world)
    monkeypatch.delenv("WORLD_SIZE")  # a stray RANK alone is not a torchrun job: the run writes
    train(tmp_path / "stray", *GAN, "train.steps=1")
    assert (tmp_path / "stray" / "checkpoints" / "last.pt").is_file()
    monkeypatch.delenv("RANK")
    train(tmp_path / "rank0", *GAN, "train.steps=2", f"train.init_from={tmp_path / 'first'}")
    assert {p.name for p in (tmp_path / "rank0").iterdir()} == {"checkpoints", "samples", "tb", "metrics.jsonl",
                                                                "curves.png", "init_from.txt"}


def test_only_adversarial_models_compose_a_loss():
    """The loss group belongs to the models that train against a discriminator: `genlab config show model=vae`
    shows no GAN loss, loss=NAME there is one line (a sweep's too), and a GAN keeps its paper's loss."""
    import genlab.models  # noqa: F401  (fills MODELS)
    from genlab.app.checks import check_command_line
    from genlab.app.compose import compose
    from genlab.core.errors import GenlabError
    from genlab.core.registry import MODELS

    assert "loss" not in compose(["model=vae"]) and "loss" not in compose(["model=maf", "data=toy2d"])
    assert compose(["model=cyclegan", "data=sandal2sneaker"]).loss.name == "lsgan"
    wgan = compose(["model=dcgan", "loss=wgan"])
    assert wgan.loss.name == "wgan" and wgan.optim.name == "rmsprop"  # a loss still switches its optimiser
    for line in (["model=vae", "loss=hinge"], ["-m", "model=srresnet", "data=sr_photos", "loss=hinge,wgan"]):
        with pytest.raises(GenlabError, match=r"loss=hinge(,wgan)?: model=(vae|srresnet) trains no adversarial loss, "
                                              r"so its config has no loss group; drop loss="):
            check_command_line(line)
    adversarial = {name for name in MODELS.in_order() if MODELS[name].adversarial}
    assert adversarial == {"dcgan", "cgan", "acgan", "infogan", "pix2pix", "cyclegan", "srgan"}
    for name in MODELS.in_order():  # each model's YAML composes a loss exactly when its class trains with one
        data = {"pix2pix": "edges2fashion", "cyclegan": "sandal2sneaker", "srresnet": "sr_photos",
                "srgan": "sr_photos"}.get(name, "digits")
        assert ("loss" in compose([f"model={name}", f"data={data}"])) == (name in adversarial), name


@pytest.fixture
def tempered():
    """A test-only model whose sampler has a setting chosen at sample time (as a diffusion model's steps): a DCGAN
    whose noise is scaled by --temperature. Registered for the test only."""
    import genlab.models  # noqa: F401
    from genlab.core.errors import GenlabError
    from genlab.core.registry import MODELS
    from genlab.models.capabilities import SamplerOption
    from genlab.models.gan import DCGAN

    class Tempered(DCGAN):
        sampler_options = (SamplerOption("temperature", float, "the noise's scale"),)
        temperature = 1.0

        def use_sampler(self, temperature=None):
            if temperature is not None and temperature <= 0:
                raise GenlabError(f"--temperature must be > 0, got {temperature}")
            self.temperature = temperature if temperature is not None else 1.0

        def sampler(self):
            return {"name": "tempered", "temperature": self.temperature}

        @torch.no_grad()
        def sample(self, n, *, generator=None, labels=None):
            with self.evaluating():
                z = torch.randn(n, self.nz, generator=generator) * self.temperature
                return self.generator(z.to(self.device)).float()

    MODELS.register("test_tempered")(Tempered)
    yield Tempered
    MODELS._items.pop("test_tempered")


def test_a_samplers_settings_are_chosen_at_sample_and_eval_time(tmp_path, train, tempered):
    from genlab.eval.context import Context
    from genlab.train.runs import load_run
    from tests.hostile import run_here

    train(tmp_path / "run", *GAN, "model.name=test_tempered", "train.steps=2")
    done = run_here(["sample", tmp_path / "run", "-n", "4", "--temperature", "0.5"], tmp_path)
    assert done.returncode == 0, done.stderr
    cooled = tmp_path / "run" / "generated" / "samples_n4_seed0_temperature0.5.png"
    assert cooled.exists()
    done = run_here(["sample", tmp_path / "run", "-n", "4", "--temperature=2"], tmp_path)
    assert done.returncode == 0 and (tmp_path / "run" / "generated" / "samples_n4_seed0_temperature2.png").exists()
    assert cooled.read_bytes() != (tmp_path / "run" / "generated" / "samples_n4_seed0_temperature2.png").read_bytes()
    run = load_run(tmp_path / "run")
    run.model.use_sampler(temperature=0.25)
    protocol = Context(run, 10, 0, torch.device("cpu")).protocol(real_split="test")
    assert protocol["sampler"] == {"name": "tempered", "temperature": 0.25} and protocol["real_split"] == "test"


@pytest.mark.parametrize("words, expected", [
    (["--temperature", "0"], "--temperature must be > 0, got 0.0"),
    (["--temperature", "-1"], "--temperature must be > 0, got -1.0"),
    (["--temperature", "warm"], "--temperature takes a number, got 'warm'"),
    (["--temperature"], "--temperature needs a value: a number"),
    (["--temperature", "1", "--temperature", "2"], "--temperature is given twice"),
    (["--temprature", "1"], "no such option: --temprature (Possible options: --temperature)"),
    (["--seeed", "1"], "no such option: --seeed (Possible options: --seed)"),
    (["extra"], "unexpected argument 'extra': genlab sample takes one RUN and options"),
])
def test_a_bad_sampler_setting_is_one_line_before_any_sampling(tmp_path, train, tempered, words, expected):
    from tests.hostile import run_here

    train(tmp_path / "run", *GAN, "model.name=test_tempered", "train.steps=1")
    done = run_here(["sample", tmp_path / "run", "-n", "4", *words], tmp_path)
    assert done.returncode == 2 and expected in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "run" / "generated").exists()


def test_a_sampler_setting_on_a_model_without_one_is_one_line(tmp_path, train, tempered):
    from tests.hostile import run_here

    train(tmp_path / "run", *GAN, "train.steps=1")
    for command in ("sample", "eval"):
        done = run_here([command, tmp_path / "run", "--temperature", "0.5"], tmp_path)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().endswith("no such option --temperature: a dcgan run's sampler has no settings "
                                         "(--temperature is a setting of the test_tempered sampler)"), done.stderr
    assert not (tmp_path / "run" / "generated").exists() and not (tmp_path / "run" / "metrics.json").exists()


def test_a_model_without_sampler_methods_passes_through_the_settings_check():
    """A model that only defines sample() (a Samples by its own method) or none (a translator: `genlab eval` reaches
    the check for every run) has no use_sampler/sampler: no words is no settings, and the protocol names no sampler."""
    from types import SimpleNamespace

    from genlab.app.commands.common import use_sampler_settings
    from genlab.core.errors import GenlabError
    from genlab.eval.context import Context

    class OnlySample(torch.nn.Module):
        def sample(self, n, *, generator=None, labels=None):
            return torch.zeros(n, 1, 8, 8)

    for model in (OnlySample(), torch.nn.Identity()):
        target = SimpleNamespace(model=model, cfg=SimpleNamespace(model=SimpleNamespace(name="mine")))
        ctx = SimpleNamespace(args=[], command=SimpleNamespace(params=[]))
        assert use_sampler_settings(ctx, target, "eval") == {}
        with pytest.raises(GenlabError, match="no such option --steps: a mine run's sampler has no settings"):
            use_sampler_settings(SimpleNamespace(args=["--steps", "5"], command=ctx.command), target, "eval")
    run = SimpleNamespace(model=OnlySample(), spec=SimpleNamespace(size=8, channels=1))
    assert "sampler" not in Context(run, 10, 0, torch.device("cpu")).protocol()
