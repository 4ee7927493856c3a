"""Translation metrics: L1/PSNR/SSIM against held-out targets, FID/KID of translated images."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genlab.core.imaging import SSIM_PROTOCOL, frechet_distance, kernel_inception_distance, psnr, ssim
from genlab.core.metrics import MetricUnavailable, metric
from genlab.data.base import domain_stacks
from genlab.eval.context import Context
from genlab.eval.inception import inception_features_for, inception_weights
from genlab.models.capabilities import Translates


def _translates(ctx: Context) -> str | None:
    return None if isinstance(ctx.run.model, Translates) else "the model does not translate"


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
        fake_f, _ = inception_features_for(ctx, fake, f"inception_translated_{direction}")
        real_f, _ = inception_features_for(ctx, domains[target], f"inception_heldout_{target}")
        kid_mean, kid_std = kernel_inception_distance(fake_f, real_f, seed=ctx.seed)
        protocol = {"translated": f"held-out {source.upper()} ({len(fake)})", "against": f"held-out "
                    f"{target.upper()} ({len(real_f)})", "image_size": ctx.run.spec.size,
                    "features": "Inception-v3 pool3 (torch-fidelity weights)", "kid_std": kid_std}
        suffix = "" if direction == "AtoB" else "_b_to_a"
        out[f"translation_fid{suffix}"] = {"value": frechet_distance(fake_f, real_f), "protocol": protocol}
        out[f"translation_kid{suffix}"] = {"value": kid_mean, "protocol": protocol}
    return out


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

