"""The diffusion family: the maths against closed forms, the samplers against their limits and an oracle, the
paper's network size, training, resume, the sampler settings of `genlab sample`/`genlab eval`, and bad input."""

import json
import math

import pytest
import torch

from genlab.models.diffusion import Diffusion, betas_for
from tests.hostile import run_here

# a tiny U-Net on 16 px digits with T = 20: a few seconds a run
TINY = ["model=ddpm", "data.size=16", "data.limit=128", "train.batch_size=32", "train.log_every=1", "train.epochs=2",
        "train.sample_every=100", "model.channels=8", "model.channel_mult=[1,2]", "model.res_blocks=1",
        "model.attention=[8]", "model.norm_groups=4", "model.timesteps=20", "model.schedule=cosine", "model.dropout=0.0", "model.sampler=ddim",
        "model.sample_steps=5"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One trained tiny run shared by the tests that only read it (they copy it before writing into it)."""
    from genlab.app.compose import compose
    from genlab.app.entry import run_training

    folder = tmp_path_factory.mktemp("ddpm") / "run"
    run_training(compose(["train.progress=none", *TINY, "train.ema=0.9"]), folder)
    return folder


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    from genlab.app.compose import compose
    from genlab.app.entry import run_training

    folder = tmp_path_factory.mktemp("ddpm_conditional") / "run"
    run_training(compose(["train.progress=none", *TINY, "model.conditional=true", "model.p_uncond=0.2",
                          "train.epochs=1", "train.sample_every=1"]), folder)
    return folder


def schedules():
    return [Diffusion(betas_for("linear", 1000)), Diffusion(betas_for("cosine", 1000))]


# ---- the network ----------------------------------------------------------------------------------------
def test_the_cifar10_preset_builds_the_papers_35_7m_parameter_unet(compose):
    from genlab.data import DataSpec
    from genlab.models import build_model

    cfg = compose("experiment=ddpm_cifar10")
    model = build_model(cfg, DataSpec(name="cifar10", size=32, channels=3, n_classes=10))
    count = sum(p.numel() for p in model.unet.parameters())
    assert count == 35_746_307  # Ho et al.'s CIFAR-10 net, as their code builds it
    assert abs(count - 35.7e6) / 35.7e6 < 0.01
    assert (cfg.model.channels, list(cfg.model.channel_mult), cfg.model.res_blocks, list(cfg.model.attention),
            cfg.model.dropout, cfg.train.ema, cfg.train.batch_size) == (128, [1, 2, 2, 2], 2, [16], 0.1, 0.9999, 128)


# ---- the forward process and its posterior ---------------------------------------------------------------
@pytest.mark.parametrize("diffusion", schedules(), ids=["linear", "cosine"])
def test_the_forward_process_has_the_closed_form_mean_and_variance(diffusion):
    generator = torch.Generator().manual_seed(0)
    x0 = torch.tensor([-0.9, -0.2, 0.4, 1.0], dtype=torch.float64)
    draws = 200_000
    for i in (0, 99, 499, 999):
        t = torch.full((draws,), i)
        xt = diffusion.q_sample(x0.expand(draws, 4), t, torch.randn(draws, 4, generator=generator, dtype=torch.float64))
        ab = float(diffusion.alpha_bar[i])
        # mean sqrt(alpha_bar) x0, variance 1 - alpha_bar: within 5 standard errors of 200k draws
        se = math.sqrt((1 - ab) / draws)
        assert torch.allclose(xt.mean(0), math.sqrt(ab) * x0, atol=5 * se)
        assert torch.allclose(xt.var(0), torch.full((4,), 1 - ab, dtype=torch.float64), rtol=0.02)
    assert float(diffusion.alpha_bar[-1]) < 1e-4  # x_T is (nearly) pure noise


@pytest.mark.parametrize("diffusion", schedules(), ids=["linear", "cosine"])
def test_the_posterior_matches_the_closed_form(diffusion):
    """Draw x_{t-1} ~ q(x_{t-1} | x_0) and x_t ~ q(x_t | x_{t-1}): for a fixed x_0 the pair is Gaussian, so
    E[x_{t-1} | x_t, x_0] is the regression line of x_{t-1} on x_t and the posterior variance its residual
    variance. Both must be the closed form's coefficients."""
    generator = torch.Generator().manual_seed(1)
    x0, draws = 0.6, 400_000
    for i in (1, 50, 400, 900):
        ab_prev, beta = float(diffusion.alpha_bar_prev[i]), float(diffusion.betas[i])
        prev = math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev) * torch.randn(draws, generator=generator,
                                                                               dtype=torch.float64)
        xt = math.sqrt(1 - beta) * prev + math.sqrt(beta) * torch.randn(draws, generator=generator, dtype=torch.float64)
        slope = float(((xt - xt.mean()) * (prev - prev.mean())).mean() / xt.var())
        intercept = float(prev.mean() - slope * xt.mean())
        residual = float((prev - intercept - slope * xt).var())
        mean, log_var = diffusion.posterior(torch.full((1,), x0, dtype=torch.float64), torch.zeros(1, dtype=torch.float64),
                                            torch.tensor([i]))
        assert slope == pytest.approx(float(diffusion.coef_xt[i]), abs=3e-3)
        assert intercept == pytest.approx(float(mean), abs=3e-3)  # mean at x_t = 0: coef_x0 * x_0
        assert residual == pytest.approx(float(log_var.exp()), rel=0.02)


