"""`genlab eval`: sample-quality and likelihood metrics, each number with the protocol that produced it.

FID-style numbers cannot be compared without knowing how many images went in, from which split, through
which feature extractor, at what size. Every metric here returns {"value": ..., "protocol": {...}}.

Metrics (METRICS registry; `genlab eval --metrics a,b`):
- fd_domain: the Frechet distance in the penultimate features of a small classifier trained on the dataset's own
  train split (no download; cached), generated vs test split; with the real-train-vs-test floor, conditional
  accuracy and class coverage.
- precision_recall: k-NN manifold precision and recall (Kynkaanniemi et al. 2019) in the same features.
- ms_ssim: mean MS-SSIM of same-class pairs (lower = more diverse; the AC-GAN paper's measure), with real data's.
- fid, kid, is: the standard Inception-v3 features (torch-fidelity's public FeatureExtractorInceptionV3 with its
  weights, where those are on disk: `genlab weights`), computed once per image set and shared by the three.
- likelihood: what the model's own evaluate() reports on the test split (VAE -ELBO and bits/dim, VQ-VAE MSE).
- translation: L1 and PSNR of a translation model's outputs (model.translates, model.translate) against the
  held-out targets, whole images one at a time where the data keeps them, beside the input-as-output baseline.
- ood: AUROC and AUPRC of the model's per-example score (model.score, e.g. -ELBO) on the held-out split vs a
  second dataset (`--ood-data NAME`).
- anomaly: the same on the whole test split of a run trained with data.normal_classes, the other classes being
  the anomalies (`--anomaly`). Both add the input-complexity corrected score where the model's score is -log p of
  an 8-bit image (flows), and draw ROC, precision-recall and score-histogram figures (RUN/eval/*.png).

A metric is registered with @metric(name, kinds=..., when=...) here or in a family's model file; `genlab eval`
runs those that apply to the run. The Context gives each one its sources: samples (`fake`), real splits
(`real`), whole images of any size (`whole`), input -> output pairs (`pairs`) and a second dataset (`ood`).
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genlab.core import files, weights
from genlab.core.errors import GenlabError
from genlab.core.files import atomic_write
from genlab.core.registry import METRICS

if TYPE_CHECKING:  # a model file may import this module (to register a metric): no models import here
    from genlab.train.runs import Run

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"


class MetricUnavailable(Exception):
    """A metric that cannot run for this run (no labels, no weights...): one line saying why and what to do."""


def cache_dir() -> Path:
    root = os.environ.get("GENLAB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "genlab")
    return Path(root)


# ---- the domain classifier -------------------------------------------------------------------------
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


def _classifier_epoch(model, batches, generator, optimizer, schedule, advance) -> None:
    for x, y in ((b["image"], b["label"]) for b in batches):
        # small shifts: the classifier should judge shapes, not exact pixel positions
        shift = torch.randint(-2, 3, (2,), generator=generator).tolist()
        x = torch.roll(x, shifts=shift, dims=(2, 3))
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        advance(1)


def domain_classifier(data, data_cfg, device, log=print) -> tuple[DomainClassifier, dict]:
    """The dataset's classifier from the cache, or trained now on its train split (then cached)."""
    spec = data.spec
    if spec.n_classes < 2:
        raise MetricUnavailable(f"{spec.name} has no class labels to train a domain classifier on; use fid")
    path = cache_dir() / "classifiers" / f"{classifier_key(spec, data_cfg)}.pt"
    model = DomainClassifier(spec.channels, spec.n_classes).to(device)
    if path.is_file():
        try:
            state = torch.load(path, map_location=device, weights_only=True)
            model.load_state_dict(state["model"])
            return model.eval(), state["info"]
        except Exception:  # noqa: BLE001, S110  (a damaged cache entry, whatever torch raises for it, is retrained)
            pass
    log(f"training the {spec.name} domain classifier on its {spec.n_train} training images (cached in {path.parent})")
    generator = torch.Generator().manual_seed(0)
    torch_state = torch.get_rng_state()
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    batches = max(1, len(data.train))
    epochs = max(2, min(20, math.ceil(1500 / batches)))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=epochs * batches)
    model.train()
    from genlab.core.progress import bar

    with bar(f"training the {spec.name} domain classifier", total=epochs * batches, unit="steps") as advance:
        for epoch in range(epochs):
            _classifier_epoch(model, data.train.epoch(epoch), generator, optimizer, schedule, advance)
    torch.set_rng_state(torch_state)
    model.eval()
    test = data.test if data.test is not None else data.train
    info = {"test_accuracy": round(accuracy(model, test.ordered()), 4), "epochs": epochs,
            "split": "test" if data.test is not None else "train", "architecture": f"DomainClassifier v{model.version}"}
    files.declare(path.parent, replace=True, what="genlab's cache folder")
    try:
        atomic_write(path, lambda tmp: torch.save({"model": model.state_dict(), "info": info}, tmp))
    except (OSError, GenlabError) as err:  # a cache that cannot be written: the classifier is used all the same
        log(f"  (could not cache the classifier in {path.parent}: {getattr(err, 'strerror', None) or err})")
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


# ---- distances --------------------------------------------------------------------------------------
def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between Gaussians fitted to two feature sets.

    Tr((S_a S_b)^(1/2)) is computed as the sum of square roots of the eigenvalues of S_a^(1/2) S_b S_a^(1/2),
    which is symmetric: stable for the singular covariances that ReLU features give (dead units)."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    middle = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    return float((mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * middle)


