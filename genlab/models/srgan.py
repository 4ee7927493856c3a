"""Super-resolution (Ledig et al. 2017): SRResNet (pixel MSE) and SRGAN (content + 1e-3 x adversarial), 4x.

Seed 000, question 4. SRResNet: a 9x9 convolution and PReLU, 16 residual blocks (conv-BN-PReLU-conv-BN, plus
the input), a convolution and BN with a skip over all the blocks, log2(scale) stages of conv 64 -> 256,
pixel-shuffle x2 and PReLU, and a 9x9 convolution to the image: 1,549,462 parameters at 4x for RGB. SRGAN
keeps that generator (started from an SRResNet run with train.init_from) and adds the paper's discriminator:
eight 3x3 convolutions, 64 -> 512 features, stride 2 where the features stay and stride 1 where they double
(k3n64s1, k3n64s2, k3n128s1, k3n128s2, ... k3n512s2), BN from the second, LeakyReLU 0.2, dense 1024, dense 1.
Content loss: pixel MSE, or the MSE of VGG19 feature maps (vgg22: relu2_2, vgg54: relu5_4) divided by 12.75 as
the paper does; VGG19's ImageNet weights come from torchvision's file in the torch cache and are never saved.

Also here: the `superres` metric, the published protocol (Y channel of ITU-R BT.601 rounded to 8 bits, a
border of `scale` pixels removed, per-image PSNR and SSIM averaged), on the run's held-out images and on the
benchmark sets (Set5, Set14, BSD100), each beside MATLAB-bicubic up-scaling of the same LR images.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from genlab.core import weights
from genlab.core.config import check_choice, check_float, check_int
from genlab.core.errors import GenlabError
from genlab.core.figures import family_figures, visual_figures
from genlab.core.imaging import psnr_of_mse, ssim
from genlab.core.metrics import MetricUnavailable, metric
from genlab.core.registry import DATASETS, MODELS
from genlab.data.bicubic import upscale_bicubic
from genlab.data.superres import BENCHMARK_HOW, MissingBenchmark, benchmark_root, benchmark_source
from genlab.models.base import GenerativeModel
from genlab.models.capabilities import Upscales

# ---- the generator -------------------------------------------------------------------------------------------


class ResidualBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, 1, 1), nn.BatchNorm2d(width), nn.PReLU(),
                                  nn.Conv2d(width, width, 3, 1, 1), nn.BatchNorm2d(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def upscale_stages(scale: int) -> int:
    stages = round(math.log2(scale)) if scale > 0 else 0
    if scale < 2 or 2**stages != scale:
        raise GenlabError(f"SRResNet up-samples with x2 pixel-shuffle stages, so it makes scales 2, 4 or 8, not "
                          f"data.scale={scale}: pass data.scale=4 (the paper's)")
    return stages


class SRResNetGenerator(nn.Module):
    def __init__(self, channels: int, scale: int, n_blocks: int = 16, width: int = 64, global_skip: bool = False):
        super().__init__()
        self.scale, self.n_blocks, self.global_skip = scale, n_blocks, global_skip
        stages = upscale_stages(scale)
        self.head = nn.Sequential(nn.Conv2d(channels, width, 9, 1, 4), nn.PReLU())
        self.blocks = nn.Sequential(*[ResidualBlock(width) for _ in range(n_blocks)])
        self.fuse = nn.Sequential(nn.Conv2d(width, width, 3, 1, 1), nn.BatchNorm2d(width))
        self.upsample = nn.Sequential(*[nn.Sequential(nn.Conv2d(width, 4 * width, 3, 1, 1), nn.PixelShuffle(2),
                                                      nn.PReLU()) for _ in range(stages)])
        self.tail = nn.Conv2d(width, channels, 9, 1, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        out = self.tail(self.upsample(h + self.fuse(self.blocks(h))))
        if self.global_skip:  # BasicSR's MSRResNet: the network learns only what bilinear up-scaling misses
            out = out + F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return out

    @property
    def receptive_radius(self) -> int:
        """How far (in LR pixels) an output pixel sees: 4 (9x9) + 2 per block + 1 (fuse) + 1/2^i per up-sampling
        convolution + 4/scale (the last 9x9), and one more per pixel-shuffle for its rounding."""
        stages = upscale_stages(self.scale)
        reach = 4 + 2 * self.n_blocks + 1 + sum(0.5**i for i in range(stages)) + 4 / self.scale
        return math.ceil(reach) + stages


# ---- the discriminator ----------------------------------------------------------------------------------------


class SRGANDiscriminator(nn.Module):
    """k3n64s1, k3n64s2, k3n128s1, k3n128s2, k3n256s1, k3n256s2, k3n512s1, k3n512s2 (BN from the second,
    LeakyReLU 0.2), then dense 1024, LeakyReLU, dense 1 (a logit: the loss applies the sigmoid)."""

    def __init__(self, channels: int, size: int, width: int = 64):
        super().__init__()
        layers, c_in = [], channels
        for i in range(8):
            c_out = width * 2 ** (i // 2)
            layers.append(nn.Conv2d(c_in, c_out, 3, 1 + i % 2, 1))
            if i > 0:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2))
            c_in = c_out
        side = size // 16
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c_in * side * side, 1024), nn.LeakyReLU(0.2),
                                  nn.Linear(1024, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# ---- the VGG19 loss network -------------------------------------------------------------------------------------

VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG19_URL = f"https://download.pytorch.org/models/{VGG19_FILE}"
VGG19_LAYOUT = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512]
VGG_CUTS = {"vgg22": 9, "vgg54": 36}  # torchvision's vgg19.features[:cut] ends at relu2_2 / relu5_4


VGG19 = weights.register(weights.WeightsFile(
    "vgg19", VGG19_FILE, VGG19_URL, "srgan: model.content=vgg22|vgg54 (the perceptual loss)", 548,
    "VGG19's ImageNet weights"))


def vgg19_weights() -> Path:
    """torchvision's VGG19 ImageNet weights in the torch cache (or GENLAB_VGG19_WEIGHTS), else one line."""
    path = VGG19.find()
    if path is None:
        raise GenlabError(VGG19.missing("model.content", "or pass model.content=mse"))
    return path


