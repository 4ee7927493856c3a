"""Data-parallel training over several processes: `genlab train --nproc N ...` or `torchrun ... -m genlab train`.

One run, N processes (ranks), one run folder. What each part does:

- the run folder is decided once: by `genlab train --nproc` before it starts the ranks, or under a plain
  torchrun by rank 0, which claims it and tells the others (`agree_on_folder`); only rank 0 writes into it
  (runwriter.RunWriter is silent elsewhere, Hydra writes no .hydra/ or train.log there);
- `train.batch_size` is the global batch: every rank trains on its share of each batch of the one
  (seed, epoch) order (`part`), so N processes see exactly the batches one process would;
- the weights start equal (rank 0's are broadcast), gradients are averaged over the ranks before every
  optimiser step (`average_gradients`, one flat all-reduce per update, done by the trainer's Engine), so the
  weights stay equal without wrapping the networks: checkpoints keep their keys and load in one process;
- BatchNorm layers become `GlobalBatchNorm` (statistics of the global batch; torch's SyncBatchNorm on CUDA),
  so the normalisation is the one a single process with the global batch computes;
- each rank draws its own noise (its RNG is seeded with an offset per rank), and a checkpoint keeps every
  rank's RNG state, so a resume on the same number of processes continues exactly;
- a stop (Ctrl-C, SIGTERM) is agreed after every step, so every rank stops after the same step.

gloo on the CPU (so all of this is tested on a laptop), nccl for CUDA tensors.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from genlab.core.checkpoint import seed_everything
from genlab.core.errors import GenlabError
from genlab.core.ranks import local_rank, rank, world_size


def active() -> bool:
    """A data-parallel job with its process group up."""
    return world_size() > 1 and dist.is_available() and dist.is_initialized()


def init() -> None:
    """Join the job's process group (torchrun's env:// rendezvous) once; a no-op in a single process."""
    if world_size() <= 1 or dist.is_initialized():
        return
    for key in ("MASTER_ADDR", "MASTER_PORT", "RANK"):
        if key not in os.environ:
            raise GenlabError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} is set but {key} is not: start data-parallel "
                              "runs with `genlab train --nproc N ...` or torchrun, or unset WORLD_SIZE")
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
    if torch.cuda.is_available() and local_rank() < torch.cuda.device_count():
        torch.cuda.set_device(local_rank())  # nccl's collectives run on this rank's own GPU
    dist.init_process_group(backend, timeout=timedelta(minutes=30))


def agree_on_folder(decide) -> str:
    """Rank 0 runs `decide()` (claims the run folder) and every rank gets its result; a GenlabError on rank 0
    becomes the same error on every rank."""
    message = [None, None]
    if rank() == 0:
        try:
            message = [str(decide()), None]
        except GenlabError as err:
            message = [None, str(err)]
    dist.broadcast_object_list(message, src=0)
    if message[1] is not None:
        raise GenlabError(message[1])
    return message[0]


PLANNED = 1  # set by `genlab train --nproc N` before it checks the command line: the processes it will start


def check_gpus(ids) -> None:
    """A data-parallel run on CUDA: one GPU per process on each machine, chosen by LOCAL_RANK."""
    if ids:
        raise GenlabError(f"device.ids={list(ids)} picks the GPU of one process; in a data-parallel run each rank "
                          "takes the GPU of its LOCAL_RANK: choose them with CUDA_VISIBLE_DEVICES=2,3 instead")
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "0") or 0) or max(world_size(), PLANNED)
    if local > torch.cuda.device_count():
        raise GenlabError(f"{local} processes on this machine but {torch.cuda.device_count()} CUDA GPU(s) visible: "
                          "one process per GPU (lower --nproc or torchrun's --nproc-per-node, or use device=cpu)")


def check_batch(batch_size: int) -> None:
    world = max(world_size(), PLANNED)
    if world > 1 and batch_size % world:
        raise GenlabError(f"train.batch_size={batch_size} is the global batch and must split evenly over the {world} "
                          f"processes: use a multiple of {world}, e.g. train.batch_size={batch_size // world * world or world}")


