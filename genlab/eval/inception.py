"""The Inception-v3 metrics (FID, KID, IS) with torch-fidelity's public extractor, where its weights are on disk."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from genlab.core import files, weights
from genlab.core.imaging import frechet_distance, inception_score, kernel_inception_distance
from genlab.core.metrics import MetricUnavailable, metric
from genlab.eval.context import Context

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"


INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"


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


def inception_features_for(ctx: Context, images: torch.Tensor, key: str) -> tuple[torch.Tensor, torch.Tensor]:
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
    return inception_features_for(ctx, real_x, f"inception_{split}")[0], split


@metric("fid", better="min")
def fid(ctx: Context) -> dict:
    """FID: Frechet distance in Inception-v3 pool features (needs the torch-fidelity weights on disk)."""
    fake, _ = inception_features_for(ctx, ctx.fake[0], "inception_fake")
    real, split = _real_inception(ctx)
    return {"fid": {"value": frechet_distance(fake, real),
                    "protocol": _inception_protocol(ctx, n_real=len(real), real_split=split)}}


@metric("kid", better="min")
def kid(ctx: Context) -> dict:
    """KID: kernel (polynomial MMD) distance in Inception-v3 features, unbiased for small sets."""
    fake, _ = inception_features_for(ctx, ctx.fake[0], "inception_fake")
    real, split = _real_inception(ctx)
    mean, std = kernel_inception_distance(fake, real, seed=ctx.seed)
    protocol = _inception_protocol(ctx, n_real=len(real), real_split=split, subsets=100,
                                   subset_size=min(1000, len(fake), len(real)), std=std)
    return {"kid": {"value": mean, "protocol": protocol}}


@metric("is", better="max")
def inception_score_metric(ctx: Context) -> dict:
    """Inception score of the samples (10 splits)."""
    _, logits = inception_features_for(ctx, ctx.fake[0], "inception_fake")
    mean, std = inception_score(logits)
    return {"is": {"value": mean, "protocol": _inception_protocol(ctx, splits=10, std=std)}}