# ---- the samplers --------------------------------------------------------------------------------------------
def gaussian_oracle(diffusion, m: float, s: float):
    """The exact eps of data x_0 ~ N(m, s^2) (each pixel): x_t ~ N(sqrt(ab) m, ab s^2 + 1 - ab), and
    E[eps | x_t] = sqrt(1 - ab) (x_t - sqrt(ab) m) / (ab s^2 + 1 - ab)."""

    def predict(x, t):
        ab = diffusion.at(diffusion.alpha_bar, t, x)
        eps = (1 - ab).sqrt() * (x - ab.sqrt() * m) / (ab * s**2 + 1 - ab)
        return diffusion.split("epsilon", eps, x, t, clip=False)

    return predict


def test_ddim_with_eta_0_over_all_steps_is_the_probability_flow_ode():
    """For Gaussian data the probability-flow ODE is solved in closed form: it maps x_T to the data quantile of the
    same rank, x_0 = m + s (x_T - sqrt(ab_T) m) / sqrt(ab_T s^2 + 1 - ab_T). DDIM with eta = 0 is an Euler scheme
    of that ODE (in x / sqrt(ab) against sqrt((1 - ab) / ab)): over all T steps it lands on the exact map, and its
    error falls as the steps grow, at the rate of a first-order method."""
    diffusion = Diffusion(betas_for("linear", 1000))
    m, s = 0.3, 0.5
    x_T = torch.randn(256, 1, 2, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ab_T = float(diffusion.alpha_bar[-1])
    exact = m + s * (x_T - math.sqrt(ab_T) * m) / math.sqrt(ab_T * s**2 + 1 - ab_T)
    errors = {}
    for steps in (10, 100, 1000):
        out, _ = diffusion.ddim(gaussian_oracle(diffusion, m, s), x_T.clone(), steps, eta=0.0)
        errors[steps] = float((out - exact).abs().max())
    assert errors[1000] < 1e-2, errors
    # first order, as Euler's method: ten times the steps, about a tenth of the error
    assert errors[10] / errors[100] > 5 and errors[100] / errors[1000] > 5, errors
    # deterministic: another generator gives the same images
    again, _ = diffusion.ddim(gaussian_oracle(diffusion, m, s), x_T.clone(), 1000, eta=0.0,
                              generator=torch.Generator().manual_seed(99))
    assert torch.equal(again, diffusion.ddim(gaussian_oracle(diffusion, m, s), x_T.clone(), 1000, eta=0.0)[0])


def test_ddim_with_eta_1_over_all_steps_is_the_ancestral_sampler():
    diffusion = Diffusion(betas_for("cosine", 100))
    predict = gaussian_oracle(diffusion, -0.2, 0.4)
    x_T = torch.randn(64, 1, 2, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ancestral, _ = diffusion.ddpm(predict, x_T.clone(), torch.Generator().manual_seed(4))
    ddim, _ = diffusion.ddim(predict, x_T.clone(), 100, eta=1.0, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(ancestral, ddim, atol=1e-9)
    # and the samples have the data's distribution
    many, _ = diffusion.ddpm(predict, torch.randn(4000, 1, 1, 1, dtype=torch.float64,
                                                  generator=torch.Generator().manual_seed(5)),
                             torch.Generator().manual_seed(6))
    assert float(many.mean()) == pytest.approx(-0.2, abs=0.03) and float(many.std()) == pytest.approx(0.4, abs=0.03)


@pytest.mark.parametrize("schedule, prediction", [
    ("linear", "epsilon"), ("cosine", "v"),  # the other two pairs with -m slow
    pytest.param("linear", "v", marks=pytest.mark.slow), pytest.param("cosine", "epsilon", marks=pytest.mark.slow)])
def test_a_perfect_oracle_on_a_one_point_dataset_returns_that_point(schedule, prediction):
    """The data is one image x*: the exact eps is (x_t - sqrt(ab) x*) / sqrt(1 - ab) (v likewise). Every sampler
    must return x* from any noise."""
    diffusion = Diffusion(betas_for(schedule, 1000))
    point = torch.tensor([[-1.0, -0.5], [0.25, 1.0]], dtype=torch.float64).reshape(1, 1, 2, 2)

    def predict(x, t):
        a, s = diffusion.at(diffusion.alpha_bar.sqrt(), t, x), diffusion.at((1 - diffusion.alpha_bar).sqrt(), t, x)
        eps = (x - a * point) / s
        out = eps if prediction == "epsilon" else a * eps - s * point
        return diffusion.split(prediction, out, x, t, clip=True)

    x_T = torch.randn(8, 1, 2, 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    runs = {"ddpm": diffusion.ddpm(predict, x_T.clone(), torch.Generator().manual_seed(8))[0]}
    for steps, eta in ((1000, 0.0), (50, 0.0), (10, 1.0), (1, 0.5)):
        runs[f"ddim {steps} eta {eta}"] = diffusion.ddim(predict, x_T.clone(), steps, eta,
                                                         torch.Generator().manual_seed(9))[0]
    for name, out in runs.items():
        assert torch.allclose(out, point.expand_as(out), atol=1e-6), name


def test_the_schedules_have_the_papers_values():
    linear = betas_for("linear", 1000)
    assert float(linear[0]) == pytest.approx(1e-4) and float(linear[-1]) == pytest.approx(0.02)
    cosine = Diffusion(betas_for("cosine", 1000))

    def f(t):
        return math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2

    for i in (0, 100, 500, 900):  # alpha_bar(t) = f(t) / f(0), t = index + 1
        assert float(cosine.alpha_bar[i]) == pytest.approx(f(i + 1) / f(0), rel=1e-9)
    assert float(betas_for("cosine", 1000).max()) <= 0.999


def test_ddim_always_starts_from_pure_noise():
    diffusion = Diffusion(betas_for("linear", 1000))
    for steps in (1, 2, 7, 50, 1000):
        visited = diffusion.ddim_steps(steps)
        assert int(visited[-1]) == 999 and len(visited) == steps
    assert diffusion.ddim_steps(2).tolist() == [0, 999]


def test_the_bounds_pieces_have_their_closed_forms():
    from genlab.models.diffusion import discretized_gaussian_log_likelihood, normal_kl

    bins = torch.arange(256, dtype=torch.float64) / 127.5 - 1  # the 8-bit values in [-1, 1]
    for mean, log_scale in ((-0.3, math.log(0.05)), (0.9, math.log(0.5)), (-1.2, math.log(0.01))):
        mass = discretized_gaussian_log_likelihood(bins, torch.full_like(bins, mean),
                                                   torch.full_like(bins, log_scale)).exp()
        assert float(mass.sum()) == pytest.approx(1.0, abs=1e-9)  # a probability over the 256 values
    a = torch.distributions.Normal(torch.tensor(0.3, dtype=torch.float64), torch.tensor(0.2, dtype=torch.float64))
    b = torch.distributions.Normal(torch.tensor(-0.1, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64))
    ours = normal_kl(a.loc, 2 * a.scale.log(), b.loc, 2 * b.scale.log())
    assert float(ours) == pytest.approx(float(torch.distributions.kl_divergence(a, b)), rel=1e-12)


def test_the_models_bound_is_the_exact_sum_over_every_step(compose):
    """DDPM.evaluate draws steps at random and scales by T: on many copies of an image its bits/dim must be the
    prior term plus the sum of every step's term (computed here, step by step, with a stub network)."""
    from genlab.data import Batch, DataSpec
    from genlab.models import build_model
    from genlab.models.diffusion import quantize

    cfg = compose(*TINY, "model.bound_timesteps=20")
    model = build_model(cfg, DataSpec(name="digits", size=16, channels=1, n_classes=10))

    class Stub(torch.nn.Module):  # an imperfect denoiser: 0.3 x_t as the noise
        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))  # the model finds its device from a parameter

        def forward(self, x, t, labels=None):
            return 0.3 * x

    model.unet = Stub()
    image = quantize(torch.linspace(-1, 1, 256).reshape(1, 1, 16, 16))
    copies = image.expand(5000, -1, -1, -1).contiguous()
    scores = model.evaluate([Batch({"image": copies, "label": torch.zeros(5000, dtype=torch.long)})])
    d = model.diffusion
    noise = torch.randn(copies.shape, generator=torch.Generator().manual_seed(5))
    exact = float(d.prior_nats(image))
    for i in range(d.steps):
        t = torch.full((5000,), i)
        xt = d.q_sample(copies, t, noise)
        _, x0 = d.split("epsilon", 0.3 * xt, xt, t, True)
        exact += float(d.term_nats(copies, xt, t, x0).mean())
    assert scores["test_nelbo"] == pytest.approx(exact, rel=0.04)
    assert scores["test_bits_per_dim_8bit"] == pytest.approx(exact / (256 * math.log(2)), rel=0.04)


# ---- training, resume and the commands ------------------------------------------------------------------
def test_an_interrupted_run_with_ema_and_a_schedule_resumes_to_the_same_weights(tmp_path, train, interrupt_at):
    from genlab.core.errors import Interrupted
    from genlab.models.ddpm import DDPM

    settings = [*TINY, "train.epochs=3", "train.ema=0.9", "optim.schedule=linear", "optim.schedule.decay_epochs=2"]
    train(tmp_path / "straight", *settings)
    with interrupt_at(DDPM, 5), pytest.raises(Interrupted):  # mid-epoch (4 steps an epoch), in the decay
        train(tmp_path / "first", *settings)
    first = torch.load(tmp_path / "first" / "checkpoints" / "last.pt", weights_only=True)
    assert (first["step"], first["epoch"], first["batch"]) == (6, 1, 2)
    train(tmp_path / "resumed", *settings, f"train.resume={tmp_path / 'first'}")
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 12
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    shadow_a, shadow_b = a["ema"]["shadow"]["unet"], b["ema"]["shadow"]["unet"]
    assert all(torch.equal(shadow_a[k], shadow_b[k]) for k in shadow_a)
    assert any(not torch.equal(a["model"]["unet." + k], v) for k, v in shadow_a.items())  # an average, not a copy


def test_a_run_logs_the_loss_per_quarter_of_the_steps_the_bound_and_its_figures(tiny_run):
    lines = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    train_lines = [line for line in lines if "loss" in line and "test_nelbo" not in line]
    assert all(f"loss_q{k}" in train_lines[-1] for k in (1, 2, 3, 4))
    tests = [line for line in lines if "test_bits_per_dim_8bit" in line]
    assert tests and all(0 < line["test_bits_per_dim_8bit"] < 100 for line in tests)
    assert all(line["test_nelbo"] == pytest.approx(line["test_bits_per_dim_8bit"] * 256 * math.log(2)) for line in tests)
    grids = sorted(p.name for p in (tiny_run / "samples").glob("*.png"))
    assert "epoch_002.png" in grids and "epoch_002_progression.png" in grids
    from PIL import Image

    strip = Image.open(tiny_run / "samples" / "epoch_002_progression.png")
    assert strip.width > 8 * strip.height / 4  # 9 columns (x_T ... x_0) of 4 rows


def test_sample_chooses_the_sampler_without_retraining(tiny_run, tmp_path):
    generated = tiny_run / "generated"
    done = run_here(["sample", tiny_run, "-n", "8", "--steps", "5", "--eta", "0"], tmp_path)
    assert done.returncode == 0, done.stderr
    a = (generated / "samples_n8_seed0_eta0_steps5.png").read_bytes()
    done = run_here(["sample", tiny_run, "-n", "8", "--steps", "5", "--eta", "0", "--seed", "0", "-o",
                     tmp_path / "again.png"], tmp_path)
    assert done.returncode == 0 and (tmp_path / "again.png").read_bytes() == a  # deterministic
    done = run_here(["sample", tiny_run, "-n", "8", "--sampler", "ddpm"], tmp_path)
    assert done.returncode == 0 and (generated / "samples_n8_seed0_samplerddpm.png").exists()
    done = run_here(["sample", tiny_run, "-n", "8", "--steps=20", "--eta=1"], tmp_path)
    assert done.returncode == 0 and (generated / "samples_n8_seed0_eta1_steps20.png").read_bytes() != a


def test_eval_puts_the_sampler_into_every_protocol_and_reports_the_bound(conditional_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(conditional_run, run)
    done = run_here(["eval", run, "--metrics", "likelihood,ms_ssim", "-n", "20", "--steps", "4", "--eta", "0.5",
                     "--guidance", "1"], tmp_path)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert 0 < metrics["bits_per_dim_8bit"]["value"] < 100 and metrics["nelbo"]["value"] > 0
    assert metrics["ms_ssim"]["protocol"]["sampler"] == {"name": "ddim", "steps": 4, "eta": 0.5, "guidance": 1.0}
    assert "sampler" not in metrics["ms_ssim_real"]["protocol"]  # real images: no sampler


@pytest.mark.slow
def test_eval_with_the_domain_classifier_records_the_sampler(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    done = run_here(["eval", run, "--metrics", "fd_domain,precision_recall", "-n", "50", "--steps", "4"], tmp_path)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    for name in ("fd_domain", "class_coverage", "precision", "recall"):
        assert metrics[name]["protocol"]["sampler"] == {"name": "ddim", "steps": 4, "eta": 0.0}, name


@pytest.mark.parametrize("words, expected", [
    (["--guidance", "2"], ("--guidance needs a class-conditional run (model.conditional=true); this one is "
                          "unconditional: drop --guidance")),
    (["--steps", "21"], "--steps must be 1 to 20 (the run's model.timesteps), got 21"),
    (["--steps", "0"], "--steps must be 1 to 20"),
    (["--eta", "-0.5"], "--eta must be 0 (deterministic) to 1 (ancestral), got -0.5"),
    (["--sampler", "euler"], "--sampler must be ddpm or ddim, got 'euler'"),
    (["--sampler="], "--sampler must be ddpm or ddim, got ''"),
    (["--eta", "nan"], "--eta must be 0 (deterministic) to 1 (ancestral), got nan"),
    (["--sampler", "ddpm", "--steps", "5"], ("--steps is a setting of DDIM; the ancestral sampler (--sampler ddpm) "
                                            "takes all 20 steps: pass --sampler ddim")),
    (["--steps", "five"], "--steps takes a whole number, got 'five'"),
    (["--step", "5"], "no such option: --step (Possible options: --seed, --steps)"),
])
@pytest.mark.parametrize("command", ["sample", "eval"])
def test_a_bad_sampler_setting_is_one_line_before_any_work(tiny_run, tmp_path, words, expected, command):
    before = sorted(p.name for p in tiny_run.rglob("*"))
    done = run_here([command, tiny_run, *words], tmp_path)
    assert done.returncode == 2 and expected in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert sorted(p.name for p in tiny_run.rglob("*")) == before  # nothing written


def test_steps_on_a_gan_run_is_one_line(tmp_path, train):
    train(tmp_path / "gan", "data.limit=64", "train.batch_size=32", "train.steps=1", "model.ngf=8", "model.ndf=8")
    for command in ("sample", "eval"):
        done = run_here([command, tmp_path / "gan", "--steps", "50"], tmp_path)
        assert done.returncode == 2 and done.stderr.strip().endswith(
            "no such option --steps: a dcgan run's sampler has no settings (--steps is a setting of the ddpm "
            "sampler)"), done.stderr
    assert not (tmp_path / "gan" / "generated").exists()


@pytest.mark.parametrize("override, expected", [
    ("model.schedule=quadratic", "model.schedule must be one of linear, cosine; got 'quadratic'"),
    ("model.schedule=linear", ("the linear schedule scales its betas by 1000 / model.timesteps, so beta_end would be "
                              "1 at 20 steps: pass more steps or model.schedule=cosine")),
    ("model.prediction=x0", "model.prediction must be one of epsilon, v; got 'x0'"),
    ("model.sample_steps=2000", "model.sample_steps must be 1 to 20 (the run's model.timesteps), got 2000"),
    ("model.guidance=1.5", "model.guidance needs model.conditional=true (classes to guide towards), got 1.5"),
    ("model.channels=7", "model.channels must be even"),
    ("model.attention=[5]", "model.attention: 5 is no resolution of this U-Net (data.size 16 with 2 levels has 16, 8)"),
    ("model.attention=null", "model.attention must be a list of whole numbers >= 1"),
    ("model.beta_start=nan", "model.beta_start must be a finite number, got nan"),
    ("model.eta=-1", "model.eta must be 0 (deterministic) to 1 (ancestral), got -1.0"),
    ("model.norm_groups=3", "model.norm_groups (3) must divide every width"),
    ("model.channel_mult=[1,0]", "model.channel_mult must be a list of whole numbers >= 1"),
    ("model.p_uncond=1.0", "model.p_uncond must be at least 0 and below 1 (a probability), got 1.0"),
    ("model.p_uncond=nan", "model.p_uncond must be at least 0 and below 1 (a probability), got nan"),
    ("data.size=15", "model.channel_mult has 2 levels, so data.size must be divisible by 2, got 15"),
    ("model.conditional=true", None),  # fine on digits, which has classes
])
def test_a_bad_model_setting_is_one_line_before_a_run_folder(tmp_path, override, expected):
    from genlab.app.checks import check_command_line
    from genlab.core.errors import GenlabError

    line = [*TINY, override, f"hydra.run.dir={tmp_path / 'run'}"]
    if expected is None:
        check_command_line(line)
        return
    with pytest.raises(GenlabError) as err:
        check_command_line(line)
    assert expected in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()


def test_a_conditional_run_draws_a_grid_per_class_with_guidance(conditional_run, tmp_path):
    import shutil

    shutil.copytree(conditional_run, tmp_path / "run")
    assert (tmp_path / "run" / "samples" / "epoch_001_classes.png").exists()
    done = run_here(["sample", tmp_path / "run", "-n", "10", "--guidance", "3", "--labels", "0,1"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run" / "generated" / "samples_n10_seed0_guidance3.png").exists()
    from genlab.train.runs import load_run

    run = load_run(tmp_path / "run")
    assert run.model.sampler() == {"name": "ddim", "steps": 5, "eta": 0.0, "guidance": 0.0}
    done = run_here(["sample", tmp_path / "run", "-n", "4", "--guidance", "nan"], tmp_path)
    assert done.returncode == 2 and "--guidance must be a finite number >= 0 (0: no guidance), got nan" in done.stderr

    class Stub(torch.nn.Module):  # an output that depends on the label only: 1 + label (10: no label)
        def forward(self, x, t, labels=None):
            return torch.ones_like(x) * (1.0 + labels.float()[:, None, None, None])

    run.model.unet, run.model.clip = Stub(), False  # unclamped: eps is the mixed output itself
    x, t, labels = torch.zeros(2, 1, 16, 16), torch.tensor([10, 10]), torch.tensor([0, 3])
    eps, _ = run.model.predictor(labels, 3.0)(x, t)
    # (1 + w) eps(x, y) - w eps(x): 4 (1 + y) - 3 (1 + 10)
    assert eps[:, 0, 0, 0].tolist() == pytest.approx([4 * 1 - 3 * 11, 4 * 4 - 3 * 11])
    eps, _ = run.model.predictor(labels, 0.0)(x, t)
    assert eps[:, 0, 0, 0].tolist() == pytest.approx([1.0, 4.0])


def test_the_report_shows_the_familys_figures(conditional_run, tmp_path):
    import shutil

    shutil.copytree(conditional_run, tmp_path / "run")
    done = run_here(["report", tmp_path / "run"], tmp_path)
    assert done.returncode == 0, done.stderr
    report = tmp_path / "run" / "report"
    for name in ("progression_final.png", "classes_final.png", "curves.png"):
        assert (report / name).is_file(), name
    index = (report / "index.html").read_text()
    assert "the denoising of fixed noise" in index and "one row per class" in index


@pytest.mark.slow
def test_the_digits_preset_learns_classes_and_guidance_sharpens_them(tmp_path, train, digit_classifier):
    """The tuned digits preset (16 px, 40 epochs, DDIM 50 steps) with classifier-free guidance: a digit classifier
    reads the asked-for class in most samples, and guidance raises that share."""
    from genlab.train.runs import load_run

    train(tmp_path, "model=ddpm", "model.conditional=true")
    run = load_run(tmp_path)
    labels = torch.arange(500) % 10
    shares = {}
    for guidance in (0.0, 2.0):
        run.model.use_sampler(guidance=guidance)
        samples = run.model.sample(500, labels=labels, generator=torch.Generator().manual_seed(1))
        shares[guidance] = float((digit_classifier(samples) == labels.numpy()).mean())
    print(f"ddpm digits: share of samples read as the asked-for digit: {shares}")
    assert shares[2.0] >= 0.8 and shares[2.0] >= shares[0.0]


def test_a_conditional_model_on_data_without_classes_is_one_line(compose):
    from genlab.core.errors import GenlabError
    from genlab.data import DataSpec
    from genlab.models import build_model

    with pytest.raises(GenlabError, match="ddpm with model.conditional=true is label-conditional and celeba has no "
                                          "classes: pick a labelled dataset"):
        build_model(compose(*TINY, "model.conditional=true"), DataSpec("celeba", 3, 16, 0))
    with pytest.raises(GenlabError, match="labels must be class numbers from 0 to 9"):
        build_model(compose(*TINY, "model.conditional=true"), DataSpec("digits", 1, 16, 10)).sample(2, labels=[12])