def part(i: int, batch_size: int) -> slice:
    """This rank's share of global batch i (batch_size is the global batch): a contiguous slice of the
    epoch's order, so the ranks' shares together are the batch one process would train on."""
    world = world_size() if active() else 1
    share = batch_size // world
    start = i * batch_size + rank() * share if world > 1 else i * batch_size
    return slice(start, start + share)


def shard(batch, batch_size: int):
    """A whole global batch (from a source that cannot shard its own indices: per-batch random crops) cut to
    this rank's share; a batch already of the share's size passes."""
    world = world_size() if active() else 1
    if world <= 1:
        return batch
    share = batch_size // world
    size = batch.size
    if size == share:
        return batch
    if size != batch_size:
        raise RuntimeError(f"a batch of {size} examples is neither the global batch ({batch_size}) nor a share ({share})")
    start = rank() * share
    return type(batch)({k: v[start : start + share] for k, v in batch.items()})


def seed_offset(seed: int) -> None:
    """Each rank its own noise (rank 0 keeps the single-process stream, so its draws are the ones a single
    process makes)."""
    if rank() > 0:
        seed_everything((seed * 1_000_003 + rank() * 7_919) % 2**63)


# ---- the weights and their gradients -------------------------------------------------------------------------
def broadcast_module(module: nn.Module) -> None:
    """Every parameter and buffer as rank 0 has it."""
    if not active():
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def average_gradients(grads: list[torch.Tensor]) -> None:
    """The mean of each gradient over the ranks, in place: one all-reduce of all of them flattened."""
    if not active() or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat.div_(world_size())
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def all_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum over the ranks, in place (statistics of the global batch: a VQ-VAE's code counts)."""
    if active():
        dist.all_reduce(tensor)
    return tensor


def from_rank0(*tensors: torch.Tensor) -> None:
    """Rank 0's values, in place (where each rank drew its own: a VQ-VAE's restarted codes)."""
    if active():
        for tensor in tensors:
            dist.broadcast(tensor.data, src=0)


def all_finite(value: torch.Tensor) -> bool:
    """True where the value is finite on every rank (for train.on_nan=skip: every rank skips the same step)."""
    finite = torch.isfinite(value.detach()).all().to(torch.int32).reshape(1).cpu()
    if active():
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite.item())


class BufferSync:
    """Buffers a training step changes in place from its own share (a VQ-VAE's EMA codebook and usage counts),
    put back to rank 0's values after each step, as DDP does. Only buffers changed on some rank since the last
    sync travel (tensor version counters tell), so constant ones (a MADE's masks) never do; BatchNorm over the
    global batch is already equal everywhere."""

    def __init__(self, module: nn.Module, skip: tuple[type, ...] = ()):
        self.buffers = [b for sub in module.modules() if not isinstance(sub, skip) for b in sub.buffers(recurse=False)]
        self.versions = [b._version for b in self.buffers]

    def __bool__(self) -> bool:
        return active() and bool(self.buffers)

    def __call__(self) -> None:
        if not self:
            return
        changed = torch.tensor([int(b._version != v) for b, v in zip(self.buffers, self.versions)], dtype=torch.int32)
        dist.all_reduce(changed, op=dist.ReduceOp.MAX)  # changed on any rank: every rank takes rank 0's
        with torch.no_grad():
            for buffer, flag in zip(self.buffers, changed.tolist()):
                if flag:
                    dist.broadcast(buffer.data, src=0)
        self.versions = [b._version for b in self.buffers]