class VGGFeatures(nn.Module):
    """VGG19's convolutional stack (torchvision's layer numbering) up to `cut`, on [-1, 1] images: scaled to
    [0, 1] and normalised with ImageNet's mean and deviation, greyscale repeated to RGB."""

    def __init__(self, cut: int):
        super().__init__()
        layers, c_in = [], 3
        for value in VGG19_LAYOUT:
            if value == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, value, 3, 1, 1), nn.ReLU()]
                c_in = value
        self.features = nn.Sequential(*layers[:cut])
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    @classmethod
    def from_file(cls, path: Path, cut: int) -> VGGFeatures:
        net = cls(cut)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001  (a truncated download, another format: one line, whatever the unpickler says)
            raise GenlabError(f"{path} is not torchvision's VGG19 weights file ({str(err).splitlines()[0][:120]}); "
                              f"download {VGG19_URL} again") from None
        wanted = {k: v for k, v in state.items() if k.startswith("features.")} if isinstance(state, dict) else {}
        try:
            net.load_state_dict({k: v for k, v in wanted.items() if int(k.split(".")[1]) < cut}, strict=False)
            missing = [k for k in net.state_dict() if k.startswith("features.") and k not in wanted]
            if missing:
                raise RuntimeError(f"no {missing[0]}")
        except (RuntimeError, ValueError) as err:
            raise GenlabError(f"{path} is not torchvision's VGG19 weights file ({str(err).splitlines()[0][:120]}); "
                              f"download {VGG19_URL} again") from None
        return net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.expand(-1, 3, -1, -1) + 1) / 2
        return self.features((x - self.mean) / self.std)


# ---- the models ------------------------------------------------------------------------------------------------

SR_CURVES = {
    "generator loss: total and content": ["g_loss", "content"],
    "adversarial term (before its weight)": ["adversarial"],
    "discriminator: real and fake terms": ["D_real", "D_fake", "d_loss"],
    "held-out PSNR-Y (dB)": ["test_psnr_y", "test_psnr_y_bicubic"],
    "gradient norms": ["g_grad_norm", "d_grad_norm"],
}


def check_sr(cfg) -> None:
    check_int(cfg, "model.n_blocks", minimum=1)
    check_int(cfg, "model.width", minimum=1)
    upscale_stages(check_int(cfg, "data.scale", minimum=1))


