"""The VAE family beyond the plain VAE: CVAE conditioning, VQ-VAE quantisation, latent figures, test ELBO."""

import math

import pytest
import torch
from omegaconf import OmegaConf

from genlab.core.errors import GenlabError
from genlab.data import Batch, DataSpec
from genlab.models.cvae import CVAE
from genlab.models.vae import VAE, project_2d, reconstruction_nll
from genlab.models.vqvae import VQVAE, VectorQuantizer, nearest_code, perplexity

DIGITS = DataSpec("digits", 1, 16, 10, class_names=[str(i) for i in range(10)])


def vae_cfg(name="vae", **extra):
    return OmegaConf.create({"name": name, "latent_dim": 4, "recon": "bce", "beta": 1.0, "kl_warmup": 0,
                             "scatter": "pca", **extra})


def vq_cfg(**extra):
    base = {"name": "vqvae", "width": 16, "res_width": 8, "n_res": 1, "code_dim": 4, "codebook_size": 32,
            "beta": 0.25, "codebook_update": "loss", "ema_decay": 0.99, "restart_after": 100}
    return OmegaConf.create({**base, **extra})


# ---- CVAE ------------------------------------------------------------------------------------------
def test_cvae_feeds_the_one_hot_label_to_encoder_channels_and_to_z():
    model = CVAE(vae_cfg("cvae"), DIGITS)
    assert model.encoder.features[0].in_channels == 1 + 10  # image channel + one constant map per class
    assert model.decoder.fc[0].in_features == 4 + 10  # z joined with the one-hot label
    x, labels = torch.rand(3, 1, 16, 16) * 2 - 1, torch.tensor([0, 3, 9])
    inputs = model.encoder_input(x, labels)
    assert torch.equal(inputs[:, 0], x[:, 0])
    assert inputs[1, 1 + 3].eq(1).all() and inputs[1, 1:].sum() == 16 * 16  # class 3's map is all ones
    # the decoder reads the label: same z, different class, different image
    z = torch.zeros(2, 4)
    with torch.no_grad():
        model.decoder.fc[0].weight.normal_()
    images = model.sample(2, labels=[1, 7], noise=z)
    assert not torch.allclose(images[0], images[1])


def test_cvae_manifold_keeps_one_class():
    model = CVAE(vae_cfg("cvae", latent_dim=2), DIGITS)
    grid = model.manifold()
    assert torch.equal(grid, model.manifold(labels=0)) and not torch.equal(grid, model.manifold(labels=3))


def test_cvae_samples_requested_classes_and_draws_class_rows():
    model = CVAE(vae_cfg("cvae"), DIGITS)
    assert model.sample(5, labels=2).shape == (5, 1, 16, 16)
    with pytest.raises(GenlabError, match="from 0 to 9"):
        model.sample(2, labels=[10])
    visuals = model.visuals(Batch(image=torch.rand(16, 1, 16, 16) * 2 - 1, label=torch.arange(16) % 10))
    assert visuals["classes"].shape == (80, 1, 16, 16)  # 10 class rows of 8
    assert model.visual_row_titles()["classes"] == DIGITS.class_names
    with pytest.raises(GenlabError, match="has no classes"):
        CVAE(vae_cfg("cvae"), DataSpec("celeba", 3, 16, 0))


def test_cvae_training_step_reads_the_batch_labels():
    model = CVAE(vae_cfg("cvae"), DIGITS)
    model.configure_optimizers(OmegaConf.create({"name": "adam", "lr": None, "betas": None, "weight_decay": 0}))
    from genlab.train.loop import Engine

    model.engine = Engine(torch.device("cpu"), "none", model.optimizers)
    scalars = model.training_step(Batch(image=torch.rand(8, 1, 16, 16) * 2 - 1, label=torch.arange(8)), 0)
    assert {"loss", "recon_loss", "kl"} <= scalars.keys() and all(math.isfinite(float(v)) for v in scalars.values())


