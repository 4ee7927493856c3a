"""Super-resolution (issue 12): MATLAB's bicubic, the published Y-channel protocol, SRResNet and SRGAN, tiles,
the VGG loss network from torchvision's weights file, `genlab upscale`, and the data's mistakes."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from genlab.core.errors import GenlabError
from tests.conftest import run_cli
from tests.hostile import run_here  # the same main() in this process

CPU = torch.device("cpu")
TINY = ["model=srresnet", "model.n_blocks=1", "model.width=8", "data=sr_folder", "data.train=train",
        "data.test=held", "data.size=32", "data.repeat=4", "train.batch_size=4", "train.progress=none",
        "train.n_samples=2", "eval.tile=12"]


def _pattern(c=3, h=16, w=12):
    c_, i, j = torch.meshgrid(torch.arange(c), torch.arange(h), torch.arange(w), indexing="ij")
    return ((i * 37 + j * 11 + c_ * 53 + i * j * 7) % 256).double()


# Computed with BasicSR 1.4.2's basicsr/utils/matlab_functions.py imresize (a port of MATLAB's imresize that its
# authors checked against MATLAB) on _pattern(): the reference our own implementation must agree with.
BASICSR_DOWN = [82.58, 119.26, 136.42, 129.09, 137.03, 130.03, 125.92, 134.57, 132.15, 118.96, 136.93, 122.06,
                122.62, 137.27, 128.54, 126.66, 119.66, 130.35, 137.9, 141.16, 128.31, 122.57, 119.32, 118.64,
                156.46, 142.65, 139.83, 128.21, 123.11, 123.3, 115.94, 111.85, 117.68, 117.44, 132.85, 119.67]
BASICSR_UP_ROW0 = [-5.53, -4.89, -3.55, -1.26, 1.58, 4.5, 7.12, 9.66, 12.21, 14.75, 17.37, 20.29, 23.13, 25.42,
                   26.76, 27.4]
BASICSR_UP_DIAGONAL = [-5.53, -2.6, 3.74, 15.12, 30.25, 46.95, 62.86, 79.23, 96.48, 114.61, 134.14, 157.07,
                       180.48, 200.1, 211.94, 217.64]


def test_bicubic_is_matlab_imresize():
    from genlab.data.bicubic import downscale, imresize, resize_matrix, upscale_bicubic

    x = _pattern()
    down = imresize(x, (4, 3))
    assert down.flatten().tolist() == pytest.approx(BASICSR_DOWN, abs=0.01)
    up = upscale_bicubic(x[:1, :4, :4], 4)
    assert up[0, 0].tolist() == pytest.approx(BASICSR_UP_ROW0, abs=0.01)
    assert up[0].diagonal().tolist() == pytest.approx(BASICSR_UP_DIAGONAL, abs=0.01)
    # the taps of every output pixel sum to 1 (a flat image stays flat), shrinking or growing, odd sizes too
    for n_in, n_out in ((96, 24), (7, 28), (13, 3)):
        assert torch.allclose(resize_matrix(n_in, n_out).sum(1), torch.ones(n_out, dtype=torch.float64))
    # torch's bicubic (a = -0.75, clamped border) is another resizer: the two must differ on a textured image
    ours = downscale(x.to(torch.uint8), 4, "matlab")
    assert torch.equal(ours, imresize(x, (4, 3)).round().clamp(0, 255).to(torch.uint8))
    assert not torch.equal(ours, downscale(x.to(torch.uint8), 4, "torch"))


def test_y_channel_is_bt601_rounded_to_8_bits():
    from skimage.color import rgb2ycbcr

    from genlab.models.srgan import y_channel

    # the standard's corners: black 16, white 235, pure red 81, green 145, blue 41
    corners = torch.tensor([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]).double()
    assert y_channel(corners.T.reshape(1, 3, 1, 5)).flatten().tolist() == [16, 235, 81, 145, 41]
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    theirs = np.round(rgb2ycbcr(rgb)[..., 0])
    ours = y_channel(torch.from_numpy(rgb).permute(2, 0, 1)[None].double())[0, 0].numpy()
    assert np.array_equal(ours, theirs)


def test_y_psnr_and_ssim_match_scikit_image_on_the_same_y_and_crop():
    from skimage.color import rgb2ycbcr
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from genlab.models.srgan import psnr_rgb, psnr_y, ssim_y

    rng = np.random.default_rng(1)
    smooth = np.kron(rng.integers(0, 256, (6, 8, 3)), np.ones((8, 8, 1)))
    target = smooth.astype(np.uint8)
    output = np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).round().astype(np.uint8)
    to_unit = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].double() / 127.5 - 1
    scale = 4
    y = lambda a: np.round(rgb2ycbcr(a)[..., 0])[scale:-scale, scale:-scale]
    assert float(psnr_y(to_unit(output), to_unit(target), scale)) == pytest.approx(
        peak_signal_noise_ratio(y(target), y(output), data_range=255), abs=1e-6)
    assert float(ssim_y(to_unit(output), to_unit(target), scale)) == pytest.approx(
        structural_similarity(y(target), y(output), gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                              data_range=255), abs=1e-5)
    crop = (slice(scale, -scale), slice(scale, -scale))
    assert float(psnr_rgb(to_unit(output), to_unit(target), scale)) == pytest.approx(
        peak_signal_noise_ratio(target[crop], output[crop], data_range=255), abs=1e-6)
    # an exact output stays finite
    assert float(psnr_y(to_unit(target), to_unit(target), scale)) == pytest.approx(100.0)


def test_srresnet_and_the_discriminator_are_the_papers():
    from genlab.models.srgan import SRGANDiscriminator, SRResNetGenerator

    generator = SRResNetGenerator(3, 4)
    count = sum(p.numel() for p in generator.parameters())
    assert abs(count - 1.55e6) / 1.55e6 < 0.02 and count == 1_549_462
    assert generator(torch.zeros(1, 3, 6, 5)).shape == (1, 3, 24, 20)
    assert sum(isinstance(m, torch.nn.PixelShuffle) for m in generator.modules()) == 2
    assert SRResNetGenerator(3, 8, n_blocks=1, width=4)(torch.zeros(1, 3, 3, 3)).shape == (1, 3, 24, 24)
    d = SRGANDiscriminator(3, 96)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.stride[0]) for c in convs] == [(64, 1), (64, 2), (128, 1), (128, 2), (256, 1),
                                                              (256, 2), (512, 1), (512, 2)]
    dense = [m for m in d.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in dense] == [(512 * 6 * 6, 1024), (1024, 1)]
    assert d(torch.zeros(2, 3, 96, 96)).shape == (2, 1)


def test_tiles_give_the_untiled_output():
    from genlab.core import tiles
    from genlab.models.srgan import SRResNetGenerator

    torch.manual_seed(0)
    net = SRResNetGenerator(3, 4, n_blocks=2, width=8)
    for module in net.modules():  # BatchNorm with running statistics that are not the identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    net.eval()
    x = torch.rand(1, 3, 41, 53) * 2 - 1
    with torch.no_grad():
        whole = net(x)
        exact = tiles.tiled(net, x, 4, tile=16, overlap=net.receptive_radius)
        short = tiles.tiled(net, x, 4, tile=16, overlap=2)
    assert exact.shape == whole.shape == (1, 3, 164, 212)
    assert (exact - whole).abs().max() < 1e-5
    assert (short - whole).abs().max() > 1e-3  # too little context shows at the seams: the test can fail


def _write_images(folder: Path, sizes, seed=0, mode="RGB"):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, (h, w) in enumerate(sizes):
        base = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3)).astype(np.float64)
        image = np.kron(base, np.ones((4, 4, 1)))[:h, :w] + rng.normal(0, 6, (h, w, 3))
        array = np.clip(image, 0, 255).astype(np.uint8)
        Image.fromarray(array).convert(mode).save(folder / f"{i:02d}.png")


@pytest.fixture
def sr_root(tmp_path, monkeypatch):
    _write_images(tmp_path / "train", [(48, 40), (40, 56), (64, 64)])
    _write_images(tmp_path / "held", [(44, 36), (37, 50)], seed=1)
    monkeypatch.setenv("GENLAB_DATA", str(tmp_path))
    return tmp_path


def test_hr_images_of_every_mode_become_rgb_and_mistakes_are_one_line(sr_root, compose):
    from PIL import Image

    from genlab.app.checks import check_command_line
    from genlab.data import build_data
    from genlab.data.superres import read_hr

    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0], rgba[:4, ..., 3] = 200, 255  # the top half red and opaque, the bottom transparent
    Image.fromarray(rgba, "RGBA").save(sr_root / "rgba.png")
    pixels = read_hr(sr_root / "rgba.png", 3)
    assert pixels[:, 0, 0].tolist() == [200, 0, 0] and pixels[:, 7, 0].tolist() == [255, 255, 255]
    Image.fromarray(np.full((8, 8), 90, np.uint8)).save(sr_root / "grey.png")
    assert read_hr(sr_root / "grey.png", 3)[:, 0, 0].tolist() == [90, 90, 90]
    _write_images(sr_root / "grey_train", [(40, 40)] * 2, mode="L")
    data = build_data(compose(*TINY, "data.train=grey_train").data, 4, 0, CPU)
    batch = next(data.train.epoch(0))
    assert batch["hr"].shape == (4, 3, 32, 32) and batch["lr"].shape == (4, 3, 8, 8)
    assert torch.equal(batch["hr"][:, 0], batch["hr"][:, 1])  # greyscale replicated
    assert data.test.n_images == 2 and [name for name, _ in data.test.whole()] == ["00.png", "01.png"]
    _, whole = next(iter(data.test.whole()))
    assert whole["hr"].shape == (1, 3, 44, 36) and whole["lr"].shape == (1, 3, 11, 9)  # cut to the scale

    for overrides, expected in [
        (["data.size=60"], r"00.png is 40x48, smaller than the 60-pixel HR crop \(2 such image\(s\)\)"),
        (["data.scale=3", "data.size=30"], ("SRResNet up-samples with x2 pixel-shuffle stages, so it makes scales 2, 4 "
                                           "or 8, not data.scale=3")),
        (["data.size=30"], "data.size=30 .the HR crop. is not a multiple of data.scale=4"),
        (["data.train=nowhere"], "no folder .*nowhere .the HR training images."),
        (["data.resize=pil"], "data.resize must be matlab or torch"),
        (["model=srgan", "model.content=mse"], "SRGAN starts from a trained SRResNet"),
        (["eval.tile=0"], r"eval.tile must be a whole number of pixels \(1 or more; null = whole images\)"),
    ]:
        with pytest.raises(GenlabError, match=expected):
            check_command_line([*TINY, *overrides])
            build_data(compose(*TINY, *overrides).data, 4, 0, CPU)
    assert sorted(p.name for p in sr_root.iterdir()) == ["grey.png", "grey_train", "held", "rgba.png", "train"]


def _vgg_file(path: Path) -> dict:
    """A weights file in torchvision's VGG19 format (its features' layer names and shapes), random weights."""
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    features = make_layers(cfgs["E"])
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.6.weight"] = torch.zeros(2, 2)  # the real file's classifier: read past, never used
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return features


def test_the_vgg_loss_network_loads_torchvisions_file_and_is_never_saved(sr_root, train, monkeypatch):
    from genlab.models.srgan import VGGFeatures, vgg19_weights
    from genlab.train.runs import load_run

    monkeypatch.setenv("TORCH_HOME", str(sr_root / "torch"))
    with pytest.raises(GenlabError, match="model.content needs VGG19's ImageNet weights \\(vgg19-dcbb9e9d.pth\\), "
                                          "which is not on this machine .*"
                                          "download https://download.pytorch.org/models/vgg19-dcbb9e9d.pth and run "
                                          "`genlab weights add FILE`.*or pass model.content=mse"):
        vgg19_weights()
    reference = _vgg_file(sr_root / "torch" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth")
    x = torch.rand(2, 3, 24, 24) * 2 - 1
    normalised = ((x + 1) / 2 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / \
        torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    for cut in (9, 36):
        ours = VGGFeatures.from_file(vgg19_weights(), cut)
        assert torch.allclose(ours(x), reference[:cut](normalised), atol=1e-5)

    train(sr_root / "sr", *TINY, "train.steps=2")
    scores = train(sr_root / "gan", *TINY, "model=srgan", "model.content=vgg22", "model.ndf=8",
                   f"train.init_from={sr_root / 'sr'}", "train.steps=2")
    assert np.isfinite(scores["content"]) and np.isfinite(scores["adversarial"])
    assert "generator from the srresnet run" in (sr_root / "gan" / "init_from.txt").read_text()
    state = torch.load(sr_root / "gan" / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert not [k for k in state["model"] if "vgg" in k or k.startswith("features.")]
    assert {k.split(".")[0] for k in state["model"]} == {"generator", "discriminator"}
    assert load_run(sr_root / "gan").model.translate(torch.zeros(1, 3, 5, 5)).shape == (1, 3, 20, 20)

    (sr_root / "torch" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth").write_bytes(b"truncated")
    with pytest.raises(GenlabError, match="is not torchvision's VGG19 weights file"):
        train(sr_root / "bad", *TINY, "model=srgan", "model.content=vgg54", "model.ndf=8",
              f"train.init_from={sr_root / 'sr'}", "train.steps=1")


def test_eval_prints_bicubic_and_model_per_set_and_upscale_writes_any_size(sr_root, train):
    from PIL import Image

    train(sr_root / "run", *TINY, "train.steps=3")
    _write_images(sr_root / "bench" / "Set5" / "HR", [(40, 44)], seed=2)
    out = run_cli(["eval", "run"], sr_root, env_extra={"GENLAB_SR_BENCHMARKS": str(sr_root / "bench")})
    assert out.returncode == 0, out.stderr
    assert "heldout (2 images, x4)" in out.stdout and "set5 (1 images, x4)" in out.stdout
    assert "PSNR-Y (dB)" in out.stdout and "bicubic" in out.stdout
    assert "superres: set14, bsd100 not found under" in out.stderr and "benchmark.tar" in out.stderr
    metrics = json.loads((sr_root / "run" / "metrics.json").read_text())["metrics"]
    assert {"heldout_psnr_y", "heldout_ssim_y", "heldout_psnr_rgb", "heldout_bicubic_psnr_y",
            "set5_psnr_y", "set5_bicubic_ssim_y"} <= set(metrics)
    assert "translation_psnr" not in metrics and "psnr_y" not in metrics  # replaced by the published protocol
    assert 15 < metrics["heldout_bicubic_psnr_y"]["value"] < 40

    _write_images(sr_root / "small", [(10, 7), (30, 29)], seed=3)
    one = run_cli(["upscale", "run", "small/01.png", "big.png"], sr_root)
    assert one.returncode == 0, one.stderr
    with Image.open(sr_root / "big.png") as img:
        assert img.size == (116, 120)
    whole = run_cli(["upscale", "run", "small/01.png", "whole.png", "--whole"], sr_root)
    assert whole.returncode == 0, whole.stderr
    tiled_pixels = np.asarray(Image.open(sr_root / "big.png"), dtype=np.int16)
    whole_pixels = np.asarray(Image.open(sr_root / "whole.png"), dtype=np.int16)
    assert np.abs(tiled_pixels - whole_pixels).max() <= 1  # 8-bit rounding of outputs equal within 1e-5
    folder = run_cli(["upscale", "run", "small", "big"], sr_root)
    assert folder.returncode == 0 and sorted(p.name for p in (sr_root / "big").iterdir()) == ["00.png", "01.png"]
    again = run_here(["upscale", "run", "small", "big"], sr_root)
    assert again.returncode == 2 and "already exists" in again.stderr
    wrong = run_here(["translate", "run", "small", "other"], sr_root)
    assert wrong.returncode == 2 and "which up-scales images: use `genlab upscale" in wrong.stderr


def test_an_srgan_interrupted_after_its_rate_step_resumes_exactly(sr_root, train, interrupt_at):
    from genlab.core.errors import Interrupted
    from genlab.models.srgan import SRGAN

    settings = [*TINY, "model=srgan", "model.content=mse", "model.ndf=8", "model.from_scratch=true",
                "train.epochs=4", "train.ema=0.9", "optim.schedule.milestone_steps=[4]"]
    train(sr_root / "straight", *settings)
    straight = torch.load(sr_root / "straight" / "checkpoints" / "last.pt", weights_only=True)
    assert straight["batches_per_epoch"] == 3 and straight["step"] == 12
    with interrupt_at(SRGAN, 6), pytest.raises(Interrupted):
        train(sr_root / "first", *settings)
    train(sr_root / "resumed", *settings, f"train.resume={sr_root / 'first'}")
    resumed = torch.load(sr_root / "resumed" / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.equal(straight["model"][k], resumed["model"][k]) for k in straight["model"])
    for name in straight["ema"]["shadow"]:
        assert all(torch.equal(v, resumed["ema"]["shadow"][name][k])
                   for k, v in straight["ema"]["shadow"][name].items())
    for name, opt in straight["optimizers"].items():  # 1e-4, then 1e-5 after step 4
        assert opt["param_groups"][0]["lr"] == resumed["optimizers"][name]["param_groups"][0]["lr"]
        assert opt["param_groups"][0]["lr"] == pytest.approx(1e-5)


@pytest.mark.slow
def test_the_demo_srresnet_beats_bicubic_and_srgan_starts_from_it(tmp_path, train):
    from genlab.eval.store import evaluate_run
    from genlab.train.runs import load_run

    train(tmp_path / "srresnet", "experiment=srresnet_sr_photos")
    scores = evaluate_run(load_run(tmp_path / "srresnet"), ["superres"], n=10, seed=0, device=CPU)["metrics"]
    assert scores["heldout_psnr_y"]["value"] > scores["heldout_bicubic_psnr_y"]["value"] + 0.3
    assert scores["heldout_ssim_y"]["value"] > scores["heldout_bicubic_ssim_y"]["value"]
    train(tmp_path / "srgan", "experiment=srgan_sr_photos", f"train.init_from={tmp_path / 'srresnet'}", "train.epochs=3")
    assert (tmp_path / "srgan" / "init_from.txt").is_file()
