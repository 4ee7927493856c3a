"""Each adversarial loss pinned to hand-computed values; the gradient penalty against finite differences;
clipping on the critic's weights after a real step; every GAN x loss pair trains."""

import math

import pytest
import torch
from omegaconf import OmegaConf

import genlab.data
import genlab.models  # noqa: F401
from genlab.core.registry import LOSSES
from genlab.data import Batch
from genlab.models.losses import gradient_penalty

REAL = torch.tensor([2.0, -1.0])
FAKE = torch.tensor([0.5, -3.0])


def sp(x):  # softplus
    return math.log1p(math.exp(x))


def mean(*xs):
    return sum(xs) / len(xs)


# (loss, D loss by hand, G loss by hand) for scores REAL, FAKE; -log sigmoid(s) = softplus(-s)
HAND = {
    "nonsaturating": (mean(sp(-2), sp(1)) + mean(sp(0.5), sp(-3)), mean(sp(-0.5), sp(3))),
    "minimax": (mean(sp(-2), sp(1)) + mean(sp(0.5), sp(-3)), -mean(sp(0.5), sp(-3))),
    "lsgan": (mean(1.0, 4.0) + mean(0.25, 9.0), mean(0.25, 16.0)),
    "wgan": (mean(0.5, -3.0) - mean(2.0, -1.0), -mean(0.5, -3.0)),
    "wgan_gp": (mean(0.5, -3.0) - mean(2.0, -1.0), -mean(0.5, -3.0)),
    "hinge": (mean(0.0, 2.0) + mean(1.5, 0.0), -mean(0.5, -3.0)),
}


def test_every_registered_loss_has_a_hand_computed_case():
    assert set(HAND) == set(LOSSES.names())


@pytest.mark.parametrize("name", sorted(HAND))
def test_loss_values_by_hand(name):
    loss = LOSSES[name]()
    d_expected, g_expected = HAND[name]
    assert loss.d_loss(REAL, FAKE).item() == pytest.approx(d_expected, rel=1e-6)
    assert loss.g_loss(FAKE).item() == pytest.approx(g_expected, rel=1e-6)


def test_minimax_saturates_where_nonsaturating_does_not():
    # D confidently rejects the fakes (score -8): the minimax G gradient all but vanishes
    fake = torch.tensor([-8.0], requires_grad=True)
    (g_minimax,) = torch.autograd.grad(LOSSES["minimax"]().g_loss(fake), fake)
    (g_nonsat,) = torch.autograd.grad(LOSSES["nonsaturating"]().g_loss(fake), fake)
    assert abs(g_minimax.item()) < 1e-3
    assert abs(g_nonsat.item()) > 0.99


def test_gradient_penalty_matches_finite_differences():
    torch.manual_seed(0)
    critic_net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    critic = lambda x: critic_net(x).flatten()
    real, fake = torch.randn(3, 3, 2, 2), torch.randn(3, 3, 2, 2)
    torch.manual_seed(1)
    penalty = gradient_penalty(critic, real, fake).item()
    torch.manual_seed(1)
    alpha = torch.rand(3, 1, 1, 1)
    x_hat = (alpha * real + (1 - alpha) * fake).double()
    net = critic_net.double()
    eps, expected = 1e-6, []
    for i in range(3):
        grad = torch.zeros(12, dtype=torch.double)
        flat = x_hat[i].flatten()
        for j in range(12):
            up, down = flat.clone(), flat.clone()
            up[j] += eps
            down[j] -= eps
            grad[j] = (net(up.view(1, 3, 2, 2)) - net(down.view(1, 3, 2, 2))).item() / (2 * eps)
        expected.append((grad.norm() - 1) ** 2)
    assert penalty == pytest.approx(torch.stack(expected).mean().item(), rel=1e-4)


def _dcgan(loss_name, **loss_cfg):
    from genlab.data import DataSpec
    from genlab.models.gan import DCGAN
    from genlab.train.loop import Engine

    loss = LOSSES[loss_name](OmegaConf.create({"name": loss_name, **loss_cfg}))
    model = DCGAN(OmegaConf.create({"nz": 8, "ngf": 8, "ndf": 8, "d_norm": "auto"}), DataSpec("x", 1, 16), loss)
    model.configure_optimizers(OmegaConf.create({"name": "rmsprop", "lr": 0.05, "betas": None}))
    model.engine = Engine(torch.device("cpu"), "none", model.optimizers)
    return model


def test_wgan_clips_the_critic_after_each_step():
    model = _dcgan("wgan", n_critic=5, clip=0.01)
    model.training_step(Batch(image=torch.rand(8, 1, 16, 16) * 2 - 1), 0)
    weights = torch.cat([p.detach().flatten() for p in model.discriminator.parameters()])
    assert weights.abs().max().item() == pytest.approx(0.01)  # lr 0.05 pushes some weights to the bound