# ---- evaluation and latent figures ----------------------------------------------------------------
def test_test_elbo_is_reconstruction_nll_plus_kl_in_nats_and_bits_per_dim():
    torch.manual_seed(0)
    model = VAE(vae_cfg(recon="mse"), DIGITS)
    x, labels = torch.rand(10, 1, 16, 16) * 2 - 1, torch.arange(10)
    scores = model.evaluate([Batch(image=x[:6], label=labels[:6]), Batch(image=x[6:], label=labels[6:])])
    # recompute by hand with the same fixed-seed noise
    generator, dequantising = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    total = total_8bit = 0.0
    with model.evaluating(), torch.no_grad():
        for part in (x[:6], x[6:]):
            mu, logvar = model.encode(part)
            z = mu + torch.randn(mu.shape, generator=generator) * torch.exp(0.5 * logvar)
            squared = (torch.sigmoid(model.decoder(z)) - (part + 1) / 2).pow(2).flatten(1).sum(1)
            gaussian_nll = squared + 0.5 * 256 * math.log(math.pi)  # N(mean, 1/2) per pixel
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
            total += float((gaussian_nll + kl).sum())
            # the flows' way: the 8-bit values v, dequantised to (v + U(0, 1)) / 256, plus log 256 per pixel
            values = ((part + 1) * 127.5).round()
            u = (values + torch.rand(values.shape, generator=dequantising)) / 256
            squared = (torch.sigmoid(model.decoder(z)) - u).pow(2).flatten(1).sum(1)
            total_8bit += float((squared + 0.5 * 256 * math.log(math.pi) + kl + 256 * math.log(256)).sum())
    assert scores["test_nelbo"] == pytest.approx(total / 10, rel=1e-5)
    assert scores["test_bits_per_dim"] == pytest.approx(total / 10 / (256 * math.log(2)), rel=1e-5)
    assert scores["test_bits_per_dim_8bit"] == pytest.approx(total_8bit / 10 / (256 * math.log(2)), rel=1e-5)
    bce = VAE(vae_cfg(recon="bce"), DIGITS).evaluate([Batch(image=x, label=labels)])
    assert "test_bits_per_dim_8bit" not in bce  # a Bernoulli decoder is no density of continuous pixels


def test_gaussian_nll_of_the_mse_decoder_is_a_normalised_density():
    # integrate exp(-nll) of one pixel over the real line: a density must integrate to 1
    grid = torch.linspace(-6, 7, 20001)
    logits = torch.zeros(len(grid), 1, 1, 1)  # sigmoid(0) = 0.5, the mean
    nll = reconstruction_nll(logits, grid.view(-1, 1, 1, 1), "mse")
    assert float(torch.trapezoid(torch.exp(-nll), grid)) == pytest.approx(1.0, abs=1e-4)


def test_latent_scatter_projects_by_pca_and_keeps_the_classes():
    model = VAE(vae_cfg(), DIGITS)
    x, labels = torch.rand(12, 1, 16, 16) * 2 - 1, torch.arange(12) % 10
    scatter = model.evaluate([Batch(image=x, label=labels)])["latents"]
    assert scatter.points.shape == (12, 2) and torch.equal(scatter.labels, labels)
    assert "PCA of 4-D" in scatter.title
    # PCA: the first axis carries the most variance of points stretched along a known direction
    points = torch.randn(500, 3) * torch.tensor([5.0, 1.0, 0.2])
    projected, method = project_2d(points)
    assert method == "PCA" and projected[:, 0].var() > 20 and projected[:, 1].var() < 2
    # t-SNE keeps two well separated clusters apart
    clusters = torch.cat([torch.randn(40, 6), torch.randn(40, 6) + 20])
    embedded, method = project_2d(clusters, "tsne")
    assert method == "t-SNE" and embedded.shape == (80, 2)
    gap = (embedded[:40].mean(0) - embedded[40:].mean(0)).norm()
    assert gap > 3 * max(embedded[:40].std(0).norm(), embedded[40:].std(0).norm())


