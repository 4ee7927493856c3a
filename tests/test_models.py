import math

import pytest
import torch
from omegaconf import OmegaConf

from genlab.core.errors import GenlabError
from genlab.data import Batch, DataSpec
from genlab.models.gan import DCGAN, DCGANDiscriminator, DCGANGenerator
from genlab.models.losses import NonSaturating
from genlab.models.vae import VAE, kl_to_standard_normal, reconstruction_loss


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def test_dcgan_64_rgb_matches_the_canonical_pytorch_dcgan_sizes():
    # The lab sheet's nets at 64x64x3, nz=100, ngf=ndf=64 (REFERENCES.md, recomputed with PyTorch).
    assert n_params(DCGANGenerator(100, 64, 3, 64)) == 3_576_704
    assert n_params(DCGANDiscriminator(64, 3, 64)) == 2_765_568


@pytest.mark.parametrize("size", [16, 32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_shapes_at_every_size(size, channels):
    g, d = DCGANGenerator(100, 8, channels, size), DCGANDiscriminator(8, channels, size)
    images = g(torch.randn(2, 100))
    assert images.shape == (2, channels, size, size)
    assert images.abs().max() <= 1.0
    assert d(images).shape == (2,)


def test_dcgan_size_stages_follow_the_lab_sheet():
    # 64x64: four x2 stages after 4x4; 32 one fewer; 128 one more (counted as ConvTranspose layers).
    for size, convs in ((32, 4), (64, 5), (128, 6)):
        g = DCGANGenerator(100, 8, 3, size)
        assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in g.modules()) == convs


def test_dcgan_rejects_sizes_that_are_not_powers_of_two():
    with pytest.raises(GenlabError, match="power of two"):
        DCGANGenerator(100, 8, 1, 28)


def test_nonsaturating_loss_by_hand():
    loss = NonSaturating()
    zero = torch.zeros(4)
    assert loss.d_loss(zero, zero).item() == pytest.approx(2 * math.log(2))
    assert loss.g_loss(zero).item() == pytest.approx(math.log(2))
    # D confident and right: real logit 3, fake logit -3 -> 2 * log(1 + e^-3)
    assert loss.d_loss(torch.full((2,), 3.0), torch.full((2,), -3.0)).item() == pytest.approx(
        2 * math.log1p(math.exp(-3))
    )
    assert loss.g_loss(torch.full((2,), -3.0)).item() == pytest.approx(math.log1p(math.exp(3)))


def test_kl_matches_closed_form_and_monte_carlo():
    torch.manual_seed(0)
    mu, logvar = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.2, -0.7]])
    var = logvar.exp()
    by_hand = 0.5 * (mu.pow(2) + var - 1 - logvar).sum()
    assert kl_to_standard_normal(mu, logvar).item() == pytest.approx(by_hand.item())
    q = torch.distributions.Normal(mu, var.sqrt())
    z = q.sample((200_000,))
    p = torch.distributions.Normal(torch.zeros(2), torch.ones(2))
    monte_carlo = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean()
    assert monte_carlo.item() == pytest.approx(by_hand.item(), abs=0.02)


def test_reconstruction_losses_take_targets_in_unit_range():
    target = torch.tensor([[0.0, 1.0, 0.5]])
    perfect = torch.logit(target.clamp(1e-6, 1 - 1e-6))
    assert reconstruction_loss(perfect, target, "mse").item() == pytest.approx(0.0, abs=1e-9)
    # BCE of a perfect Bernoulli prediction is the targets' entropy: 0 + 0 + log 2
    assert reconstruction_loss(perfect, target, "bce").item() == pytest.approx(math.log(2), abs=1e-4)


def test_vae_forward_sample_and_visuals():
    cfg = OmegaConf.create({"latent_dim": 2, "recon": "bce", "beta": 1.0})
    model = VAE(cfg, DataSpec("x", 1, 32))
    x = torch.rand(16, 1, 32, 32) * 2 - 1
    terms = model.loss_terms(x)
    assert set(terms) == {"loss", "recon_loss", "kl"} and terms["kl"] >= 0
    assert terms["loss"].item() == pytest.approx((terms["recon_loss"] + terms["kl"]).item())
    samples = model.sample(5, generator=torch.Generator().manual_seed(1))
    assert samples.shape == (5, 1, 32, 32) and samples.min() >= -1 and samples.max() <= 1
    visuals = model.visuals(Batch(image=x))
    assert visuals["reconstructions"].shape == (32, 1, 32, 32)
    assert torch.equal(visuals["reconstructions"][:8], x[:8])  # first row: the inputs themselves


def test_dcgan_training_step_updates_both_networks_and_leaves_no_stale_grads():
    from genlab.train.loop import Engine

    cfg = OmegaConf.create({"nz": 16, "ngf": 8, "ndf": 8, "d_norm": "auto"})
    model = DCGAN(cfg, DataSpec("x", 1, 16), NonSaturating())
    model.configure_optimizers(OmegaConf.create({"name": "adam", "lr": None, "betas": None}))
    model.engine = Engine(torch.device("cpu"), "none", model.optimizers)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = model.training_step(Batch(image=torch.rand(8, 1, 16, 16) * 2 - 1), 0)
    assert set(out) == {"d_loss", "g_loss", "d_real", "d_fake", "d_grad_norm", "g_grad_norm"}
    changed = {k.split(".")[0] for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"generator", "discriminator"}
    assert all(p.requires_grad for p in model.discriminator.parameters())
    assert model.optimizer_settings["g"]["lr"] == 2e-4 and tuple(model.optimizer_settings["g"]["betas"]) == (0.5, 0.999)