def knn_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    if len(features) <= k:
        raise MetricUnavailable(f"k-NN precision/recall needs more than k={k} images per set, got {len(features)}")
    distances = torch.cdist(features, features)
    return distances.kthvalue(k + 1, dim=1).values  # +1: the point itself is at distance 0


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Precision: the share of fakes inside the real manifold (union of k-NN balls); recall: the reverse."""
    real_r, fake_r = knn_radii(real, k), knn_radii(fake, k)
    between = torch.cdist(fake, real)  # [n_fake, n_real]
    precision = (between <= real_r[None, :]).any(dim=1).double().mean()
    recall = (between.T <= fake_r[None, :]).any(dim=1).double().mean()
    return float(precision), float(recall)


def gaussian_window(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """SSIM per pair of [0, 1] images [N, C, H, W] (Wang et al. 2004: an 11x11 Gaussian window, sigma 1.5,
    K1 0.01, K2 0.03, population variances, the map over valid positions averaged with the channels): what
    scikit-image's structural_similarity gives with gaussian_weights=True, use_sample_covariance=False,
    data_range=1. Images smaller than the window use the largest odd window that fits."""
    window = min(window, min(a.shape[-2:]) - (1 - min(a.shape[-2:]) % 2))
    kernel = gaussian_window(window, sigma).to(a.double())[None, None].repeat(a.shape[1], 1, 1, 1)
    a, b = a.double(), b.double()
    blur = lambda t: F.conv2d(t, kernel, groups=a.shape[1])
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return index.flatten(1).mean(1).float()


MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang, Simoncelli & Bovik 2003


def ms_ssim(a: torch.Tensor, b: torch.Tensor, window: int = 7, sigma: float = 1.5) -> tuple[torch.Tensor, int]:
    """MS-SSIM per pair of [0, 1] images [N, C, H, W], with as many of the five scales as the size allows
    (each scale halves the image; the window must fit), the weights renormalised over those scales."""
    scales = 1
    side = min(a.shape[-2:])
    while scales < 5 and side // 2 ** scales >= window:
        scales += 1
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales])
    weights = weights / weights.sum()
    kernel = gaussian_window(window, sigma).to(a)[None, None].repeat(a.shape[1], 1, 1, 1)
    c1, c2 = 0.01**2, 0.03**2
    blur = lambda t: F.conv2d(t, kernel, groups=a.shape[1])
    values = []
    for s in range(scales):
        mu_a, mu_b = blur(a), blur(b)
        var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
        cov = blur(a * b) - mu_a * mu_b
        cs = ((2 * cov + c2) / (var_a + var_b + c2)).flatten(1).mean(1)
        if s == scales - 1:
            luminance = ((2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)).flatten(1).mean(1)
            values.append((luminance * cs).clamp(min=0))
        else:
            values.append(cs.clamp(min=0))
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    stacked = torch.stack(values, dim=1)
    return torch.prod(stacked ** weights.to(stacked), dim=1), scales


def same_class_ms_ssim(images: torch.Tensor, labels: torch.Tensor, pairs: int, seed: int) -> tuple[float, int, int]:
    """Mean MS-SSIM over `pairs` random same-class pairs per class (classes with two images or more)."""
    generator = torch.Generator().manual_seed(seed)
    scores, used, scales = [], 0, 0
    unit = (images.float().cpu() + 1) / 2
    for k in labels.unique().tolist():
        members = torch.nonzero(labels.cpu() == k).flatten()
        if len(members) < 2:
            continue
        i = members[torch.randint(len(members), (pairs,), generator=generator)]
        j = members[(torch.randint(1, len(members), (pairs,), generator=generator)
                     + torch.searchsorted(members, i)) % len(members)]  # never the image itself
        values, scales = ms_ssim(unit[i], unit[j])
        scores.append(float(values.mean()))
        used += 1
    if not scores:
        raise MetricUnavailable("no class has two images to compare")
    return float(np.mean(scores)), used, scales


# ---- where the data is: the command line and genlab's defaults, never a checkpoint ------------------------
# data.* keys that name a place on disk (a folder, a dataset folder under the root, a cache)
PLACE_KEYS = ("root", "folders", "train", "test", "dataset", "benchmark_root", "cache_dir")
# of those, the ones that name a folder under data.root: a checkpoint's plain relative name stays below the root the
# user (or genlab's default) gives, so it is kept; an absolute path or one that climbs out is not
UNDER_ROOT = ("train", "test", "dataset")
# data.* keys that make genlab write: off when a run's data is read back
WRITE_KEYS = {"download": False, "cache": False}


def parse_data_settings(text: str, flag: str, named: bool = False) -> list[str]:
    """`--data 'data.root=PATH ...'` (or `--ood-data 'NAME data.KEY=VALUE ...'`) -> its words, checked: one line
    for an empty value, unbalanced quotes or a word that is not data.KEY=VALUE."""
    import shlex

    try:
        words = shlex.split(text)
    except ValueError as err:
        raise GenlabError(f"{flag} {text!r}: {err}; quote a path with spaces as 'data.root=\"my folder\"'") from None
    if named and (not words or words[0].startswith("data.") or "=" in words[0]):
        raise GenlabError(f"{flag} takes a data option and data.KEY=VALUE settings, e.g. {flag} fashion_mnist "
                          f"or {flag} 'image_folder data.root=PATH'; got {text!r}")
    rest = words[1:] if named else words
    if not named and not rest:
        raise GenlabError(f"{flag} is empty: pass data.KEY=VALUE settings, e.g. {flag} 'data.root=PATH'")
    bad = [w for w in rest if not w.startswith("data.") or "=" not in w or w.startswith("data.name=")]
    if bad:
        what = "a data option and data.KEY=VALUE settings" if named else "data.KEY=VALUE settings"
        raise GenlabError(f"{flag} takes {what}, got {bad[0]!r}: e.g. {flag} "
                          f"'{words[0] + ' ' if named else ''}data.root=PATH'")
    return words


def data_config(name: str, settings: list[str], flag: str):
    """genlab's data option `name` (its YAML, read without composing: this also runs inside a training job) with
    data.KEY=VALUE settings from the command line, each of the type of the default it replaces and checked as
    `genlab train` checks data.*: one line for a mistake."""
    from omegaconf import OmegaConf

    from genlab.app.compose import _check_types, did_you_mean
    from genlab.core.config import check_int, check_normal_classes
    from genlab.core.paths import config_dir, group_options
    from genlab.core.registry import DATASETS, load_all

    load_all()
    options = group_options("data")
    if name not in options:
        raise GenlabError(f"{flag}: unknown data option {name!r}{did_you_mean(name, options)}; choose one of: "
                          f"{', '.join(options)}")
    defaults = OmegaConf.create({"data": OmegaConf.load(config_dir() / "data" / f"{name}.yaml")})
    for setting in settings:
        key = setting.partition("=")[0]
        if key.count(".") != 1 or key.split(".")[1] not in set(defaults.data.keys()):
            keys = [f"data.{k}" for k in defaults.data]
            raise GenlabError(f"{flag}: data={name} has no key {key}{did_you_mean(key, keys)}")
    try:
        cfg = OmegaConf.merge(defaults, OmegaConf.from_dotlist(settings))
    except Exception as err:  # noqa: BLE001  (OmegaConf's grammar errors)
        raise GenlabError(f"{flag}: {' '.join(str(err).split())[:160]}") from None
    try:
        _check_types(cfg, defaults, settings)
        data = cfg.data
        if "size" in data:
            check_int(cfg, "data.size", minimum=8)
        check_int(cfg, "data.limit", minimum=1, optional=True)
        if "num_workers" in data:
            check_int(cfg, "data.num_workers", minimum=0)
        check_normal_classes(cfg, DATASETS[data.name])
        if hasattr(DATASETS[data.name], "check_config"):
            DATASETS[data.name].check_config(cfg)
    except GenlabError as err:
        raise GenlabError(f"{flag}: {err}") from None
    return cfg.data


def _below_root(value) -> bool:
    """None, or a plain relative folder name that stays below data.root."""
    from pathlib import PurePath

    if value is None:
        return True
    if not isinstance(value, str) or not value or "${" in value:
        return False
    path = PurePath(value)
    return not path.is_absolute() and ".." not in path.parts and not value.startswith("~")


def place_settings(cfg) -> list[str]:
    """The data.KEY=VALUE settings (places on disk) where a run's own config differs from genlab's defaults:
    what `genlab eval RUN --data '...'` needs to find the run's data (the end of a run prints them; a sweep's
    objective passes its own). The cache folder is not among them: eval builds no cache."""
    from omegaconf import OmegaConf

    from genlab.core.paths import group_options

    name = cfg.data.name
    if name not in group_options("data"):
        return []
    try:
        reference = data_config(name, [], "data")
    except GenlabError:
        return []
    out = []
    keys = set(reference.keys())
    for key in PLACE_KEYS:
        if key == "cache_dir" or key not in cfg.data or key not in keys:
            continue
        raw, default_raw = cfg.data._get_node(key)._value(), reference._get_node(key)._value()
        if isinstance(raw, str) and raw == default_raw and "${" in raw:
            continue  # the same interpolation as the default (benchmark_root: ${data.root})
        value = OmegaConf.select(cfg, f"data.{key}")
        default = None if OmegaConf.is_missing(reference, key) else OmegaConf.select(
            OmegaConf.create({"data": reference}), f"data.{key}")
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        if key in UNDER_ROOT and _below_root(value):
            continue  # kept from the run itself
        if value != default and value is not None:
            out.append(f"data.{key}={_setting_value(value)}")
    return out


def _setting_value(value) -> str:
    """A value as it is typed after data.KEY=: a list as [a,b], an item quoted where YAML needs it."""
    import json

    def item(v) -> str:
        text = str(v)
        return json.dumps(text) if any(c in text for c in " ,[]{}'\":#") else text

    return "[" + ",".join(item(v) for v in value) + "]" if isinstance(value, list) else item(value)


def run_data_config(cfg, settings: list[str]):  # noqa: C901  (to be split: issue 24)
    """A run's data.* with the places (PLACE_KEYS) of genlab's defaults or of `--data`, and nothing that writes."""
    from omegaconf import OmegaConf

    from genlab.core.paths import group_options

    name = cfg.data.name
    given = {s.partition("=")[0][len("data."):]: s.partition("=")[2] for s in settings}
    if name not in group_options("data"):  # a dataset registered by code (a test's): its config as it trained
        data = OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=True))
        for key, value in WRITE_KEYS.items():
            if key in data:
                data[key] = value
        return data
    reference = data_config(name, settings, "--data")
    data = OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=True))
    whole = OmegaConf.create({"data": reference})
    keys = set(reference.keys())  # (`in` says False for a mandatory ??? value)
    for key in PLACE_KEYS:
        if key in data and key not in keys:
            del data[key]
        if key not in keys:
            continue
        if key in UNDER_ROOT and key not in given and _below_root(cfg.data.get(key)):
            continue  # the run's own folder name under the root (DIV2K_train_HR, maps, train)
        if OmegaConf.is_missing(reference, key):
            was = cfg.data.get(key)
            hint = f"data.{key}={was}" if was is not None and not isinstance(was, (list, dict)) else f"data.{key}=PATH"
            raise MetricUnavailable(f"the run's data.{key} is not taken from its checkpoint (a checkpoint decides no "
                                    f"read or write): pass --data '{hint}'")
        data[key] = OmegaConf.select(whole, f"data.{key}")
    for key in given:  # the user's own settings win
        data[key] = OmegaConf.select(whole, f"data.{key}")
    for key, value in WRITE_KEYS.items():
        if key in data:
            data[key] = value
    if "num_workers" in data and (not isinstance(data.num_workers, int) or not 0 <= data.num_workers <= 64):
        data.num_workers = 0
    return data


# ---- the evaluation context ---------------------------------------------------------------------------
@dataclass
class Context:
    run: Run
    n: int
    seed: int
    device: torch.device
    log: callable = print
    ood_name: str | None = None  # --ood-data: a second dataset, for out-of-distribution scores
    anomaly: bool = False  # --anomaly: the test split's classes outside data.normal_classes are the anomalies
    data_settings: list = field(default_factory=list)  # --data: data.KEY=VALUE, where the run's dataset is
    figures: dict = field(default_factory=dict)  # name -> PNG bytes a metric drew; `genlab eval` writes RUN/eval/
    _data: object = None
    _ood: object = None
    _fake: tuple | None = None
    _cond: tuple | None = None
    _classifier: tuple | None = None
    _real: dict = field(default_factory=dict)
    _data_config: object = None

    @property
    def data(self):
        if self._data is None:
            self._data = self.run_data(limit=None)  # evaluate against the whole split, whatever the run trained on
        return self._data

    @property
    def data_config(self):
        """The run's data.* as it trained (size, channels, classes, ...), with every key that names a place on disk
        taken from genlab's own default for that dataset or from --data, never from the checkpoint, and with
        nothing that writes (no download, no cache): a checkpoint is data and decides no read or write."""
        if self._data_config is None:
            self._data_config = run_data_config(self.run.cfg, self.data_settings)
        return self._data_config

    def run_data(self, **changes):
        """The run's dataset with some data.* keys changed (limit=None; anomaly: normal_classes=None); one line
        saying why where it is not here."""
        from genlab.core.registry import DATASETS
        from genlab.data import build_data

        cfg = self.run.cfg
        data_cfg = self.data_config.copy()
        for key, value in changes.items():
            data_cfg[key] = value
        try:
            DATASETS[cfg.data.name].locate(data_cfg)
        except GenlabError as err:
            raise MetricUnavailable(f"the run's dataset is not here ({err})") from None
        # the run's own batch size: it fitted the training split then, and limit=None only adds images
        return build_data(data_cfg, cfg.train.batch_size, cfg.train.seed, self.device)

    def real(self, split: str, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        key = (split, limit)
        if key not in self._real:
            source = self.data.test if split == "test" else self.data.train
            if source is None or source.n_images == 0:
                raise MetricUnavailable(f"{self.data.spec.name} has no {split} split")
            parts = list(source.ordered(limit=limit, batch_size=500))
            self._real[key] = (torch.cat([b["image"].cpu() for b in parts]), torch.cat([b["label"].cpu() for b in parts]))
        return self._real[key]

    # ---- evaluation sources beyond samples and real images ------------------------------------------------
    def whole(self, limit: int | None = None):
        """Whole images of any size, one at a time, from the held-out split: (name, Batch of one example).
        Only data whose source keeps whole images offers them (super-resolution test sets)."""
        source = self.data.evaluation
        if not hasattr(source, "whole"):
            raise MetricUnavailable(f"{self.data.spec.name} ({self.data.spec.kind}) keeps no whole images")
        return source.whole(limit)

    def pairs(self, limit: int | None = None, source=None):
        """A translation model's (input, output, target) on the held-out split (or on `source`, a batch source of
        the run's kind), on the CPU: whole images one at a time where the data keeps them (any size; through the
        generator in tiles, eval.tile and eval.tile_overlap, where the model states its receptive radius), else
        its batches in file order. `model.translates` names the input and the target tensors of a batch, e.g.
        ("a", "b") or ("lr", "hr")."""
        from genlab.core import tiles

        model = self.run.model
        if not getattr(model, "translates", None):
            raise MetricUnavailable(f"{self.run.cfg.model.name} does not translate an input into an output")
        if self.run.spec.kind == "unpaired":
            raise MetricUnavailable(f"{self.run.spec.name} is unpaired: its inputs have no targets to compare with")
        inputs, targets = model.translates
        source = source if source is not None else self.data.evaluation
        tile, overlap = tiles.settings(self.run.cfg)
        batches = (b for _, b in source.whole(limit)) if hasattr(source, "whole") else \
            source.ordered(limit=limit, batch_size=50)
        for batch in batches:
            x, y = batch[inputs], batch[targets]
            # the contexts close before the yield: a consumer that stops early leaves nothing switched
            with torch.no_grad(), model.evaluating(), torch.random.fork_rng(devices=[]):
                out = tiles.translate(model, x, tile=tile, overlap=overlap).float().cpu()
            yield x.float().cpu(), out, y.float().cpu()

    @property
    def ood(self):
        """The second dataset (`--ood-data "NAME [data.KEY=VALUE ...]"`), built at the run's image size and channels;
        one line when it is missing or its examples have another shape than the run's."""
        if self.ood_name is None:
            raise MetricUnavailable("no second dataset: pass --ood-data NAME (a data option, `genlab list data`)")
        if self._ood is None:
            from omegaconf.errors import OmegaConfBaseException

            from genlab.core.registry import DATASETS
            from genlab.data import build_data

            words = parse_data_settings(self.ood_name, "--ood-data", named=True)
            name, settings = words[0], words[1:]
            spec = self.run.spec
            data_cfg = data_config(name, settings, "--ood-data")
            fit = (("size", spec.size), ("channels", spec.channels)) if spec.kind == "images" else ()
            for key, value in (*fit, ("limit", None)):
                if key in data_cfg and not any(s.startswith(f"data.{key}=") for s in settings):
                    data_cfg[key] = value
            try:
                DATASETS[data_cfg.name].locate(data_cfg)
                data = build_data(data_cfg, self.run.cfg.train.batch_size, self.seed, self.device)
            except OmegaConfBaseException as err:
                key = getattr(err, "full_key", None) or str(err).splitlines()[0]
                raise GenlabError(f"--ood-data {name} needs {key}: pass it, e.g. --ood-data '{name} {key}=VALUE'") \
                    from None
            except GenlabError as err:
                raise GenlabError(f"--ood-data {name}: {err}") from None

            def shapes(s):
                return {"image": [s.channels, s.size, s.size]} if s.kind == "images" else s.shapes

            if data.spec.kind != spec.kind or shapes(data.spec) != shapes(spec):
                raise GenlabError(f"--ood-data {name} gives {data.spec.kind} shaped {shapes(data.spec)}, the run "
                                  f"trained on {spec.kind} shaped {shapes(spec)}: pick data of the same kind and shape")
            self._ood = data
        return self._ood

    @property
    def fake(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """n samples with the model's own label choice (a conditional model cycles through its classes)."""
        if self._fake is None:
            try:
                from genlab.train.runs import generate

                parts = []
                with self.progress(f"drawing {self.n} samples", self.n) as advance:
                    for x, y in generate(self.run.model, self.n, self.seed, None):
                        parts.append((x, y))
                        advance(len(x))
            except GenlabError as err:
                raise MetricUnavailable(str(err)) from None
            labels = None if parts[0][1] is None else torch.cat([y for _, y in parts])
            self._fake = (torch.cat([x for x, _ in parts]), labels)
        return self._fake

    @property
    def classifier(self):
        if self._classifier is None:
            self._classifier = domain_classifier(self.data, self.data_config, self.device, self.log)
        return self._classifier

    @property
    def conditional_on_classes(self) -> bool:
        """Samples asked for class k should look like class k (not InfoGAN, whose code is unsupervised)."""
        return bool(getattr(self.run.model, "n_classes", 0)) and self.run.model.label_values == self.data.spec.n_classes

    @staticmethod
    def progress(label: str, total: int | None = None):
        """A progress bar for one wait of a metric (genlab/progress.py: drawn on a terminal only)."""
        from genlab.core.progress import bar

        return bar(label, total)

    def protocol(self, **extra) -> dict:
        return {"n_generated": self.n, "seed": self.seed, "image_size": self.run.spec.size,
                "channels": self.run.spec.channels, **extra}


def metric(name: str, kinds: tuple[str, ...] | None = ("images",), when=None, better: str | None = None):
    """Register a metric: fn(ctx) -> {name: {"value", "protocol"}}. `kinds`: the data kinds it scores (None:
    any); `when(ctx)`: None where it applies, else the reason it does not; `better`: "min" or "max" where its
    number of the same name ranks runs (a sweeper's train.objective=NAME then knows its direction). `genlab eval` runs every registered
    metric that applies, quietly leaving out the others; a metric asked for by name that does not apply is one
    line. A family registers its own in its model file; the docstring's first line is its `genlab list
    metrics` help."""

    def add(fn):
        fn.kinds, fn.when, fn.better = kinds, when, better
        return METRICS.register(name)(fn)

    return add


def not_applicable(name: str, ctx: Context) -> str | None:
    """Why metric `name` does not apply to this run, or None."""
    fn = METRICS[name]
    kind = ctx.run.spec.kind
    if name in getattr(ctx.run.model, "replaces_metrics", ()):
        return f"{ctx.run.cfg.model.name} is scored by its own metric instead"
    if fn.kinds is not None and kind not in fn.kinds:
        return f"it scores {' or '.join(fn.kinds)} data and {ctx.run.cfg.data.name} is {kind}"
    return fn.when(ctx) if fn.when is not None else None


def metric_help(name: str) -> str:
    fn = METRICS[name]
    line = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
    kinds = "any data" if fn.kinds is None else ", ".join(fn.kinds) + " data"
    return f"{line} ({kinds})" if line else f"({kinds})"


@metric("fd_domain", better="min")
def fd_domain(ctx: Context) -> dict:
    """Frechet distance of samples to the test split in a classifier trained on the dataset (no download)."""
    fake_x, fake_y = ctx.fake  # first: a model that cannot sample is skipped before any classifier work
    classifier, info = ctx.classifier
    test_x, _ = ctx.real("test")
    test_f, _ = features_of(classifier, test_x)
    fake_f, fake_pred = features_of(classifier, fake_x)
    train_x, _ = ctx.real("train", limit=ctx.n)
    train_f, _ = features_of(classifier, train_x)
    k = ctx.data.spec.n_classes
    shares = torch.bincount(fake_pred, minlength=k).double() / len(fake_pred)
    features = f"{info['architecture']} penultimate layer ({DomainClassifier.feature_dim}-d), trained on " \
               f"{ctx.data.spec.name} train (accuracy {info['test_accuracy']:.3f} on {info['split']})"
    out = {
        "fd_domain": {"value": frechet_distance(fake_f, test_f),
                      "protocol": ctx.protocol(n_real=len(test_f), real_split="test", features=features)},
        "fd_domain_real_floor": {"value": frechet_distance(train_f, test_f),
                                 "protocol": ctx.protocol(n_generated=len(train_f), n_real=len(test_f),
                                                          real_split="test", compared="real train vs real test",
                                                          features=features)},
        "class_coverage": {"value": float((shares >= 0.5 / k).double().mean()),
                           "protocol": ctx.protocol(definition=f"share of the {k} classes given at least half "
                                                    "their even share of samples by the classifier",
                                                    features=features)},
    }
    if ctx.conditional_on_classes and fake_y is not None:
        out["conditional_accuracy"] = {
            "value": float((fake_pred == fake_y).double().mean()),
            "protocol": ctx.protocol(definition="share of samples asked for class k that the classifier calls k",
                                     labels="cycled through every class", features=features)}
    return out


@metric("precision_recall")
def precision_recall_metric(ctx: Context) -> dict:
    """k-NN manifold precision (fidelity) and recall (coverage) of samples, in the same features."""
    _ = ctx.fake  # first: a model that cannot sample is skipped before any classifier work
    classifier, info = ctx.classifier
    n = min(ctx.n, 5000)
    real_x, _ = ctx.real("train", limit=n)
    real_f, _ = features_of(classifier, real_x)
    fake_f, _ = features_of(classifier, ctx.fake[0][:n])
    precision, recall = precision_recall(real_f.float(), fake_f.float(), k=3)
    protocol = ctx.protocol(n_generated=len(fake_f), n_real=len(real_f), real_split="train", k=3,
                            features=f"{info['architecture']} penultimate layer",
                            method="k-NN manifolds (Kynkaanniemi et al. 2019)")
    return {"precision": {"value": precision, "protocol": protocol}, "recall": {"value": recall, "protocol": protocol}}


@metric("ms_ssim", better="min")
def ms_ssim_metric(ctx: Context, pairs: int = 100) -> dict:
    """Within-class MS-SSIM of samples (grouped by requested label, else by the classifier's call) and of real
    test images; lower is more diverse."""
    fake_x, fake_y = ctx.fake
    if ctx.conditional_on_classes and fake_y is not None:
        grouping = "requested label"
    else:
        _, fake_y = features_of(ctx.classifier[0], fake_x)
        grouping = "domain classifier's prediction"
    value, classes, scales = same_class_ms_ssim(fake_x, fake_y, pairs, ctx.seed)
    test_x, test_y = ctx.real("test")
    real_value, real_classes, _ = same_class_ms_ssim(test_x, test_y, pairs, ctx.seed)
    base = {"pairs_per_class": pairs, "scales": scales, "window": "gaussian 7x7, sigma 1.5"}
    return {
        "ms_ssim": {"value": value, "protocol": ctx.protocol(classes=classes, grouped_by=grouping, **base)},
        "ms_ssim_real": {"value": real_value, "protocol": {"n_real": len(test_x), "real_split": "test",
                                                           "image_size": ctx.run.spec.size, "classes": real_classes,
                                                           **base}},
    }


INCEPTION = weights.register(weights.WeightsFile(
    "inception", INCEPTION_FILE, INCEPTION_URL, "genlab eval: fid, kid, is, translation_fid", 92,
    "the Inception weights"))


def inception_weights() -> Path:
    """The torch-fidelity Inception-v3 weights (the ones FID is defined with), or MetricUnavailable."""
    found = INCEPTION.find()
    if found is None:
        raise MetricUnavailable(INCEPTION.missing("FID/KID/IS", "without them use fd_domain"))
    return found


def inception_extractor(path: Path, device) -> nn.Module:
    """torch-fidelity's public Inception-v3 feature extractor (pool3 2048-d and the unbiased 1008 logits, its
    TF1-compatible resize to 299) with the weights in `path`. The file is read here with torch.load's
    weights_only unpickler, which runs no code, and handed on re-saved: torch-fidelity itself loads a path
    with the full unpickler."""
    import tempfile

    try:
        from torch_fidelity import FeatureExtractorInceptionV3
    except ImportError:
        raise MetricUnavailable("FID/KID/IS need torch-fidelity: pip install 'genlab[fid]'") from None
    def first_line(err: Exception) -> str:
        return (str(err).strip().splitlines() or [type(err).__name__])[0][:160]

    bad_file = f"{path} is not the torch-fidelity Inception weights file ({{}}); download {INCEPTION_URL} again"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  (a truncated download, a file that pickles code: one line, nothing ran)
        raise MetricUnavailable(bad_file.format(first_line(err))) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MetricUnavailable(bad_file.format("it holds no state dict of tensors"))
    try:
        folder = tempfile.TemporaryDirectory(prefix="genlab-inception-")
        files.declare(folder.name, replace=True, what="a temporary folder")
        staged = files.write(Path(folder.name) / "inception.pth", lambda tmp: torch.save(state, tmp))
    except (OSError, RuntimeError) as err:  # a full temporary folder is not the file's fault
        raise MetricUnavailable(f"cannot stage the Inception weights in the temporary folder ({first_line(err)}); "
                                "free some space there or set TMPDIR") from None
    try:
        with folder:
            net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                              feature_extractor_weights_path=str(staged))
    except RuntimeError as err:  # load_state_dict: missing or mis-shaped tensors, another network's weights
        raise MetricUnavailable(bad_file.format(first_line(err))) from None
    except Exception as err:  # noqa: BLE001  (an API change of torch-fidelity: say so, not "bad file")
        raise MetricUnavailable(f"torch-fidelity could not build its Inception extractor ({first_line(err)}); "
                                "genlab is tested with torch-fidelity 0.3 and 0.4") from None
    return net.to(device)