@MODELS.register("srresnet")
class SRResNet(GenerativeModel, Upscales):
    """SRResNet: the generator alone, trained with pixel MSE (the PSNR-oriented model)."""

    accepts = ("superres",)
    translates = ("lr", "hr")
    replaces_metrics = ("translation", "likelihood")  # `superres` scores whole images the published way instead
    default_optim: ClassVar[dict] = {"lr": 1e-4, "betas": (0.9, 0.999)}
    ema_networks = ("g",)
    objective = ("test_psnr_y", "max")
    curve_groups = SR_CURVES

    @staticmethod
    def check_config(cfg) -> None:
        check_sr(cfg)

    def __init__(self, cfg, spec, loss=None):
        super().__init__()
        channels, lr_side = spec.shape("lr")[0], spec.shape("lr")[-1]
        self.scale = spec.shape("hr")[-1] // lr_side
        self.generator = SRResNetGenerator(channels, self.scale, int(cfg.n_blocks), int(cfg.width),
                                           bool(cfg.get("global_skip", False)))
        self.output_scale = self.scale
        self.receptive_radius = self.generator.receptive_radius

    def networks(self):
        return {"g": self.generator}

    def training_step(self, batch, step):
        with self.autocast():
            loss = F.mse_loss(self.generator(batch["lr"]), batch["hr"])
        return {"g_loss": loss.detach(), "g_grad_norm": self.update(loss, "g")}

    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str = "AtoB") -> torch.Tensor:
        """The generator's HR image for LR input x ([-1, 1]), BatchNorm with its running statistics."""
        if direction != "AtoB":
            raise GenlabError("a super-resolution run only up-scales (AtoB)")
        with self.evaluating():
            return self.generator(x.to(self.device)).float()

    @torch.no_grad()
    def visuals(self, batch):
        """Rows of LR (nearest-upscaled), bicubic, SR and HR for up to 5 fixed held-out crops."""
        n = min(5, batch.size)
        lr, hr = batch["lr"][:n], batch["hr"][:n]
        nearest = F.interpolate(lr, scale_factor=self.scale, mode="nearest")
        bicubic = upscale_bicubic(lr, self.scale).float().clamp(-1, 1)
        return {"side_by_side": torch.stack([nearest, bicubic, self.translate(lr).clamp(-1, 1), hr], dim=1)}

    @torch.no_grad()
    def evaluate(self, batches):
        """Y-channel PSNR (published protocol) on the held-out centre crops, and the bicubic baseline's."""
        model, base = [], []
        for batch in batches:
            out = self.translate(batch["lr"]).cpu()
            hr, lr = batch["hr"].cpu(), batch["lr"].cpu()
            model.append(psnr_y(out, hr, self.scale))
            base.append(psnr_y(upscale_bicubic(lr, self.scale).float(), hr, self.scale))
        if not model:
            return {}
        return {"test_psnr_y": float(torch.cat(model).mean()), "test_psnr_y_bicubic": float(torch.cat(base).mean())}

    def init_weights(self, source_model: str, state: dict) -> str | None:
        """From an srresnet or srgan run: its generator (SRGAN starts from an SRResNet run, as the paper)."""
        if source_model not in ("srresnet", "srgan"):
            return None
        weights = {k.removeprefix("generator."): v for k, v in state.items() if k.startswith("generator.")}
        try:
            self.generator.load_state_dict(weights)
        except RuntimeError as err:
            raise GenlabError(f"train.init_from: the {source_model} generator does not fit this one "
                              f"({str(err).splitlines()[0][:160]}): use the same model.n_blocks, model.width and "
                              "data.scale") from None
        return f"generator from the {source_model} run"


