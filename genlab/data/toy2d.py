"""2-D toy densities, the flow papers' classic figures (moons, circles, checkerboard, eight Gaussians, ...).

Points are drawn from data.seed (not the training seed: the dataset stays the same across a sweep of seeds),
then centred and scaled by one number so their overall standard deviation is 1 (the shape keeps its aspect).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from omegaconf import DictConfig

from genlab.core.config import check_choice, check_float, check_int
from genlab.core.errors import GenlabError
from genlab.core.registry import DATASETS
from genlab.data.base import Data, DataSpec, check_batches
from genlab.data.kinds import VectorBatches


def _moons(n, rng, noise):
    from sklearn.datasets import make_moons

    return make_moons(n, noise=0.05 if noise is None else noise, random_state=rng.randint(2**31))[0]


def _circles(n, rng, noise):
    from sklearn.datasets import make_circles

    return make_circles(n, factor=0.5, noise=0.04 if noise is None else noise, random_state=rng.randint(2**31))[0]


def _checkerboard(n, rng, noise):
    """Uniform on the 8 dark squares of a 4x4 board."""
    cell = rng.randint(8, size=n)
    row = cell // 2
    column = 2 * (cell % 2) + (row % 2)
    return np.stack([column + rng.rand(n), row + rng.rand(n)], 1) - 2.0


def _eight_gaussians(n, rng, noise):
    angle = rng.randint(8, size=n) * (math.pi / 4)
    centres = 2.0 * np.stack([np.cos(angle), np.sin(angle)], 1)
    return centres + rng.randn(n, 2) * (0.1 if noise is None else noise)


def _two_spirals(n, rng, noise):
    t = np.sqrt(rng.rand(n)) * 3 * math.pi
    arm = rng.randint(2, size=n) * 2 - 1
    points = arm[:, None] * np.stack([t * np.cos(t), t * np.sin(t)], 1)
    return points + rng.randn(n, 2) * (0.3 if noise is None else noise)


def _pinwheel(n, rng, noise):
    """Five curved arms (the pinwheel of Johnson et al. 2016)."""
    arm = rng.randint(5, size=n)
    radial, tangential = rng.randn(n) * 0.3 + 1.0, rng.randn(n) * (0.05 if noise is None else noise)
    angle = arm * (2 * math.pi / 5) + 0.25 * np.exp(radial)
    return np.stack([radial * np.cos(angle) - tangential * np.sin(angle),
                     radial * np.sin(angle) + tangential * np.cos(angle)], 1)


def _swissroll(n, rng, noise):
    from sklearn.datasets import make_swiss_roll

    points = make_swiss_roll(n, noise=0.5 if noise is None else noise, random_state=rng.randint(2**31))[0]
    return points[:, [0, 2]]


def _rings(n, rng, noise):
    radius = (rng.randint(4, size=n) + 1) * 0.75
    angle = rng.rand(n) * 2 * math.pi
    return radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1) + rng.randn(n, 2) * (
        0.06 if noise is None else noise)


SHAPES = {"moons": _moons, "circles": _circles, "checkerboard": _checkerboard, "eight_gaussians": _eight_gaussians,
          "two_spirals": _two_spirals, "pinwheel": _pinwheel, "swissroll": _swissroll, "rings": _rings}


def toy_points(shape: str, n: int, seed: int, noise: float | None = None) -> np.ndarray:
    """n points of one shape, centred, with overall standard deviation 1."""
    points = SHAPES[shape](n, np.random.RandomState(seed), noise).astype(np.float64)
    points = points - points.mean(0)
    return (points / points.std()).astype(np.float32)


MAX_POINTS = 10_000_000


@DATASETS.register("toy2d")
class Toy2D:
    """2-D toy densities drawn from a seed: data.shape, data.n_train and data.n_test points."""

    kind = "vectors"  # batches of {"x": [N, 2], "label"} (data.Batch)

    @staticmethod
    def check_config(cfg: DictConfig) -> None:
        check_choice(cfg, "data.shape", tuple(SHAPES))
        n_train = check_int(cfg, "data.n_train", minimum=1, maximum=MAX_POINTS)
        n_test = check_int(cfg, "data.n_test", minimum=0, maximum=MAX_POINTS)
        if n_train + n_test > MAX_POINTS:
            raise GenlabError(f"data.n_train + data.n_test = {n_train + n_test:,} points: at most {MAX_POINTS:,} "
                              "(they are made in memory at once)")
        check_int(cfg, "data.seed", minimum=0, maximum=2**32 - 1)
        noise = check_float(cfg, "data.noise", minimum=0.0, optional=True)
        if noise is not None and cfg.data.shape == "checkerboard":
            raise GenlabError("data.noise: the checkerboard is uniform on its squares and takes no noise; drop it")

    @staticmethod
    def locate(cfg: DictConfig) -> None:
        return None  # made from a seed, nothing to find

    @staticmethod
    def build(cfg: DictConfig, batch_size: int, seed: int, device: torch.device) -> Data:
        n_train, n_test = int(cfg.n_train), int(cfg.n_test)
        if cfg.get("limit") is not None:
            n_train = min(n_train, int(cfg.limit))
        points = torch.from_numpy(toy_points(cfg.shape, n_train + n_test, int(cfg.seed), cfg.get("noise")))
        spec = DataSpec(f"toy2d_{cfg.shape}", 0, 0, kind="vectors", n_train=n_train, n_test=n_test)
        train = VectorBatches(points[:n_train], batch_size, seed, device)
        check_batches(train, batch_size, spec.name)
        test = VectorBatches(points[n_train:], batch_size, seed, device) if n_test else None
        return Data(spec, train, test)