def test_n_critic_steps_d_every_step_and_g_every_fifth():
    model = _dcgan("wgan_gp", n_critic=5, gp_weight=10.0)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.discriminator.modules())  # layer norm
    x = torch.rand(8, 1, 16, 16) * 2 - 1
    g_before = [p.clone() for p in model.generator.parameters()]
    for step in range(4):
        out = model.training_step(Batch(image=x), step)
        assert "g_loss" not in out and "gradient_penalty" in out
    assert all(torch.equal(a, b) for a, b in zip(g_before, model.generator.parameters()))
    out = model.training_step(Batch(image=x), 4)
    assert "g_loss" in out and "critic_real" in out
    assert not all(torch.equal(a, b) for a, b in zip(g_before, model.generator.parameters()))


SMALL = {  # narrow nets so that 24 short trainings stay quick
    "dcgan": ["model.ngf=8", "model.ndf=8"],
    "cgan": ["model.g_width=32", "model.d_width=8"],
    "acgan": ["model.g_width=32", "model.d_width=4"],
    "infogan": ["data.size=8"],
    "pix2pix": ["data=edges2fashion", "data.limit=64", "data.test_limit=16", "model.ngf=4", "model.ndf=4",
                "model.d_layers=2"],
    "cyclegan": ["data=sandal2sneaker", "data.limit=64", "data.test_limit=8", "model.ngf=4", "model.ndf=4",
                 "model.n_blocks=1", "model.d_layers=2"],
    "srgan": ["data=sr_photos", "data.limit=2", "data.test_limit=1", "data.size=32", "data.repeat=16",
              "model.n_blocks=1", "model.width=8", "model.ndf=8", "model.content=mse", "model.from_scratch=true"],
}


def _pairs():
    """Every (model, loss) pair; the fast selection keeps a diagonal in which each model and each loss appears."""
    models, losses = sorted(SMALL), sorted(HAND)
    fast = {(m, losses[i % len(losses)]) for i, m in enumerate(models)} | \
           {(models[i % len(models)], loss) for i, loss in enumerate(losses)}
    return [pytest.param(m, loss, marks=() if (m, loss) in fast else pytest.mark.slow) for m in models for loss in losses]


@pytest.mark.parametrize(("model", "loss"), _pairs())
def test_every_gan_trains_with_every_loss(tmp_path, train, model, loss):
    from tests.conftest import FASHION_SYSTEM

    if model in ("pix2pix", "cyclegan") and not FASHION_SYSTEM.is_dir():
        pytest.skip("the translation demos need Fashion-MNIST: apt-get install dataset-fashion-mnist")
    last = train(tmp_path, f"model={model}", f"loss={loss}", "train.steps=10", "data.limit=64",
                 "train.batch_size=16", "train.log_every=5", "train.n_samples=16", *SMALL[model])
    assert math.isfinite(last["d_loss"]) and math.isfinite(last["g_loss"])
    assert (tmp_path / "checkpoints" / "last.pt").is_file()


def test_resume_mid_critic_cycle_is_exact(tmp_path, train):
    common = ["loss=wgan_gp", "data.limit=64", "train.batch_size=16", "model.ngf=8", "model.ndf=8",
              "train.n_samples=8"]
    train(tmp_path / "straight", *common, "train.steps=9")
    train(tmp_path / "first", *common, "train.steps=3")  # stops between G steps (G steps at 5 and 10)
    train(tmp_path / "second", *common, "train.steps=9", f"train.resume={tmp_path / 'first'}")
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "second" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fp16_skipped_steps_log_no_nan_gradient_norms(tmp_path, train):
    import json

    train(tmp_path, "loss=wgan_gp", "device.amp=fp16", "train.steps=10", "data.limit=64", "train.batch_size=16",
          "model.ngf=8", "model.ndf=8", "train.log_every=5", "train.n_samples=8")
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    norms = [r[k] for r in records for k in ("d_grad_norm", "g_grad_norm") if k in r]
    assert norms and all(math.isfinite(v) for v in norms)
    assert all(math.isfinite(r["gradient_penalty"]) for r in records if "gradient_penalty" in r)


def test_a_losss_optimiser_is_replaced_whole_by_the_users(compose):
    assert (compose("loss=wgan").optim.name, compose("loss=wgan").optim.lr) == ("rmsprop", 5e-5)
    mine = compose("loss=wgan", "optim=adam")
    assert (mine.optim.name, mine.optim.lr) == ("adam", None)  # None: the model's own default, not WGAN's lr
    assert compose("loss=hinge", "loss.n_critic=3").loss.n_critic == 3  # every loss takes n_critic


def test_every_gan_model_is_in_the_parametrised_test():
    from genlab.core.registry import MODELS

    # the autoencoders, SRResNet (pixel MSE alone), the flows (exact likelihood) and DDPM take no GAN loss
    assert set(SMALL) == set(MODELS.names()) - {"vae", "cvae", "vqvae", "srresnet", "made", "maf", "iaf", "realnvp",
                                                "ddpm"}
