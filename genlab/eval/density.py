"""Likelihood and ranking metrics: the model's own held-out scores, out-of-distribution and anomaly AUROC/AUPRC."""

from __future__ import annotations

import math

import numpy as np
import torch

from genlab.core.errors import GenlabError
from genlab.core.metrics import MetricUnavailable, metric
from genlab.core.plots import figure_png as png
from genlab.eval.context import Context
from genlab.models.capabilities import ScoresDensity


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
    return None if isinstance(ctx.run.model, ScoresDensity) else \
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

