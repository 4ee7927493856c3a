"""Image maths shared by metrics and models: Frechet distance, k-NN precision/recall, PSNR, SSIM, MS-SSIM, KID, IS."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from genlab.core.metrics import MetricUnavailable


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


PSNR_FLOOR = 1e-10  # the smallest mean squared error, relative to peak**2: an exact copy scores 100 dB, finite


def psnr_of_mse(mse, peak: float = 1.0) -> torch.Tensor:
    """The one PSNR: 10 log10(peak**2 / MSE) in dB, of a mean squared error (a tensor per image, or one number)
    measured on pixels whose range is `peak` (1 for [0, 1], 2 for [-1, 1], 255 for 8-bit levels)."""
    mse = torch.as_tensor(mse, dtype=torch.float64) if not torch.is_tensor(mse) else mse
    return 10 * torch.log10(peak**2 / mse.clamp_min(PSNR_FLOOR * peak**2))


def psnr(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of [-1, 1] images, measured on [0, 1] pixels (peak 1)."""
    return psnr_of_mse(((output.clamp(-1, 1) - target) / 2).pow(2).flatten(1).mean(1))


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


SSIM_PROTOCOL = "Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, valid positions, channels averaged"