def test_acgan_nets_follow_odenas_cifar10_table():
    from genlab.models.acgan import ACGANDiscriminator, ACGANGenerator

    g = ACGANGenerator(110, 3, 32)
    assert g.fc[0].in_features == 110 and g.fc[0].out_features == 384 * 4 * 4
    convs = [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [(192, (5, 5), (2, 2)), (96, (5, 5), (2, 2)),
                                                                          (3, (5, 5), (2, 2))]
    assert g(torch.randn(2, 110)).shape == (2, 3, 32, 32)
    d = ACGANDiscriminator(10, 3, 32)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.stride[0]) for c in convs] == [(16, 2), (32, 1), (64, 2), (128, 1), (256, 2), (512, 1)]
    assert sum(isinstance(m, torch.nn.Dropout) for m in d.modules()) == 6
    source, classes = d(torch.randn(2, 3, 32, 32))
    assert source.shape == (2,) and classes.shape == (2, 10)  # linear 11 = 1 source + 10 classes


def test_cgan_nets_follow_the_cifar10_report():
    from genlab.models.cgan import CGANDiscriminator, CGANGenerator

    g = CGANGenerator(100, 10, 3, 32)
    assert g.fc[0].in_features == 110 and g.fc[0].out_features == 512 * 2 * 2  # z + label -> dense 2x2x512
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in g.modules()) == 4
    assert g(torch.randn(2, 100), torch.eye(10)[:2]).shape == (2, 3, 32, 32)
    d = CGANDiscriminator(10, 3, 32)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in d.modules()) == 4
    assert d.head[0].in_features == 512 * 2 * 2 + 10 and d.head[0].out_features == 512  # concat label, dense 512
    assert d(torch.randn(2, 3, 32, 32), torch.eye(10)[:2]).shape == (2,)


@pytest.mark.parametrize("name", ["cgan", "acgan"])
def test_label_conditional_models_need_labels_and_sample_the_asked_class_rows(name):
    from genlab.core.registry import LOSSES, MODELS

    cfg = OmegaConf.create({"nz": 8, "label_mode": "embedding", "embed_dim": 4, "g_width": 32, "d_width": 4,
                            "d_norm": "auto"})
    loss = LOSSES["nonsaturating"]()
    with pytest.raises(GenlabError, match="no classes"):
        MODELS[name](cfg, DataSpec("faces", 3, 32, 0), loss)
    model = MODELS[name](cfg, DataSpec("digits", 1, 32, 10), loss)
    assert model.sample(6, labels=[3]).shape == (6, 1, 32, 32)
    with pytest.raises(GenlabError, match="from 0 to 9"):
        model.sample(2, labels=[10])
    asked = []
    real_sample = model.sample
    model.sample = lambda n, **kw: (asked.append(kw.get("labels")), real_sample(n, **kw))[1]
    visuals = model.visuals(Batch(image=torch.zeros(16, 1, 32, 32)))
    assert visuals["classes"].shape == (80, 1, 32, 32) and len(model.visual_row_titles()["classes"]) == 10
    assert asked[-1].tolist() == [c for c in range(10) for _ in range(8)]  # row i of the class grid is class i


def test_infogan_visuals_sweep_each_continuous_code_per_category():
    from genlab.core.registry import LOSSES, MODELS

    cfg = OmegaConf.create({"nz": 8, "n_cat": 4, "n_cont": 2, "lambda_info": 1.0, "lambda_cont": 0.1,
                            "d_norm": "auto"})
    model = MODELS["infogan"](cfg, DataSpec("digits", 1, 16, 10), LOSSES["nonsaturating"]())
    visuals = model.visuals(Batch(image=torch.zeros(8, 1, 16, 16)))
    assert set(visuals) == {"samples", "sweep_c1", "sweep_c2"} and visuals["sweep_c1"].shape == (32, 1, 16, 16)
    row = visuals["sweep_c1"][:8]
    assert not torch.allclose(row[0], row[-1])  # the swept code changes the image along a row


def test_vae_manifold_decodes_a_grid_of_normal_quantiles_and_kl_warms_up():
    cfg = OmegaConf.create({"latent_dim": 2, "recon": "mse", "beta": 2.0, "kl_warmup": 100})
    model = VAE(cfg, DataSpec("x", 1, 16))
    grid = model.manifold()
    assert grid.shape == (10, 10, 1, 16, 16)
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor([0.05, 0.95]))
    model.eval()
    top_left = model.decode(torch.tensor([[q[0], q[1]]]))  # smallest z1, largest z2
    bottom_right = model.decode(torch.tensor([[q[1], q[0]]]))
    assert torch.allclose(grid[0, 0], top_left[0], atol=1e-6) and torch.allclose(grid[9, 9], bottom_right[0], atol=1e-6)
    assert "manifold" in model.visuals(Batch(image=torch.zeros(8, 1, 16, 16)))
    assert [model.kl_weight(s) for s in (0, 50, 100, 500)] == [0.0, 1.0, 2.0, 2.0]
    assert "manifold" not in VAE(OmegaConf.create({"latent_dim": 3, "recon": "bce", "beta": 1.0}),
                                 DataSpec("x", 1, 16)).visuals(Batch(image=torch.zeros(8, 1, 16, 16)))