@MODELS.register("srgan")
class SRGAN(SRResNet):
    """SRGAN: SRResNet's generator against the paper's discriminator, content + adversarial_weight x adversarial."""

    adversarial = True

    default_schedule: ClassVar[dict] = {"name": "step", "milestone_steps": [100_000], "gamma": 0.1}  # 1e-4, then 1e-5
    objective = (None, None)  # its claim is perceptual: no scalar to sweep for

    @staticmethod
    def check_config(cfg) -> None:
        check_sr(cfg)
        check_int(cfg, "model.ndf", minimum=1)
        content = check_choice(cfg, "model.content", ("mse", "vgg22", "vgg54"))
        check_float(cfg, "model.adversarial_weight", minimum=0.0)
        check_float(cfg, "model.vgg_scale", positive=True)
        size = int(cfg.data.size)
        if size % 16 or size < 16:
            raise GenlabError(f"SRGAN's discriminator halves the HR crop four times down to its dense layer: "
                              f"data.size={size} must be a multiple of 16 (96, the paper's)")
        if cfg.train.get("init_from") is None and cfg.train.get("resume") is None and not cfg.model.from_scratch:
            raise GenlabError("SRGAN starts from a trained SRResNet, as the paper does: pass "
                              "train.init_from=outputs/srresnet_<data>/RUN (train one with model=srresnet), or "
                              "model.from_scratch=true")
        if content != "mse":
            vgg19_weights()

    def __init__(self, cfg, spec, loss):
        super().__init__(cfg, spec)
        self.loss = loss
        self.content = str(cfg.content)
        self.adversarial_weight = float(cfg.adversarial_weight)
        self.vgg_scale = float(cfg.vgg_scale)
        hr = spec.shape("hr")
        self.discriminator = SRGANDiscriminator(hr[0], hr[-1], int(cfg.ndf))
        if self.content != "mse":  # load it now: a bad weights file is one line before training
            self.vgg()

    def networks(self):
        return {"g": self.generator, "d": self.discriminator}

    def vgg(self) -> VGGFeatures:
        return self.loss_network(self.content, lambda: VGGFeatures.from_file(vgg19_weights(), VGG_CUTS[self.content]))

    def content_loss(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        if self.content == "mse":
            return F.mse_loss(sr, hr)
        vgg = self.vgg()
        return F.mse_loss(vgg(sr) / self.vgg_scale, vgg(hr).detach() / self.vgg_scale)

    def training_step(self, batch, step):
        """D on HR crops and on G(LR); then, every loss.n_critic steps, G on content + weight x adversarial."""
        lr, hr = batch["lr"], batch["hr"]
        with self.autocast():
            sr = self.generator(lr)
            d_real, d_fake = self.loss.d_terms(self.discriminator(hr), self.discriminator(sr.detach()))
            d_loss = d_real + d_fake
            penalty = self.loss.penalty(self.discriminator, hr, sr)
        d_total = d_loss + penalty if penalty is not None else d_loss
        out = {"d_loss": d_loss.detach(), "D_real": d_real.detach(), "D_fake": d_fake.detach(),
               "d_grad_norm": self.update(d_total, "d")}
        self.loss.after_d_step(self.discriminator)
        if penalty is not None:
            out["gradient_penalty"] = penalty.detach()
        if (step + 1) % self.loss.n_critic == 0:
            with self.frozen(self.discriminator), self.autocast():
                adversarial = self.loss.g_loss(self.discriminator(sr))
                content = self.content_loss(sr, hr)
                g_loss = content + self.adversarial_weight * adversarial
            out.update(g_loss=g_loss.detach(), content=content.detach(), adversarial=adversarial.detach(),
                       g_grad_norm=self.update(g_loss, "g"))
        return out


family_figures("srresnet", "srgan")(visual_figures(
    ("side_by_side", "fixed held-out crops: LR (nearest), bicubic, SR, HR")))


# ---- the published protocol -------------------------------------------------------------------------------------

def to_levels(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images -> float64 8-bit levels 0..255, rounded: what a saved PNG holds."""
    return images.double().clamp(-1, 1).add(1).mul(127.5).round()


def y_channel(levels: torch.Tensor) -> torch.Tensor:
    """RGB levels [N, 3, H, W] (0..255) -> Y of ITU-R BT.601 rounded to 8 bits ([N, 1, H, W], 16..235), as
    MATLAB's rgb2ycbcr gives for uint8 images; one channel is taken as Y already."""
    if levels.shape[1] == 1:
        return levels.double()
    r, g, b = levels.double().unbind(1)
    return (16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255).round().unsqueeze(1)


def shave(images: torch.Tensor, border: int) -> torch.Tensor:
    return images[..., border:-border, border:-border] if border > 0 else images


def _psnr_levels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mse = (a - b).pow(2).flatten(1).mean(1)
    return psnr_of_mse(mse, peak=255.0)


def psnr_y(output: torch.Tensor, target: torch.Tensor, scale: int) -> torch.Tensor:
    """Per-image PSNR (dB) on the 8-bit Y channel with `scale` border pixels removed ([-1, 1] inputs)."""
    return _psnr_levels(shave(y_channel(to_levels(output)), scale), shave(y_channel(to_levels(target)), scale))


def ssim_y(output: torch.Tensor, target: torch.Tensor, scale: int) -> torch.Tensor:
    """Per-image SSIM (Wang et al.: 11x11 Gaussian, sigma 1.5) on the same Y channel and crop."""
    a = shave(y_channel(to_levels(output)), scale) / 255
    b = shave(y_channel(to_levels(target)), scale) / 255
    return ssim(a, b).double()


def psnr_rgb(output: torch.Tensor, target: torch.Tensor, scale: int) -> torch.Tensor:
    return _psnr_levels(shave(to_levels(output), scale), shave(to_levels(target), scale))


PROTOCOL = ("Y of ITU-R BT.601 (MATLAB rgb2ycbcr on 8-bit images, rounded), a border of scale pixels removed, "
            "outputs rounded to 8 bits first, PSNR and SSIM (Wang et al. 2004: 11x11 Gaussian, sigma 1.5) per image, "
            "averaged over the images; LR made and bicubic up-scaled by MATLAB's imresize")


def score_set(ctx, label: str, pairs) -> dict:
    """The model and the bicubic baseline on one set of whole images, as table rows."""
    rows = {"psnr_y": [], "ssim_y": [], "psnr_rgb": []}
    base = {key: [] for key in rows}
    scale, sizes = None, set()
    for lr, out, hr in pairs:
        scale = hr.shape[-1] // lr.shape[-1]
        bicubic = upscale_bicubic(lr.double(), scale)
        for store, image in ((rows, out), (base, bicubic)):
            store["psnr_y"].append(psnr_y(image, hr, scale))
            store["ssim_y"].append(ssim_y(image, hr, scale))
            store["psnr_rgb"].append(psnr_rgb(image, hr, scale))
        sizes.add(tuple(hr.shape[-2:]))
    if not rows["psnr_y"]:
        raise MetricUnavailable(f"{label} holds no images")
    n = len(rows["psnr_y"])
    names = {"psnr_y": "PSNR-Y (dB)", "ssim_y": "SSIM-Y", "psnr_rgb": "PSNR-RGB (dB)"}
    out = {}
    for column, store in (("model", rows), ("bicubic", base)):
        for key, parts in store.items():
            protocol = {"table": f"{label} ({n} images, x{scale})", "row": names[key], "column": column,
                        "n_images": n, "scale": scale, "protocol": PROTOCOL,
                        "sizes": sorted(sizes)[:3] if len(sizes) <= 3 else f"{len(sizes)} different sizes"}
            name = f"{label}_{key}" if column == "model" else f"{label}_bicubic_{key}"
            out[name] = {"value": float(torch.cat(parts).mean()), "protocol": protocol}
    return out


@metric("superres", kinds=("superres",), when=lambda ctx: None if getattr(ctx.run.model, "translates", None) ==
        ("lr", "hr") else "the model does not up-scale lr into hr")
def superres(ctx) -> dict:
    """PSNR/SSIM on the Y channel, border removed, beside bicubic: held-out images and Set5/Set14/BSD100."""

    data_cfg = ctx.data_config  # the places of genlab's defaults or of --data, never of the checkpoint
    # the held-out images alone where the dataset can give them (DIV2K's 800 training photos need not be read)
    dataset = DATASETS[data_cfg.name] if data_cfg.name in DATASETS else None  # noqa: SIM401  (a Registry has no .get)
    held = dataset.held_out(data_cfg, ctx.device) if hasattr(dataset, "held_out") else None
    if held is not None:
        results = score_set(ctx, "heldout", ctx.pairs(source=held))
    else:
        results = score_set(ctx, "heldout" if ctx.data.test is not None else "train", ctx.pairs())
    missing = []
    for name in list(data_cfg.get("benchmarks") or []):
        try:
            source = benchmark_source(data_cfg, str(name), ctx.device)
        except MissingBenchmark:
            missing.append(str(name))
            continue
        results.update(score_set(ctx, str(name), ctx.pairs(source=source)))
    if missing:
        ctx.log(f"superres: {', '.join(missing)} not found under {benchmark_root(data_cfg)} (data.benchmarks); "
                f"{BENCHMARK_HOW}")
    return results
