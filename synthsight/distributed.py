"""Process-group primitives any layer may use: who am I (rank, world size, rank 0?), and collectives that need no
training state (a differentiable gather and sum, a mean without gradient). Every function is a cheap identity or
(0, 1) without a process group, so one code path serves one process and many.

Methods call `gather_with_grad` for global-batch negatives and `mean_across_ranks` for statistics that every rank
must share (DINO's centre); the training machinery around them (process group, DDP, SyncBatchNorm) is in
train/distributed.py.

Example:
    >>> rank, world = rank_and_world()               # (0, 1) in a plain process
    >>> z_all = gather_with_grad(z)                  # Tensor[world * B, D], gradients flow back to each rank
"""

from __future__ import annotations

import os
import warnings

import torch
import torch.distributed as dist


def env_world_size() -> int:
    """WORLD_SIZE as set by torchrun (1 when not launched by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_by_torchrun() -> bool:
    """True in a process that torchrun started (it sets RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), also with one
    process: `torchrun --nproc_per_node=1` runs the whole data-parallel path (process group, DDP) on one device."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def is_main_process() -> bool:
    """True on rank 0, or when not distributed; works before and after the process group exists."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def rank_and_world() -> tuple[int, int]:
    """(rank, world_size) of the current process group, (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Tensor[B, ...] on each rank -> Tensor[world_size * B, ...] (rank order), differentiable: the gradient that
    flows into rank r's slice comes back to rank r. Identity when not distributed. Every rank must pass the same B."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated in favour of functional collectives; still fine
        return torch.cat(all_gather(x), dim=0)


def all_reduce_with_grad(x: torch.Tensor) -> torch.Tensor:
    """The sum over ranks of a tensor, differentiable (the gradient is summed back to every rank)."""
    from torch.distributed.nn.functional import all_reduce

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return all_reduce(x)


def mean_across_ranks(value: torch.Tensor) -> torch.Tensor:
    """The average over ranks of a tensor, without gradient (a logged loss, DINO's centre, queue statistics).
    The tensor must live where the backend communicates: CPU for gloo, CUDA for NCCL. Identity on one process."""
    _, world = rank_and_world()
    if world == 1:
        return value
    t = value.detach().clone()
    dist.all_reduce(t)
    return t / world