@torch.no_grad()
def inception_features(net: nn.Module, images: torch.Tensor, device, batch: int = 100,
                       progress=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(pool3 features [N, 2048], unbiased logits [N, 1008]) of [-1, 1] images, in float64 on the CPU."""
    pools, logits = [], []
    for start in range(0, len(images), batch):
        pool, logit = net(_to_uint8_rgb(images[start : start + batch]).to(device))
        pools.append(pool.double().cpu())
        logits.append(logit.double().cpu())
        if progress is not None:
            progress(len(pool))
    return torch.cat(pools), torch.cat(logits)


def _to_uint8_rgb(images: torch.Tensor) -> torch.Tensor:
    images = images.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def kernel_inception_distance(a: torch.Tensor, b: torch.Tensor, subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
    """Unbiased MMD^2 with the cubic polynomial kernel (x.y / d + 1)^3, mean and std over random subsets
    (Binkowski et al. 2018, as torch-fidelity and torchmetrics compute it)."""
    generator = torch.Generator().manual_seed(seed)
    a, b = a.double(), b.double()
    d, m = a.shape[1], min(subset_size, len(a), len(b))
    values = []
    for _ in range(subsets):
        x = a[torch.randperm(len(a), generator=generator)[:m]]
        y = b[torch.randperm(len(b), generator=generator)[:m]]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        off = lambda k: (k.sum() - k.diagonal().sum()) / (m * (m - 1))
        values.append(float(off(kxx) + off(kyy) - 2 * kxy.mean()))
    return float(np.mean(values)), float(np.std(values))


def inception_score(logits: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))), mean and std over `splits` equal parts (Salimans et al. 2016)."""
    probs = logits.double().softmax(dim=1)
    scores = []
    for part in probs.chunk(splits):
        marginal = part.mean(dim=0, keepdim=True)
        kl = (part * (part.clamp(min=1e-12).log() - marginal.clamp(min=1e-12).log())).sum(dim=1)
        scores.append(float(kl.mean().exp()))
    return float(np.mean(scores)), float(np.std(scores))


def _inception_features(ctx: Context, images: torch.Tensor, key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(pool3 features [N, 2048], unbiased logits [N, 1008]) of [-1, 1] images, computed once per set."""
    if key in ctx._real:
        return ctx._real[key]
    if "inception" not in ctx._real:
        path = inception_weights()
        ctx._real["inception_sha256"] = weights.sha256_of(path)
        if not ctx._real["inception_sha256"].startswith(INCEPTION.sha256_prefix):
            ctx.log(f"note: {path} is not the published {INCEPTION_FILE} (its sha256 starts "
                    f"{ctx._real['inception_sha256'][:8]}): these FID/KID/IS are not comparable with published ones")
        ctx._real["inception"] = inception_extractor(path, ctx.device)
    with ctx.progress(f"Inception features ({key.removeprefix('inception_')})", len(images)) as advance:
        ctx._real[key] = inception_features(ctx._real["inception"], images, ctx.device, progress=advance)
    return ctx._real[key]


def _inception_protocol(ctx: Context, **extra) -> dict:
    digest = ctx._real.get("inception_sha256", "")
    return ctx.protocol(features="Inception-v3 pool3, 2048-d (torch-fidelity's FeatureExtractorInceptionV3; "
                                 "TF1-compatible bilinear resize to 299)",
                        weights=INCEPTION_FILE, weights_sha256=digest[:16],
                        weights_published=digest.startswith(INCEPTION.sha256_prefix), **extra)


def _real_inception(ctx: Context) -> tuple[torch.Tensor, str]:
    """Inception features of the test split, or of (up to n) training images where there is no test split."""
    split = "test" if ctx.data.test is not None and ctx.data.test.n_images > 0 else "train"
    real_x, _ = ctx.real(split, limit=None if split == "test" else ctx.n)
    return _inception_features(ctx, real_x, f"inception_{split}")[0], split


@metric("fid", better="min")
def fid(ctx: Context) -> dict:
    """FID: Frechet distance in Inception-v3 pool features (needs the torch-fidelity weights on disk)."""
    fake, _ = _inception_features(ctx, ctx.fake[0], "inception_fake")
    real, split = _real_inception(ctx)
    return {"fid": {"value": frechet_distance(fake, real),
                    "protocol": _inception_protocol(ctx, n_real=len(real), real_split=split)}}


@metric("kid", better="min")
def kid(ctx: Context) -> dict:
    """KID: kernel (polynomial MMD) distance in Inception-v3 features, unbiased for small sets."""
    fake, _ = _inception_features(ctx, ctx.fake[0], "inception_fake")
    real, split = _real_inception(ctx)
    mean, std = kernel_inception_distance(fake, real, seed=ctx.seed)
    protocol = _inception_protocol(ctx, n_real=len(real), real_split=split, subsets=100,
                                   subset_size=min(1000, len(fake), len(real)), std=std)
    return {"kid": {"value": mean, "protocol": protocol}}


@metric("is", better="max")
def inception_score_metric(ctx: Context) -> dict:
    """Inception score of the samples (10 splits)."""
    _, logits = _inception_features(ctx, ctx.fake[0], "inception_fake")
    mean, std = inception_score(logits)
    return {"is": {"value": mean, "protocol": _inception_protocol(ctx, splits=10, std=std)}}


def _translates(ctx: Context) -> str | None:
    from genlab.models import GenerativeModel

    return None if type(ctx.run.model).translate is not GenerativeModel.translate else "the model does not translate"


def domain_stacks(source, limit: int | None = None) -> dict[str, torch.Tensor]:
    """A paired or unpaired split's A and B images (or `limit` of each, spread), on the CPU, in file order."""
    stacks: dict[str, list] = {"a": [], "b": []}
    for batch in source.ordered(limit=limit, batch_size=256):
        for name in ("a", "b"):
            if name in batch:
                stacks[name].append(batch[name].float().cpu())
    return {name: torch.cat(parts) for name, parts in stacks.items() if parts}


@metric("translation_fid", kinds=("paired", "unpaired"), when=_translates)
def translation_fid(ctx: Context) -> dict:
    """FID and KID of translated held-out inputs against the held-out target domain (Inception weights)."""
    try:
        inception_weights()  # first: without the weights, one line and no translating
    except MetricUnavailable as why:
        raise MetricUnavailable(str(why).replace("without them use fd_domain", "without them the translation and "
                                                 "domain_transfer metrics still run")) from None
    domains = domain_stacks(ctx.data.evaluation)
    model, out = ctx.run.model, {}
    directions = [("AtoB", "a", "b")] + ([("BtoA", "b", "a")] if ctx.run.spec.kind == "unpaired" else [])
    for direction, source, target in directions:
        with torch.no_grad():
            fake = torch.cat([model.translate(domains[source][i : i + 64].to(ctx.device), direction=direction).cpu()
                              for i in range(0, len(domains[source]), 64)])
        fake_f, _ = _inception_features(ctx, fake, f"inception_translated_{direction}")
        real_f, _ = _inception_features(ctx, domains[target], f"inception_heldout_{target}")
        kid_mean, kid_std = kernel_inception_distance(fake_f, real_f, seed=ctx.seed)
        protocol = {"translated": f"held-out {source.upper()} ({len(fake)})", "against": f"held-out "
                    f"{target.upper()} ({len(real_f)})", "image_size": ctx.run.spec.size,
                    "features": "Inception-v3 pool3 (torch-fidelity weights)", "kid_std": kid_std}
        suffix = "" if direction == "AtoB" else "_b_to_a"
        out[f"translation_fid{suffix}"] = {"value": frechet_distance(fake_f, real_f), "protocol": protocol}
        out[f"translation_kid{suffix}"] = {"value": kid_mean, "protocol": protocol}
    return out


@metric("likelihood", kinds=None)
def likelihood(ctx: Context) -> dict:
    """The model's own held-out scores on the whole test split (VAE: -ELBO in nats and bits/dim)."""
    source = ctx.data.test if ctx.data.test is not None else ctx.data.train
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        scores = ctx.run.model.evaluate(source.ordered(batch_size=500))
    floats = {k.removeprefix("test_"): v for k, v in scores.items() if isinstance(v, float)}
    if not floats:
        raise MetricUnavailable(f"{ctx.run.cfg.model.name} reports no likelihood or reconstruction score")
    protocol = {"split": "test" if ctx.data.test is not None else "train", "n_real": source.n_images,
                "image_size": ctx.run.spec.size, "channels": ctx.run.spec.channels,
                "note": _first_line(type(ctx.run.model).evaluate.__doc__) or "the model's evaluate()"}
    return {name: {"value": value, "protocol": protocol} for name, value in floats.items()}


def _first_line(doc: str | None) -> str:
    """A docstring's first sentence-line(s) up to the first blank line, on one line."""
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def psnr(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of [-1, 1] images, measured on [0, 1] pixels (peak 1)."""
    mse = ((output.clamp(-1, 1) - target) / 2).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))  # at most 100 dB: an exact output stays finite


@metric("translation", kinds=("paired", "superres"),
        when=lambda ctx: None if getattr(ctx.run.model, "translates", None) else "the model does not translate")
def translation(ctx: Context) -> dict:
    """L1, PSNR and SSIM of a translation model's outputs against the held-out targets, beside a baseline."""
    l1, quality, base_l1, base_quality, shapes, resized = [], [], [], [], set(), False
    similarity, base_similarity = [], []
    for x, out, target in ctx.pairs():
        resized = resized or x.shape[-2:] != target.shape[-2:]
        # the baseline: the input itself, resized (bicubic) where the target is larger: what any model must beat
        base = x if x.shape[-2:] == target.shape[-2:] else \
            F.interpolate(x, size=target.shape[-2:], mode="bicubic", align_corners=False).clamp(-1, 1)
        if base.shape[1] != target.shape[1]:
            base = base.mean(1, keepdim=True).expand_as(target)
        l1.append((out.clamp(-1, 1) - target).abs().flatten(1).mean(1) / 2)
        base_l1.append((base - target).abs().flatten(1).mean(1) / 2)
        quality.append(psnr(out, target))
        base_quality.append(psnr(base, target))
        unit = lambda t: (t.clamp(-1, 1) + 1) / 2
        similarity.append(ssim(unit(out), unit(target)))
        base_similarity.append(ssim(unit(base), unit(target)))
        shapes.add(tuple(target.shape[-2:]))
    if not l1:
        raise MetricUnavailable(f"{ctx.data.spec.name} has no held-out pairs")
    inputs, targets = ctx.run.model.translates
    whole = hasattr(ctx.data.evaluation, "whole")
    protocol = {"split": "test" if ctx.data.test is not None else "train", "n_images": sum(len(v) for v in l1),
                "input": inputs, "target": targets, "pixels": "[0, 1], all channels, averaged per image",
                "images": "whole, one at a time" if whole else "the held-out crops",
                "sizes": sorted(shapes)[:5] if len(shapes) <= 5 else f"{len(shapes)} different sizes",
                "baseline": "the input, bicubic-resized to the target's size" if resized else "the input itself"}
    mean = lambda parts: float(torch.cat(parts).mean())
    return {"translation_l1": {"value": mean(l1), "protocol": protocol},
            "translation_psnr": {"value": mean(quality), "protocol": {**protocol, "unit": "dB"}},
            "baseline_l1": {"value": mean(base_l1), "protocol": protocol},
            "baseline_psnr": {"value": mean(base_quality), "protocol": {**protocol, "unit": "dB"}},
            "translation_ssim": {"value": mean(similarity), "protocol": {**protocol, "ssim": SSIM_PROTOCOL}},
            "baseline_ssim": {"value": mean(base_similarity), "protocol": {**protocol, "ssim": SSIM_PROTOCOL}}}


SSIM_PROTOCOL = "Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, valid positions, channels averaged"


def _scores(model, batches, keep_images: bool = False):
    """(scores, images, labels) over batches, on the CPU: the model's per-example scores, and with keep_images the
    images (batch["image"]; None for other kinds) and labels, for the input-complexity correction and per-class
    numbers (None without keep_images)."""
    scores, images, labels = [], [], []
    with torch.no_grad(), model.evaluating(), torch.random.fork_rng(devices=[]):
        for batch in batches:
            scores.append(model.score(batch).float().cpu())
            if keep_images:
                images.append(batch["image"].cpu() if "image" in batch else None)
                labels.append(batch["label"].cpu() if "label" in batch else torch.zeros(batch.size, dtype=torch.long))
    scores = torch.cat(scores) if scores else torch.zeros(0)
    if not keep_images:
        return scores, None, None
    images = torch.cat(images) if images and all(i is not None for i in images) else None
    return scores, images, (torch.cat(labels) if labels else None)


def png_bits(images: torch.Tensor) -> torch.Tensor:
    """The input complexity L(x) of Serra et al. 2020: each 8-bit image's length in bits as a PNG (zlib level 9,
    PIL's encoder), [-1, 1] images in."""
    import io

    from PIL import Image

    values = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    lengths = []
    for image in values:
        array = image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).numpy()
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG", optimize=True, compress_level=9)
        lengths.append(8 * len(buffer.getvalue()))
    return torch.tensor(lengths, dtype=torch.float64)


CORRECTED = "-log2 p(x) - L(x) (PNG bits)"


def complexity_corrected(model, scores: torch.Tensor, images: torch.Tensor | None) -> torch.Tensor | None:
    """S(x) = -log2 p(x) - L(x) per image (Serra et al. 2020), where the model's score is -log p of the 8-bit image
    in nats (model.score_is_8bit_nll) and the images are at hand; else None."""
    if images is None or not getattr(model, "score_is_8bit_nll", False):
        return None
    return scores.double() / math.log(2) - png_bits(images)


def rank_scores(ctx: Context, prefix: str, normal: torch.Tensor, unusual: torch.Tensor, protocol: dict,
                corrected: torch.Tensor | None = None) -> dict:
    """AUROC and AUPRC (the unusual examples are the positives; never accuracy: the classes are imbalanced) of the
    model's score, with ROC, precision-recall and histogram figures; and the same for `corrected`, the
    input-complexity corrected scores of the normal then the unusual examples (complexity_corrected), if given."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    truth = np.r_[np.zeros(len(normal)), np.ones(len(unusual))]
    plain = torch.cat([normal, unusual]).double().numpy()
    if not np.isfinite(plain).all():
        raise MetricUnavailable("the model gave non-finite scores (a diverged run?)")
    scores = {"-log p(x)" if getattr(ctx.run.model, "score_is_8bit_nll", False) else "score": plain}
    if corrected is not None:
        scores[CORRECTED] = corrected.numpy()
    chance = round(len(unusual) / len(truth), 4)
    suffixes = dict(zip(scores, ("", "_complexity")))
    out = {}
    for label, suffix in suffixes.items():
        values = scores[label]
        detail = {**protocol, "score": label if suffix else protocol["score"], "positives": protocol["positives"]}
        if suffix:
            detail["correction"] = "input complexity (Serra et al. 2020): -log2 p(x) minus the PNG length in bits"
        out[f"{prefix}_auroc{suffix}"] = {"value": float(roc_auc_score(truth, values)), "protocol": detail}
        out[f"{prefix}_auprc{suffix}"] = {"value": float(average_precision_score(truth, values)),
                                         "protocol": {**detail, "chance": chance}}
    out[f"{prefix}_mean_score_normal"] = {"value": float(normal.mean()), "protocol": protocol}
    out[f"{prefix}_mean_score_unusual"] = {"value": float(unusual.mean()), "protocol": protocol}
    # a flow's -log p(x) far off its data is heavy-tailed: the medians say more than the means
    out[f"{prefix}_median_score_normal"] = {"value": float(normal.median()), "protocol": protocol}
    out[f"{prefix}_median_score_unusual"] = {"value": float(unusual.median()), "protocol": protocol}
    ctx.figures.update(ranking_figures(prefix, truth, scores, protocol,
                                       {k: out[f"{prefix}_auroc{s}"]["value"] for k, s in suffixes.items()},
                                       {k: out[f"{prefix}_auprc{s}"]["value"] for k, s in suffixes.items()}, chance))
    return out


def ranking_figures(prefix, truth, scores, protocol, aurocs, auprcs, chance) -> dict[str, bytes]:
    """<prefix>_roc.png, <prefix>_pr.png and <prefix>_scores.png (histograms of each score, normal vs unusual)."""
    import matplotlib
    from sklearn.metrics import precision_recall_curve as pr_curve
    from sklearn.metrics import roc_curve

    from genlab.core.records import figure_png as png

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    normal_name, unusual_name = protocol["normal_name"], protocol["unusual_name"]
    detail = protocol.get("normal_detail", normal_name)
    if len(detail) > 48:
        detail = detail[:45] + "...)"

    figures = {}
    fig, ax = plt.subplots(figsize=(5, 4.6))
    for label, values in scores.items():
        fpr, tpr, _ = roc_curve(truth, values)
        ax.plot(fpr, tpr, label=f"{label}: AUROC {aurocs[label]:.3f}")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="chance")
    ax.set(xlabel=f"false positive rate ({normal_name} called {unusual_name})", ylabel="true positive rate",
           title=f"ROC: {unusual_name} vs {normal_name}")
    ax.legend(fontsize=8, loc="lower right")
    figures[f"{prefix}_roc"] = png(fig)
    fig, ax = plt.subplots(figsize=(5, 4.6))
    for label, values in scores.items():
        precision, recall, _ = pr_curve(truth, values)
        ax.plot(recall, precision, label=f"{label}: AUPRC {auprcs[label]:.3f}")
    ax.axhline(chance, color="grey", lw=0.8, ls="--", label=f"chance ({chance:.3f})")
    ax.set(xlabel="recall", ylabel="precision", ylim=(0, 1.02), title=f"precision-recall: {unusual_name} positive")
    ax.legend(fontsize=8, loc="lower left")
    figures[f"{prefix}_pr"] = png(fig)
    fig, axes = plt.subplots(1, len(scores), figsize=(5.2 * len(scores), 4))
    for ax, (label, values) in zip(np.atleast_1d(axes), scores.items()):
        axis = label
        q1, q3 = np.percentile(values[truth == 0], [25, 75])
        if np.ptp(values) > 50 * max(q3 - q1, 1e-12):  # heavy tails (a flow far off its data): a log axis
            values, axis = np.log10(values - values.min() + 1), f"log10({label} - min + 1)"
        low, high = np.percentile(values, [0.5, 99.5])
        bins = np.linspace(low, high if high > low else low + 1, 60)
        clipped = np.clip(values, bins[0], bins[-1])  # the last 0.5% in the edge bins
        ax.hist(clipped[truth == 0], bins=bins, alpha=0.6, density=True,
                label=f"{detail} ({int((truth == 0).sum())})")
        ax.hist(clipped[truth == 1], bins=bins, alpha=0.6, density=True, label=f"{unusual_name} ({int(truth.sum())})")
        ax.set(xlabel=axis, ylabel="density", title=f"{label}: AUROC {aurocs[label]:.3f}")
        ax.legend(fontsize=8)
    figures[f"{prefix}_scores"] = png(fig)
    return figures


def _score_doc(model) -> str:
    return _first_line(type(model).score.__doc__) or "model.score"


def _has_score(ctx: Context) -> str | None:
    return None if callable(getattr(ctx.run.model, "score", None)) else \
        f"{ctx.run.cfg.model.name} gives no per-example score to rank by"


@metric("ood", kinds=None, when=lambda ctx: "no --ood-data given" if ctx.ood_name is None else _has_score(ctx))
def out_of_distribution(ctx: Context) -> dict:
    """AUROC and AUPRC of the model's per-example score, held-out split vs a second dataset (--ood-data)."""
    model, ood = ctx.run.model, ctx.ood
    keep = bool(getattr(model, "score_is_8bit_nll", False))  # the images are needed for the correction only
    inside, inside_x, _ = _scores(model, ctx.data.evaluation.ordered(batch_size=500), keep_images=keep)
    outside, outside_x, _ = _scores(model, ood.evaluation.ordered(batch_size=500), keep_images=keep)
    protocol = {"in_distribution": f"{ctx.data.spec.name} {'test' if ctx.data.test is not None else 'train'}",
                "out_of_distribution": f"{ood.spec.name} {'test' if ood.test is not None else 'train'}",
                "n_in": len(inside), "n_out": len(outside), "positives": "out-of-distribution",
                "score": _score_doc(model), "image_size": ctx.run.spec.size,
                "normal_name": ctx.data.spec.name, "unusual_name": ood.spec.name}
    corrected = None if inside_x is None or outside_x is None else \
        complexity_corrected(model, torch.cat([inside, outside]), torch.cat([inside_x, outside_x]))
    out = rank_scores(ctx, "ood", inside, outside, protocol, corrected)
    for stat in ("mean", "median"):
        out[f"ood_{stat}_score_in"] = out.pop(f"ood_{stat}_score_normal")
        out[f"ood_{stat}_score_out"] = out.pop(f"ood_{stat}_score_unusual")
    return out


@metric("anomaly", kinds=None, when=lambda ctx: "no --anomaly given" if not ctx.anomaly else _has_score(ctx))
def anomaly(ctx: Context) -> dict:
    """AUROC and AUPRC of the model's score on the whole test split, the classes left out of data.normal_classes
    being the anomalies (--anomaly)."""
    model, cfg = ctx.run.model, ctx.run.cfg
    normal = cfg.data.get("normal_classes")
    if normal is None:
        if "normal_classes" not in cfg.data:
            raise GenlabError(f"--anomaly needs a run trained on normal classes only, and data={cfg.data.name} has no "
                              "classes to leave out: use --ood-data NAME to score a second dataset instead")
        raise GenlabError(f"--anomaly needs a run trained on normal classes only: this one trained on every class "
                          f"of {cfg.data.name}; train with data.normal_classes=[0] (say) and evaluate that run")
    normal = list(normal)
    data = ctx.run_data(normal_classes=None, limit=None)  # the whole test split: normal and anomalous classes
    if data.test is None or data.test.n_images == 0:
        raise GenlabError(f"--anomaly: {cfg.data.name} has no test split to score")
    scores, images, labels = _scores(model, data.test.ordered(batch_size=500), keep_images=True)
    anomalous = ~torch.isin(labels, torch.tensor(normal))
    names = data.spec.class_names or [str(k) for k in range(data.spec.n_classes)]
    if not bool(anomalous.any()) or bool(anomalous.all()):
        which = "anomalous" if not bool(anomalous.any()) else "normal"
        raise GenlabError(f"--anomaly: the {cfg.data.name} test split holds no {which} images for "
                          f"data.normal_classes={normal}: pick classes that leave both in the test split")
    normal_names = ", ".join(names[k] for k in normal)
    protocol = {"split": f"{cfg.data.name} test", "normal_classes": normal, "n_normal": int((~anomalous).sum()),
                "n_anomalous": int(anomalous.sum()), "positives": "anomalous (classes outside normal_classes)",
                "score": _score_doc(model), "image_size": ctx.run.spec.size,
                "normal_name": "normal", "normal_detail": f"normal ({normal_names})", "unusual_name": "anomalous"}
    corrected = complexity_corrected(model, scores, images)
    out = rank_scores(ctx, "anomaly", scores[~anomalous], scores[anomalous], protocol,
                      None if corrected is None else torch.cat([corrected[~anomalous], corrected[anomalous]]))
    # per anomalous class: which classes the score finds, which it misses (and the corrected score)
    from sklearn.metrics import roc_auc_score

    for k in sorted(set(labels[anomalous].tolist())):
        mine = labels == k
        truth = np.r_[np.zeros(int((~anomalous).sum())), np.ones(int(mine.sum()))]
        for column, values, suffix in (("AUROC", scores, ""), ("AUROC, complexity-corrected", corrected, "_complexity")):
            if values is None:
                continue
            value = roc_auc_score(truth, torch.cat([values[~anomalous], values[mine]]).double().numpy())
            out[f"anomaly_auroc{suffix}_class_{k}"] = {"value": float(value), "protocol": {
                **protocol, "anomalous_class": names[k], "table": "anomaly AUROC per class", "row": names[k],
                "column": column}}
    return out


def _finite(value):
    """A JSON-ready copy: NaN and infinities become None (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def run_header(run: Run) -> dict:
    """The top of a metrics.json: which run, checkpoint, step and weights its numbers are of."""
    import genlab

    return {"genlab_version": genlab.__version__, "run": str(run.path), "checkpoint": str(run.checkpoint),
            "step": run.step, "model": run.cfg.model.name, "data": run.cfg.data.name,
            "weights": "ema" if run.ema else "trained"}


def merge_metrics(path: Path, header: dict, result: dict) -> dict:
    """Write RUN/metrics.json with this call's numbers merged into those already there: each metric output keeps
    its own value, protocol, time, checkpoint, step and weights, so `eval --metrics a` then `--metrics b` leaves
    both. A metric scored again replaces its old outputs; a damaged file is replaced whole. Returns the record."""
    import json
    from datetime import datetime

    old: dict = {}
    if os.path.lexists(path):
        try:  # read as untrusted input: a link or an oversized file is not read (and the write says so)
            old = json.loads(files.read_bytes(path, files.MAX_TEXT, root=path.parent, what="metrics file"))
        except (GenlabError, ValueError, RecursionError):  # not JSON, a number too long, a nesting too deep
            old = {}
    old = old if isinstance(old, dict) else {}
    when = datetime.now(UTC).isoformat(timespec="seconds")
    stamp = {"time": when, "checkpoint": header.get("checkpoint"), "step": header.get("step"),
             "weights": header.get("weights")}
    fresh = {name: {**entry, **stamp} for name, entry in result["metrics"].items()}
    ran = set(result.get("ran", ()))  # only a metric scored now replaces its old numbers (not one skipped now)
    # an entry from before entries carried their own stamp gets the old file's: it was scored then, not now
    old_stamp = {key: old.get(key) for key in ("time", "checkpoint", "step", "weights")}
    kept = {name: {**old_stamp, **entry} for name, entry in (old.get("metrics") or {}).items()
            if isinstance(entry, dict) and name not in fresh and entry.get("metric") not in ran}
    skipped = {name: why for name, why in (old.get("skipped") or {}).items() if name not in ran}
    figures = {**(old.get("figures") or {}), **result.get("figures", {})}
    record = {**header, "time": when, "metrics": {**kept, **fresh}, "skipped": {**skipped, **result["skipped"]}}
    if figures:
        record["figures"] = figures
    text = json.dumps(_finite(record), indent=2, allow_nan=False) + "\n"
    try:
        atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    except OSError as err:
        raise GenlabError(f"cannot write {path} ({err.strerror or err})") from None
    return record


def evaluate_run(run: Run, names: list[str] | None, n: int, seed: int, device: torch.device, log=print,  # noqa: C901  (to be split: issue 24)
                 ood_data: str | None = None, anomaly: bool = False, data: list[str] | None = None) -> dict:
    """Run each metric; a metric asked for by name that cannot run is an error, a default one is skipped
    with its reason, and one that does not apply to this run (another data kind, no --ood-data) is left out.
    Returns {"metrics": {name: {value, protocol}}, "skipped": {metric: reason}, "figures": {name: PNG bytes}}."""
    explicit = names is not None
    for name in names or []:
        METRICS[name]  # unknown names: one line listing the valid ones
    ctx = Context(run, n, seed, device, log, ood_name=ood_data, anomaly=anomaly, data_settings=list(data or []))
    if anomaly and "anomaly" not in (names or ["anomaly"]):
        raise GenlabError("--anomaly is read only by the anomaly metric: add it to --metrics")
    if ood_data is not None and "ood" not in (names or ["ood"]):
        raise GenlabError("--ood-data is read only by the ood metric: add it to --metrics")
    if ood_data is not None and not explicit and not_applicable("ood", ctx):
        raise GenlabError(f"--ood-data: the ood metric does not apply to this run: {not_applicable('ood', ctx)}")
    results, skipped, ran = {}, {}, []
    for name in names or METRICS.in_order():
        why = not_applicable(name, ctx)
        if why is not None:
            if explicit:
                raise GenlabError(f"{name} does not apply to this run: {why}")
            continue
        try:
            scores = METRICS[name](ctx)
            clash = sorted(set(scores) & set(results))
            if clash:
                raise GenlabError(f"metric {name} reports {clash[0]}, which another metric reported already: "
                                  "give the family's metric outputs names of their own")
            results.update({key: {**entry, "metric": name} for key, entry in scores.items()})
            ran.append(name)
        except MetricUnavailable as why:
            if explicit:
                raise GenlabError(f"{name}: {why}") from None
            skipped[name] = str(why)
    return {"metrics": results, "skipped": skipped, "figures": ctx.figures, "ran": ran}
