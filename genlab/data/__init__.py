"""Datasets, found by name in DATASETS: each has locate(cfg) (cheap: is it there?) and build(...) -> Data."""

from genlab.data import folders, tensors  # noqa: F401  (registers the datasets)
from genlab.data.base import Batch, Data, DataSpec

__all__ = ["Batch", "Data", "DataSpec", "build_data"]


def build_data(cfg, batch_size: int, seed: int, device) -> Data:
    from genlab.registry import DATASETS

    return DATASETS[cfg.name].build(cfg, batch_size, seed, device)