# ---- VQ-VAE ----------------------------------------------------------------------------------------
def test_quantisation_picks_the_nearest_code():
    torch.manual_seed(0)
    codebook, vectors = torch.randn(50, 8), torch.randn(300, 8)
    assert torch.equal(nearest_code(vectors, codebook), torch.cdist(vectors, codebook).argmin(dim=1))
    quantizer = VectorQuantizer(50, 8).eval()
    quantizer.codebook.data = codebook
    z_e = vectors[:32].view(2, 4, 4, 8).permute(0, 3, 1, 2)
    out = quantizer(z_e)
    expected = codebook[torch.cdist(vectors[:32], codebook).argmin(dim=1)].view(2, 4, 4, 8).permute(0, 3, 1, 2)
    assert torch.allclose(out["z_q"], expected, atol=1e-6)
    assert out["indices"].shape == (2, 4, 4)


def test_straight_through_gradient_reaches_the_encoder():
    torch.manual_seed(0)
    model = VQVAE(vq_cfg(), DIGITS).eval()
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    z_e = model.encoder(x)
    z_e.retain_grad()
    q = model.quantizer(z_e)
    torch.nn.functional.mse_loss(model.decoder(q["z_q"]), x).backward()
    # the reconstruction's gradient at z_q is passed to z_e unchanged, and on into the encoder's weights
    assert z_e.grad is not None and z_e.grad.abs().sum() > 0
    assert model.encoder.net[0].weight.grad.abs().sum() > 0
    assert model.quantizer.codebook.grad is None  # the codebook learns only from its own loss term


def test_codebook_and_commitment_terms_train_their_own_side():
    quantizer = VectorQuantizer(8, 4).eval()
    z_e = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = quantizer(z_e)
    out["codebook"].backward(retain_graph=True)
    assert z_e.grad is None and quantizer.codebook.grad.abs().sum() > 0  # sg[z_e]: only e moves
    quantizer.codebook.grad = None
    out["commitment"].backward()
    assert z_e.grad.abs().sum() > 0 and quantizer.codebook.grad is None  # sg[e]: only z_e moves


def test_ema_update_moves_codes_to_the_mean_of_their_vectors():
    quantizer = VectorQuantizer(4, 2, update="ema", decay=0.0, restart_after=0)
    quantizer.initialised.fill_(True)
    quantizer.codebook.data = torch.tensor([[0.0, 0.0], [10.0, 10.0], [-10.0, 10.0], [50.0, 50.0]])
    vectors = torch.tensor([[1.0, 0.0], [-1.0, 2.0], [9.0, 11.0], [11.0, 11.0]])
    quantizer(vectors.view(1, 2, 2, 2).permute(0, 3, 1, 2))
    assert torch.allclose(quantizer.codebook[0], torch.tensor([0.0, 1.0]), atol=1e-3)
    assert torch.allclose(quantizer.codebook[1], torch.tensor([10.0, 11.0]), atol=1e-3)
    assert not quantizer.codebook.requires_grad  # EMA codebooks take no gradient


def test_dead_codes_restart_on_encoder_outputs():
    torch.manual_seed(0)
    quantizer = VectorQuantizer(16, 2, restart_after=3)
    quantizer.initialised.fill_(True)
    quantizer.codebook.data = torch.cat([torch.zeros(1, 2), torch.full((15, 2), 100.0)])
    vectors = torch.randn(1, 2, 4, 4) * 0.01  # all nearest to code 0: codes 1..15 are never picked
    restarts = [float(quantizer(vectors)["restarts"]) for _ in range(3)]
    assert restarts == [0.0, 0.0, 15.0]
    flat = vectors.permute(0, 2, 3, 1).reshape(-1, 2)
    assert torch.cdist(quantizer.codebook.data[1:], flat).min(dim=1).values.max() < 1e-6  # on batch vectors


def test_perplexity_is_k_for_uniform_and_one_for_collapsed_use():
    assert float(perplexity(torch.full((64,), 5))) == pytest.approx(64.0)
    assert float(perplexity(torch.tensor([100, 0, 0, 0]))) == pytest.approx(1.0)


