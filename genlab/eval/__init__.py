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

A metric is registered with @metric(name, kinds=..., when=...) (genlab/core/metrics.py) here or in a family's model file; `genlab eval`
runs those that apply to the run. The Context gives each one its sources: samples (`fake`), real splits
(`real`), whole images of any size (`whole`), input -> output pairs (`pairs`) and a second dataset (`ood`).
"""

# importing the package registers the shared metrics (their order: core/metrics.py SHARED_ORDER)
from genlab.eval import density, inception, samples, translation  # noqa: F401