# ---- agreeing -------------------------------------------------------------------------------------------------
def mean_scalars(sums: dict[str, float], counts: dict[str, int], images: int) -> tuple[dict[str, float], int]:
    """A log interval's averages over every rank's steps, and the images all ranks trained on."""
    if not active():
        return {k: float(sums[k]) / counts[k] for k in sorted(sums)}, images
    # the names first: a rank may lack one another has (train.on_nan=skip drops a non-finite scalar)
    names = sorted({name for names in gather(sorted(sums)) for name in names})
    values = torch.tensor([[float(sums.get(k, 0.0)) for k in names] + [float(images)],
                           [float(counts.get(k, 0)) for k in names] + [1.0]], dtype=torch.float64)
    dist.all_reduce(values)
    return {k: float(values[0, j] / values[1, j]) for j, k in enumerate(names) if values[1, j] > 0}, \
        int(values[0, -1])


def agreed_signal(received: int | None) -> int | None:
    """The stop signal if any rank got one (every rank then stops after the same step)."""
    if not active():
        return received
    flag = torch.tensor([received or 0], dtype=torch.int64)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item()) or None


def rank0s(obj):
    """Rank 0's `obj` on every rank (a decision one rank makes for all: which checkpoint to resume)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj) -> list:
    """Every rank's `obj`, in rank order (on every rank)."""
    if not active():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def peer_lost(err: BaseException) -> bool:
    """The error a collective raises when another rank of the job died (the connection to it reset or closed);
    anything else (an NCCL error of this rank, a timeout, a mismatch) stays a traceback."""
    if world_size() <= 1 or not isinstance(err, RuntimeError):  # (DistBackendError is a RuntimeError)
        return False
    text = str(err)
    return any(mark in text for mark in ("Connection reset by peer", "Connection closed by peer", "Broken pipe",
                                         "remote process exited"))


def barrier(hours: float | None = None) -> None:
    """Every rank waits here for the others; `hours` for a long wait (a data.cache build) past the 30-minute
    timeout of the job's collectives (a gloo group of its own, made by every rank here)."""
    if not active():
        return
    if hours is None:
        dist.barrier()
        return
    group = dist.new_group(backend="gloo", timeout=timedelta(hours=hours))
    dist.barrier(group)
    dist.destroy_process_group(group)


def close() -> None:
    if active():
        dist.destroy_process_group()


# ---- BatchNorm over the global batch --------------------------------------------------------------------------
class _ReduceSum(torch.autograd.Function):
    """all_reduce(SUM) whose backward is the all_reduce(SUM) of the gradients: the statistics of the global
    batch depend on every rank's examples."""

    @staticmethod
    def forward(ctx, tensor):
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch (every rank's share), on any
    device: torch's SyncBatchNorm runs on GPUs only. Its parameters and buffers keep BatchNorm's names."""

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and active()):
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                self.training or not self.track_running_stats, self.momentum or 0.0, self.eps)
        dims = [0, *range(2, x.dim())]
        local = x.float()
        count = torch.tensor([local.numel() / local.shape[1]], dtype=torch.float32, device=x.device)
        stats = torch.cat([local.sum(dims), (local * local).sum(dims), count])
        stats = _ReduceSum.apply(stats)
        c = x.shape[1]
        n = stats[-1].detach()
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - momentum).add_(mean.detach().to(self.running_mean), alpha=momentum)
                unbiased = var.detach() * n / max(float(n) - 1, 1.0)
                self.running_var.mul_(1 - momentum).add_(unbiased.to(self.running_var), alpha=momentum)
        shape = [1, c] + [1] * (x.dim() - 2)
        out = (local - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(x.dtype)


SYNCED_NORMS = (GlobalBatchNorm, nn.SyncBatchNorm)


def sync_batchnorm(module: nn.Module, device: torch.device) -> int:
    """Every BatchNorm{1,2,3}d inside `module` replaced, in place, by one over the global batch (its weights and
    statistics kept). Returns how many were replaced."""
    count = 0
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, SYNCED_NORMS):
            cls = nn.SyncBatchNorm if device.type == "cuda" else GlobalBatchNorm
            new = cls(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            like = next(iter([*child.parameters(), *child.buffers()]), None)
            setattr(module, name, new.to(like.device) if like is not None else new)
            count += 1
        else:
            count += sync_batchnorm(child, device)
    return count