def test_vqvae_cannot_sample_but_reconstructs():
    model = VQVAE(vq_cfg(), DIGITS)
    with pytest.raises(GenlabError, match="genlab reconstruct"):
        model.sample(4)
    assert model.reconstruct(torch.zeros(3, 1, 16, 16)).shape == (3, 1, 16, 16)


# ---- trained on digits through the real trainer ---------------------------------------------------
def test_vqvae_on_digits_reports_codebook_use_that_has_not_collapsed(tmp_path, train):
    from genlab.core.records import read_metrics

    train(tmp_path, "model=vqvae", "model.width=32", "model.res_width=16", "model.codebook_size=64",
          "train.epochs=4", "train.sample_every=2")
    records = read_metrics(tmp_path / "metrics.jsonl")
    steps = [r for r in records if "perplexity" in r]
    evaluations = [r for r in records if "test_perplexity" in r]
    first, final = evaluations[0], evaluations[-1]
    assert steps and all(0 < r["code_usage"] <= 1 and 1 <= r["perplexity"] <= 64 for r in steps)
    # one code for everything would give perplexity 1 and usage 1/64
    assert final["test_perplexity"] > 16 and final["test_code_usage"] > 0.5, final
    assert final["test_psnr"] > first["test_psnr"] + 3, (first, final)  # it learned to reconstruct
    assert (tmp_path / "samples" / "epoch_004_reconstructions.png").is_file()


@pytest.mark.slow  # the tuned preset's whole training (about a minute on 2 cores)
def test_cvae_on_digits_draws_the_requested_class(tmp_path, train, digit_classifier):
    from genlab.core.checkpoint import load_checkpoint

    train(tmp_path, "model=cvae")  # the tuned digits preset: 60 epochs, about 1.5 minutes on 2 cores
    state = load_checkpoint(tmp_path)
    model = CVAE(OmegaConf.create(state["config"]).model, DataSpec("digits", 1, 32, 10))
    model.load_state_dict(state["model"])
    labels = torch.arange(1000) % 10
    samples = model.sample(1000, labels=labels, generator=torch.Generator().manual_seed(1))
    accuracy = (digit_classifier(samples) == labels.numpy()).mean()
    print(f"cvae: {accuracy:.3f} of samples classified as the requested digit")
    assert accuracy >= 0.8
    latents = sorted((tmp_path / "samples").glob("epoch_*_latents.png"))
    assert latents and latents[-1].name == "epoch_060_latents.png"


