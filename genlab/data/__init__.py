"""Datasets, found by name in DATASETS: each has `kind`, locate(cfg) (cheap: is it there?) and build(...) -> Data.

Every module in this folder is imported, so a new dataset's @DATASETS.register line is all it adds.
"""

import importlib
import pkgutil

from genlab.core.registry import DATASETS
from genlab.data.base import Batch, Data, DataSpec

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Batch", "Data", "DataSpec", "build_data"]


def build_data(cfg, batch_size: int, seed: int, device) -> Data:
    return DATASETS[cfg.name].build(cfg, batch_size, seed, device)
