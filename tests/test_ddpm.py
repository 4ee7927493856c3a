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
        assert float(diffusion.posterior_variance[i]) == pytest.approx(beta * (1 - ab_prev) / (1 - diffusion.alpha_bar[i]))


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


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("prediction", ["epsilon", "v"])
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


def test_the_bound_estimate_is_the_exact_sum_in_expectation():
    """test_bpd draws steps at random: its mean over many draws is the bound summed over every step."""
    diffusion = Diffusion(betas_for("cosine", 10))
    x0 = torch.tensor([-1.0, -0.2, 0.6, 1.0], dtype=torch.float64).reshape(1, 1, 2, 2).expand(4000, -1, -1, -1)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(10), dtype=torch.float64)

    def terms(t):
        xt = diffusion.q_sample(x0, t, noise)
        x0_pred = (0.8 * x0 + 0.1 * xt).clamp(-1, 1)  # an imperfect model
        return diffusion.term_nats(x0, xt, t, x0_pred)

    exact = sum(terms(torch.full((len(x0),), i)) for i in range(10))
    estimate = 10 * terms(torch.randint(10, (len(x0),), generator=torch.Generator().manual_seed(11)))
    assert float(estimate.mean()) == pytest.approx(float(exact.mean()), rel=0.05)
    assert float(diffusion.prior_nats(x0[:1])) > 0


# ---- training, resume and the commands ------------------------------------------------------------------
def test_an_interrupted_run_with_ema_and_a_schedule_resumes_to_the_same_weights(tmp_path, train, interrupt_at):
    from genlab.core.errors import Interrupted
    from genlab.models.ddpm import DDPM

    settings = [*TINY, "train.epochs=4", "train.ema=0.9", "optim.schedule=linear", "optim.schedule.decay_epochs=2"]
    train(tmp_path / "straight", *settings)
    with interrupt_at(DDPM, 9), pytest.raises(Interrupted):  # mid-epoch (4 steps an epoch), in the decay
        train(tmp_path / "first", *settings)
    first = torch.load(tmp_path / "first" / "checkpoints" / "last.pt", weights_only=True)
    assert (first["step"], first["epoch"], first["batch"]) == (10, 2, 2)
    train(tmp_path / "resumed", *settings, f"train.resume={tmp_path / 'first'}")
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 16
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
    a = (generated / "samples_n8_seed0_steps5_eta0.png").read_bytes()
    done = run_here(["sample", tiny_run, "-n", "8", "--steps", "5", "--eta", "0", "--seed", "0", "-o",
                     tmp_path / "again.png"], tmp_path)
    assert done.returncode == 0 and (tmp_path / "again.png").read_bytes() == a  # deterministic
    done = run_here(["sample", tiny_run, "-n", "8", "--sampler", "ddpm"], tmp_path)
    assert done.returncode == 0 and (generated / "samples_n8_seed0_samplerddpm.png").exists()
    done = run_here(["sample", tiny_run, "-n", "8", "--steps=20", "--eta=1"], tmp_path)
    assert done.returncode == 0 and (generated / "samples_n8_seed0_steps20_eta1.png").read_bytes() != a


def test_eval_puts_the_sampler_into_every_protocol_and_reports_the_bound(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    done = run_here(["eval", run, "--metrics", "likelihood,fd_domain", "-n", "20", "--steps", "4", "--eta", "0.5"],
                    tmp_path)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert 0 < metrics["bits_per_dim_8bit"]["value"] < 100
    for name in ("fd_domain", "class_coverage"):
        assert metrics[name]["protocol"]["sampler"] == {"name": "ddim", "steps": 4, "eta": 0.5}, name


@pytest.mark.parametrize("words, expected", [
    (["--guidance", "2"], ("--guidance needs a class-conditional run (model.conditional=true); this one is "
                          "unconditional: drop --guidance")),
    (["--steps", "21"], "--steps must be 1 to 20 (the run's model.timesteps), got 21"),
    (["--steps", "0"], "--steps must be 1 to 20"),
    (["--eta", "-0.5"], "--eta must be 0 (deterministic) to 1 (ancestral), got -0.5"),
    (["--sampler", "euler"], "--sampler must be ddpm or ddim, got 'euler'"),
    (["--sampler", "ddpm", "--steps", "5"], ("--steps is a setting of DDIM; the ancestral sampler (--sampler ddpm) "
                                            "takes all 20 steps: pass --sampler ddim")),
    (["--steps", "five"], "--steps takes a whole number, got 'five'"),
    (["--step", "5"], ("no such option --step (did you mean --steps?): a ddpm run's sampler takes --sampler, "
                      "--steps, --eta, --guidance")),
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
    ("model.guidance=1.5", "model.guidance must be >= 0 and needs model.conditional=true, got 1.5"),
    ("model.eta=-1", "model.eta must be 0 (deterministic) to 1 (ancestral), got -1.0"),
    ("model.norm_groups=3", "model.norm_groups (3) must divide every width"),
    ("model.channel_mult=[1,0]", "model.channel_mult must be a list of whole numbers >= 1"),
    ("model.p_uncond=1.0", "model.p_uncond must be below 1 (a probability), got 1.0"),
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


def test_a_conditional_run_draws_a_grid_per_class_with_guidance(tmp_path, train):
    train(tmp_path / "run", *TINY, "model.conditional=true", "model.p_uncond=0.2", "train.epochs=1",
          "train.sample_every=1")
    assert (tmp_path / "run" / "samples" / "epoch_001_classes.png").exists()
    done = run_here(["sample", tmp_path / "run", "-n", "10", "--guidance", "3", "--labels", "0,1"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run" / "generated" / "samples_n10_seed0_guidance3.png").exists()
    from genlab.train.runs import load_run

    run = load_run(tmp_path / "run")
    assert run.model.sampler() == {"name": "ddim", "steps": 5, "eta": 0.0, "guidance": 0.0}
    run.model.use_sampler(guidance=3.0)
    torch.manual_seed(0)
    x = torch.randn(2, 1, 16, 16)
    t = torch.tensor([10, 10])
    labels = torch.tensor([0, 1])
    with torch.no_grad():
        eps, _ = run.model.predictor(labels, 3.0)(x, t)
        cond = run.model.unet(x, t, labels)
        uncond = run.model.unet(x, t, torch.tensor([10, 10]))
        manual, _ = run.model.diffusion.split("epsilon", 4 * cond - 3 * uncond, x, t, True)
    assert torch.allclose(eps, manual, atol=1e-5)
