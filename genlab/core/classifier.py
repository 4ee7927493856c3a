"""The small domain classifier: its network, one training loop (used by fd_domain's cached classifier and by
CycleGAN's A-vs-B classifier), its cache, and its features."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genlab.core import files
from genlab.core.errors import GenlabError
from genlab.core.files import atomic_write
from genlab.core.metrics import MetricUnavailable
from genlab.core.paths import cache_dir
from genlab.core.progress import bar


class DomainClassifier(nn.Module):
    """Three stride-2 conv blocks, global average pooling, a 128-wide feature layer, then the class logits."""

    version = 1
    feature_dim = 128

    def __init__(self, channels: int, n_classes: int):
        super().__init__()
        layers, c_in = [], channels
        for width in (32, 64, 128):
            layers += [nn.Conv2d(c_in, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU(True),
                       nn.Conv2d(width, width, 3, 1, 1), nn.BatchNorm2d(width), nn.ReLU(True)]
            c_in = width
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(128, self.feature_dim), nn.ReLU(True))
        self.head = nn.Linear(self.feature_dim, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def classifier_key(spec, data_cfg) -> str:
    """Which cached classifier fits: the dataset, its image size and channels, its classes and training set."""
    identity = f"{spec.name}|{spec.size}|{spec.channels}|{spec.n_train}|{','.join(spec.class_names)}|" \
               f"{data_cfg.get('root', '')}|{data_cfg.get('folders', '')}|v{DomainClassifier.version}"
    digest = hashlib.sha1(identity.encode()).hexdigest()[:10]
    return f"{spec.name}_{spec.size}px_{spec.channels}ch_{digest}"


@torch.no_grad()
def accuracy(model: nn.Module, batches) -> float:
    right = total = 0
    for x, y in ((b["image"], b["label"]) for b in batches):
        right += int((model(x).argmax(1) == y).sum())
        total += len(y)
    return right / max(total, 1)


def train_classifier(model: nn.Module, epochs, *, lr: float = 2e-3, total_steps: int | None = None,
                     shifts: torch.Generator | None = None, advance=lambda n: None) -> nn.Module:
    """The one small-classifier training loop: Adam at `lr` (with a one-cycle schedule over `total_steps` where
    given), cross-entropy, over `epochs` (an iterable of epochs, each an iterable of (images, labels)), with
    random shifts of up to 2 pixels drawn from `shifts` where given. Returns the model in eval mode."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = None if total_steps is None else \
        torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps)
    model.train()
    for batches in epochs:
        for x, y in batches:
            if shifts is not None:  # small shifts: the classifier should judge shapes, not exact pixel positions
                shift = torch.randint(-2, 3, (2,), generator=shifts).tolist()
                x = torch.roll(x, shifts=shift, dims=(2, 3))
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
            advance(1)
    return model.eval()


def _cached(path: Path, model: nn.Module, device) -> dict | None:
    """The cached classifier's info (its weights loaded into `model`), or None where there is none or it is damaged."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        return state["info"]
    except Exception:  # noqa: BLE001  (a damaged cache entry, whatever torch raises for it, is retrained)
        return None


def _store(path: Path, model: nn.Module, info: dict, log) -> None:
    files.declare(path.parent, replace=True, what="genlab's cache folder")
    try:
        atomic_write(path, lambda tmp: torch.save({"model": model.state_dict(), "info": info}, tmp))
    except (OSError, GenlabError) as err:  # a cache that cannot be written: the classifier is used all the same
        log(f"  (could not cache the classifier in {path.parent}: {getattr(err, 'strerror', None) or err})")


def domain_classifier(data, data_cfg, device, log=print) -> tuple[DomainClassifier, dict]:
    """The dataset's classifier from the cache, or trained now on its train split (then cached)."""
    spec = data.spec
    if spec.n_classes < 2:
        raise MetricUnavailable(f"{spec.name} has no class labels to train a domain classifier on; use fid")
    path = cache_dir() / "classifiers" / f"{classifier_key(spec, data_cfg)}.pt"
    model = DomainClassifier(spec.channels, spec.n_classes).to(device)
    info = _cached(path, model, device)
    if info is not None:
        return model.eval(), info
    log(f"training the {spec.name} domain classifier on its {spec.n_train} training images (cached in {path.parent})")
    generator = torch.Generator().manual_seed(0)
    torch_state = torch.get_rng_state()
    torch.manual_seed(0)
    batches = max(1, len(data.train))
    epochs = max(2, min(20, math.ceil(1500 / batches)))
    with bar(f"training the {spec.name} domain classifier", total=epochs * batches, unit="steps") as advance:
        epoch_batches = (((b["image"], b["label"]) for b in data.train.epoch(e)) for e in range(epochs))
        train_classifier(model, epoch_batches, total_steps=epochs * batches, shifts=generator, advance=advance)
    torch.set_rng_state(torch_state)
    test = data.test if data.test is not None else data.train
    info = {"test_accuracy": round(accuracy(model, test.ordered()), 4), "epochs": epochs,
            "split": "test" if data.test is not None else "train", "architecture": f"DomainClassifier v{model.version}"}
    _store(path, model, info, log)
    log(f"  classifier accuracy on the {info['split']} split: {info['test_accuracy']:.3f}")
    return model, info


@torch.no_grad()
def features_of(classifier: DomainClassifier, images: torch.Tensor, batch: int = 500):
    """(features [N, 128], predicted classes [N]) of [-1, 1] images."""
    feats, preds = [], []
    device = next(classifier.parameters()).device
    for start in range(0, len(images), batch):
        x = images[start : start + batch].to(device)
        f = classifier.features(x)
        feats.append(f.cpu())
        preds.append(classifier.head(f).argmax(1).cpu())
    return torch.cat(feats).double(), torch.cat(preds)

