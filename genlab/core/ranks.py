"""Which process this is in a data-parallel job, from the environment alone (no torch): rank, local rank, world size."""

from __future__ import annotations

import os

# set by `genlab train --nproc` in the ranks it starts: the run folder it claimed (and holds locked) for them
HELD_ENV = "GENLAB_RUN_HELD"


def world_size() -> int:
    """Processes in this job: torchrun's WORLD_SIZE (1 outside one)."""
    try:
        return max(int(os.environ.get("WORLD_SIZE", "1") or 1), 1)
    except ValueError:
        return 1


def rank() -> int:
    if world_size() <= 1:
        return 0
    try:
        return int(os.environ.get("RANK", "0") or 0)
    except ValueError:
        return 0


def local_rank() -> int:
    try:
        return int(os.environ.get("LOCAL_RANK", str(rank())) or 0)
    except ValueError:
        return 0