# ---- two image sources as one labelled set, and `genlab reconstruct` ---------------------------------
def _digit_folders(root, classes=(0, 1), per_class=60, size=24, rgb=False):
    """scikit-learn digits of `classes` written as PNG files, one folder per class."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    folders = []
    for k in classes:
        folder = root / f"digit_{k}"
        folder.mkdir(parents=True)
        for i, image in enumerate(digits.images[digits.target == k][:per_class]):
            pixels = Image.fromarray(np.round(image * 255 / 16).astype(np.uint8)).resize((size, size))
            (pixels.convert("RGB") if rgb else pixels).save(folder / f"{i:03d}.png")
        folders.append(folder)
    return folders


def test_image_folders_joins_folders_as_classes_with_a_held_out_split(tmp_path):
    from genlab.data import build_data

    zeros, ones = _digit_folders(tmp_path, per_class=40)
    cfg = OmegaConf.create({"name": "image_folders", "folders": [str(zeros), str(ones)], "classes": None,
                            "size": 16, "channels": 1, "test_fraction": 0.1, "root": ".", "download": False,
                            "num_workers": 0, "limit": None})
    data = build_data(cfg, batch_size=8, seed=0, device=torch.device("cpu"))
    assert data.spec.class_names == ["digit_0", "digit_1"] and data.spec.n_classes == 2
    assert (data.spec.n_train, data.spec.n_test) == (72, 8)
    test_labels = torch.cat([b["label"] for b in data.test.ordered()])
    assert test_labels.tolist().count(0) == test_labels.tolist().count(1) == 4  # each folder keeps its share
    images, labels = torch.cat([b["image"] for b in data.train.ordered()]), torch.cat([b["label"] for b in data.train.ordered()])
    assert images.shape == (72, 1, 16, 16) and labels.tolist() == [0] * 36 + [1] * 36
    # subsets are spread over the folders, not the first folder only: the fixed batch shows both classes
    assert data.fixed_batch(4)["label"].tolist() == [0, 0, 1, 1]
    assert torch.cat([b["label"] for b in data.train.ordered(limit=6)]).tolist() == [0, 0, 0, 1, 1, 1]
    for bad, message in (([str(zeros)], "at least two folders"), ([str(zeros), str(tmp_path / "none")], "not a folder")):
        with pytest.raises(GenlabError, match=message):
            build_data(OmegaConf.merge(cfg, {"folders": bad}), 8, 0, torch.device("cpu"))


def test_cvae_two_domains_preset_trains_on_two_folders_and_draws_each_class(tmp_path):
    from tests.conftest import run_cli

    zeros, ones = _digit_folders(tmp_path / "data", rgb=True)
    out = run_cli(["train", "experiment=cvae_two_domains", f"data.folders=[{zeros},{ones}]", "data.size=16",
                   "train.epochs=2", "train.batch_size=16", "data.num_workers=0", "hydra.run.dir=run"], tmp_path)
    assert out.returncode == 0, out.stderr
    run = tmp_path / "run"
    assert (run / "samples" / "epoch_002_classes.png").is_file() and (run / "samples" / "epoch_002_latents.png").is_file()
    from genlab.core.records import read_metrics

    evaluation = [r for r in read_metrics(run / "metrics.jsonl") if "test_nelbo" in r]
    assert len(evaluation) == 3 and all(math.isfinite(r["test_bits_per_dim"]) for r in evaluation)
    assert evaluation[-1]["test_nelbo"] < evaluation[0]["test_nelbo"]


def test_reconstruct_writes_input_and_reconstruction_pairs(tmp_path, train):
    from PIL import Image

    from tests.conftest import run_cli
    from tests.hostile import run_here  # main() in this process, after one real `genlab reconstruct`

    common = ["data.limit=64", "train.batch_size=32", "train.steps=4", "train.n_samples=8"]
    train(tmp_path / "vq", "model=vqvae", "model.width=16", "model.res_width=8", "model.codebook_size=16", *common)
    train(tmp_path / "vae", "model=vae", *common)
    (folder,) = _digit_folders(tmp_path / "faces", classes=(3,), per_class=5, size=40, rgb=True)

    out = run_cli(["reconstruct", "vq", "vae", "-n", "6"], tmp_path)  # another run's samples
    assert out.returncode == 0, out.stderr
    png = tmp_path / "vq" / "reconstructions" / "vae_samples.png"
    assert png.is_file() and "6 images (vae_samples)" in out.stdout and "PSNR" in out.stdout
    # 6 images in rows of 6: one input row and one reconstruction row of 32x32 images with 2-pixel padding
    assert Image.open(png).height == 2 + 2 * 34

    out = run_here(["reconstruct", "vae", str(folder), str(folder / "000.png"), "-n", "9", "-o", "pairs.png"],
                  tmp_path)  # RGB 40x40 files through a grey 32x32 model: converted at the border
    assert out.returncode == 0, out.stderr
    assert "6 images" in out.stdout and (tmp_path / "pairs.png").is_file()

    for args, message in (
        (["vq", "vq"], "cannot sample"),
        (["vae", "missing.png"], "does not exist"),
        (["vae", str(folder), "-o", "pairs.jpg"], "must name a .png"),
        (["nowhere", str(folder)], "no run folder or checkpoint"),
    ):
        out = run_here(["reconstruct", *args], tmp_path)
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)


def test_reconstruct_refuses_a_model_that_does_not_reconstruct(tmp_path, train):
    from tests.hostile import run_here

    train(tmp_path / "gan", "data.limit=64", "train.batch_size=32", "train.steps=1", "model.ngf=8", "model.ndf=8")
    out = run_here(["reconstruct", "gan", "gan"], tmp_path)
    assert out.returncode == 2 and "does not reconstruct images" in out.stderr
