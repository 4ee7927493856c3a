"""Sample-quality metrics in the domain classifier's features: fd_domain, precision/recall, MS-SSIM."""

from __future__ import annotations

import torch

from genlab.core.classifier import DomainClassifier, features_of
from genlab.core.imaging import frechet_distance, precision_recall, same_class_ms_ssim
from genlab.core.metrics import metric
from genlab.eval.context import Context


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
                                 "protocol": ctx.protocol(of_samples=False, n_generated=len(train_f), n_real=len(test_f),
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

