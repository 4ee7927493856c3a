"""CycleGAN (Zhu et al. 2017): two ResNet generators G: A -> B and F: B -> A, two PatchGAN discriminators,
cycle-consistency and identity losses, and a pool of past fakes for each discriminator.

Seed 001 (horse2zebra at 128 px, apple2orange): 6 residual blocks at 128 px (9 at 256), batch 1, Adam 2e-4
beta1 0.5, lambda_cycle 10, identity weight 0.5 x lambda_cycle, a pool of 50 fakes, LSGAN loss, the rate constant
then linearly decayed to zero. The curve names are the reference code's: D_A judges G_A's outputs (domain B),
G_A is the A -> B generator's adversarial loss, cycle_A = |F(G(A)) - A|, idt_A = |G(B) - B|; the same with B.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from genlab.core.classifier import DomainClassifier, features_of, train_classifier
from genlab.core.config import check_float, check_int
from genlab.core.errors import GenlabError
from genlab.core.figures import family_figures, visual_figures
from genlab.core.imaging import frechet_distance
from genlab.core.metrics import MetricUnavailable, metric
from genlab.core.registry import MODELS
from genlab.data.base import domain_stacks
from genlab.models.base import GenerativeModel, init_dcgan_weights
from genlab.models.blocks import PatchDiscriminator, check_patch, norm2d
from genlab.models.capabilities import Translates


class ResidualBlock(nn.Module):
    def __init__(self, width: int, norm: str, bias: bool):
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3, bias=bias), norm2d(norm, width), nn.ReLU(),
            nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3, bias=bias), norm2d(norm, width))

    def forward(self, x):
        return x + self.block(x)


class ResNetGenerator(nn.Module):
    """c7s1-64, d128, d256, n_blocks x R256, u128, u64, c7s1-c_out, tanh (Johnson et al.'s network as CycleGAN
    uses it): 11.378M parameters with 9 blocks and instance norm."""

    def __init__(self, c_in: int, c_out: int, ngf: int = 64, n_blocks: int = 9, norm: str = "instance"):
        super().__init__()
        bias = norm != "batch"
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(c_in, ngf, 7, bias=bias), norm2d(norm, ngf), nn.ReLU()]
        for i in range(2):
            layers += [nn.Conv2d(ngf * 2**i, ngf * 2 ** (i + 1), 3, 2, 1, bias=bias), norm2d(norm, ngf * 2 ** (i + 1)),
                       nn.ReLU()]
        layers += [ResidualBlock(ngf * 4, norm, bias) for _ in range(n_blocks)]
        for i in range(2):
            width = ngf * 4 // 2**i
            layers += [nn.ConvTranspose2d(width, width // 2, 3, 2, 1, output_padding=1, bias=bias),
                       norm2d(norm, width // 2), nn.ReLU()]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, c_out, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class ImagePool:
    """Shrivastava et al.'s history of generated images: until `size` fakes are stored each one passes through
    and is kept; then each fake is, with probability 0.5, swapped for a random stored one (which it replaces),
    else passed through. D sees older fakes too, which damps oscillation. Drawn from torch's CPU RNG, which
    checkpoints carry, so a resume stays exact; the stored fakes are saved in checkpoints."""

    def __init__(self, size: int):
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor, skip_nonfinite: bool = False) -> torch.Tensor:
        """With skip_nonfinite (train.on_nan=skip, where the trainer waits on the device every step anyway) a
        batch holding NaN or infinity passes through unstored, so a skipped step cannot poison the pool."""
        if self.size == 0:
            return images
        if skip_nonfinite and not bool(torch.isfinite(images).all()):
            return images
        out = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif float(torch.rand(())) < 0.5:
                i = int(torch.randint(0, self.size, ()))
                out.append(self.images[i])
                self.images[i] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)

    def state_dict(self) -> torch.Tensor:
        return torch.stack(self.images).cpu() if self.images else torch.zeros(0)

    def load_state_dict(self, stored: torch.Tensor, device) -> None:
        self.images = [image.to(device) for image in stored][: self.size]


@MODELS.register("cyclegan")
class CycleGAN(GenerativeModel, Translates):
    adversarial = True
    accepts = ("unpaired",)
    size_multiple = 4  # two stride-2 down-samplings
    min_size = 8  # the reflection pads need 2 pixels left after them
    default_optim: ClassVar[dict] = {"lr": 2e-4, "betas": (0.5, 0.999)}
    default_schedule: ClassVar[dict] = {"name": "linear", "decay_fraction": 0.5}  # the paper's 100 epochs constant, 100 decaying
    ema_networks = ("g",)
    curve_groups: ClassVar[dict] = {
        "generators (adversarial)": ["G_A", "G_B"],
        "discriminators": ["D_A", "D_B"],
        "cycle": ["cycle_A", "cycle_B"],
        "identity": ["idt_A", "idt_B"],
        "totals": ["d_loss", "g_loss"],
        "gradient norms": ["d_grad_norm", "g_grad_norm"],
    }

    @staticmethod
    def check_config(cfg) -> None:
        check_patch(cfg)
        check_int(cfg, "model.n_blocks", minimum=0)
        check_int(cfg, "model.pool_size", minimum=0)
        check_float(cfg, "model.lambda_cycle", minimum=0.0)
        check_float(cfg, "model.lambda_identity", minimum=0.0)
        if int(cfg.data.size) % 4 or int(cfg.data.size) < 8:
            raise GenlabError(f"cyclegan's ResNet generator needs data.size divisible by 4 and at least 8, got "
                              f"{cfg.data.size}: pass e.g. data.size=128")

    def __init__(self, cfg, spec, loss):
        super().__init__()
        c_a, c_b = spec.shape("a")[0], spec.shape("b")[0]
        self.loss = loss
        self.lambda_cycle, self.lambda_identity = float(cfg.lambda_cycle), float(cfg.lambda_identity)
        if self.lambda_identity > 0 and c_a != c_b:
            raise GenlabError(f"the identity loss needs A and B with the same channels (here {c_a} and {c_b}): pass "
                              "model.lambda_identity=0")
        ngf, blocks, norm = int(cfg.ngf), int(cfg.n_blocks), cfg.norm
        self.generators = nn.ModuleDict({"ab": ResNetGenerator(c_a, c_b, ngf, blocks, norm),
                                         "ba": ResNetGenerator(c_b, c_a, ngf, blocks, norm)})
        # D_A judges G_A's outputs (domain B), D_B judges F's (domain A): the reference code's naming
        self.discriminators = nn.ModuleDict({"b": PatchDiscriminator(c_b, int(cfg.ndf), int(cfg.d_layers), norm),
                                             "a": PatchDiscriminator(c_a, int(cfg.ndf), int(cfg.d_layers), norm)})
        self.apply(init_dcgan_weights)
        self.pools = {"a": ImagePool(int(cfg.pool_size)), "b": ImagePool(int(cfg.pool_size))}

    def networks(self):
        return {"g": self.generators, "d": self.discriminators}

    def training_step(self, batch, step):
        """Both generators against the discriminators (every loss.n_critic steps), with the cycle and identity
        terms; then both discriminators on real images and pooled fakes, each loss halved as the paper does.
        A loss's penalty (WGAN-GP) and clipping (WGAN) apply as in the GAN family's step."""
        real_a, real_b = batch["a"], batch["b"]
        g_ab, g_ba = self.generators["ab"], self.generators["ba"]
        d_b, d_a = self.discriminators["b"], self.discriminators["a"]
        out = {}
        if (step + 1) % self.loss.n_critic == 0:
            with self.frozen(self.discriminators), self.autocast():
                fake_b, fake_a = g_ab(real_a), g_ba(real_b)
                cycle_a = (g_ba(fake_b) - real_a).abs().mean()
                cycle_b = (g_ab(fake_a) - real_b).abs().mean()
                g_a, g_b = self.loss.g_loss(d_b(fake_b)), self.loss.g_loss(d_a(fake_a))
                g_loss = g_a + g_b + self.lambda_cycle * (cycle_a + cycle_b)
                if self.lambda_identity > 0:
                    idt_a = (g_ab(real_b) - real_b).abs().mean()
                    idt_b = (g_ba(real_a) - real_a).abs().mean()
                    g_loss = g_loss + self.lambda_identity * self.lambda_cycle * (idt_a + idt_b)
                    out.update(idt_A=idt_a.detach(), idt_B=idt_b.detach())
            out.update(G_A=g_a.detach(), G_B=g_b.detach(), cycle_A=cycle_a.detach(), cycle_B=cycle_b.detach(),
                       g_loss=g_loss.detach(), g_grad_norm=self.update(g_loss, "g"))
        else:  # a critic-only step (n_critic > 1): fakes for D, no generator graph
            with torch.no_grad(), self.autocast():
                fake_b, fake_a = g_ab(real_a), g_ba(real_b)
        with self.autocast():
            guard = self.engine is not None and self.engine.skip_nonfinite
            pooled_b, pooled_a = self.pools["b"].query(fake_b, guard), self.pools["a"].query(fake_a, guard)
            loss_a = 0.5 * self.loss.d_loss(d_b(real_b), d_b(pooled_b))
            loss_b = 0.5 * self.loss.d_loss(d_a(real_a), d_a(pooled_a))
            penalties = [self.loss.penalty(d_b, real_b, pooled_b), self.loss.penalty(d_a, real_a, pooled_a)]
        d_total = loss_a + loss_b
        if penalties[0] is not None:
            d_total = d_total + penalties[0] + penalties[1]
            out["gradient_penalty"] = (penalties[0] + penalties[1]).detach()
        out.update(D_A=loss_a.detach(), D_B=loss_b.detach(), d_loss=(loss_a + loss_b).detach(),
                   d_grad_norm=self.update(d_total, "d"))
        self.loss.after_d_step(self.discriminators)
        return out

    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str = "AtoB") -> torch.Tensor:
        """G(x) for AtoB, F(x) for BtoA."""
        if direction not in ("AtoB", "BtoA"):
            raise GenlabError(f"direction must be AtoB or BtoA, got {direction!r}")
        net = self.generators["ab" if direction == "AtoB" else "ba"]
        with self.evaluating():
            return net(x.to(self.device)).float()

    @torch.no_grad()
    def visuals(self, batch):
        """Rows of (A, G(A), F(G(A)), B, F(B), G(F(B))) for up to 4 fixed validation images of each domain."""
        n = min(4, batch.size)
        a, b = batch["a"][:n], batch["b"][:n]
        fake_b, fake_a = self.translate(a), self.translate(b, "BtoA")
        columns = [a, fake_b, self.translate(fake_b, "BtoA"), b, fake_a, self.translate(fake_a)]
        channels = max(c.shape[1] for c in columns)
        columns = [c.expand(-1, channels, -1, -1) if c.shape[1] == 1 else c for c in columns]
        return {"translations": torch.stack(columns, dim=1)}

    def extra_state(self) -> dict:
        return {f"pool_{name}": pool.state_dict() for name, pool in self.pools.items()}

    def load_extra_state(self, state: dict) -> None:
        for name, pool in self.pools.items():
            if f"pool_{name}" in state:
                pool.load_state_dict(state[f"pool_{name}"], self.device)


# ---- genlab eval: did the translation reach the other domain? ---------------------------------------------------

def _train_domain_classifier(train: dict[str, torch.Tensor], device, epochs: int = 4):
    """A small A-vs-B classifier (core.classifier's DomainClassifier) trained now on the training domains (seeded)."""
    images = torch.cat([train["a"], train["b"]])
    labels = torch.cat([torch.zeros(len(train["a"])), torch.ones(len(train["b"]))]).long()

    def epoch():
        order = torch.randperm(len(images))
        for start in range(0, len(images), 64):
            part = order[start : start + 64]
            yield images[part].to(device), labels[part].to(device)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = DomainClassifier(images.shape[1], 2).to(device)
        return train_classifier(model, (epoch() for _ in range(epochs)))


@torch.no_grad()
def _called(classifier, images: torch.Tensor, device) -> torch.Tensor:
    return torch.cat([classifier(images[i : i + 256].to(device)).argmax(1).cpu() for i in range(0, len(images), 256)])


@metric("domain_transfer", kinds=("unpaired",),
        when=lambda ctx: None if ctx.run.cfg.model.name == "cyclegan" else "only for cyclegan runs")
def domain_transfer(ctx) -> dict:
    """Share of translated held-out images that an A-vs-B classifier assigns to the target domain (no download)."""
    data, model = ctx.data, ctx.run.model
    if data.test is None:
        raise MetricUnavailable(f"{data.spec.name} has no held-out testA/testB to translate")

    train = domain_stacks(data.train, limit=2000)
    test = domain_stacks(data.test)
    classifier = _train_domain_classifier(train, ctx.device)
    as_b = lambda images: float((_called(classifier, images, ctx.device) == 1).float().mean())

    def distance(x, y):  # a classifier that only saw real A and B calls noise anything: FD in its features

        return frechet_distance(features_of(classifier, x)[0].float(), features_of(classifier, y)[0].float())

    with torch.no_grad():
        fake_b = torch.cat([model.translate(test["a"][i : i + 64]).cpu() for i in range(0, len(test["a"]), 64)])
        fake_a = torch.cat([model.translate(test["b"][i : i + 64], "BtoA").cpu() for i in range(0, len(test["b"]), 64)])
    protocol = {"classifier": "DomainClassifier (A vs B) trained for this evaluation on up to 2000 training images "
                              "of each domain, seed 0", "n_test_a": len(test["a"]), "n_test_b": len(test["b"]),
                "image_size": data.spec.size}
    return {
        "a_to_b_called_b": {"value": as_b(fake_b), "protocol": {**protocol, "baseline": "real A called B: "
                                                                 f"{as_b(test['a']):.3f}"}},
        "b_to_a_called_a": {"value": 1 - as_b(fake_a), "protocol": {**protocol, "baseline": "real B called A: "
                                                                     f"{1 - as_b(test['b']):.3f}"}},
        "a_to_b_fd": {"value": distance(fake_b, test["b"]),
                      "protocol": {**protocol, "definition": "Frechet distance of G(test A) to test B in the "
                                   "classifier's 128-d features (lower = closer to real B)",
                                   "baseline": f"test A to test B: {distance(test['a'], test['b']):.4g}"}},
        "b_to_a_fd": {"value": distance(fake_a, test["a"]),
                      "protocol": {**protocol, "definition": "Frechet distance of F(test B) to test A in the same "
                                   "features", "baseline": f"test B to test A: {distance(test['b'], test['a']):.4g}"}},
        "domain_accuracy_real": {"value": (1 - as_b(test["a"]) + as_b(test["b"])) / 2,
                                 "protocol": {**protocol, "definition": "the classifier's accuracy on the real "
                                              "held-out images (how well the domains can be told apart)"}},
    }


family_figures("cyclegan")(visual_figures(
    ("translations", "A, G(A), F(G(A)) | B, F(B), G(F(B)) on fixed validation images")))
