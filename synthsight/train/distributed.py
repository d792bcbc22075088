"""Data parallelism with torch.distributed, launched by torchrun: one process per device, gloo on CPU, NCCL on CUDA.

`torchrun --nproc_per_node=N -m synthsight pretrain ...` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT; `distributed_session` reads them and joins the group (multi-node: add torchrun's usual
--nnodes/--node_rank/--rdzv-endpoint flags; nothing changes here). Without those variables everything below is a
cheap no-op, so one code path serves one process and many.

How the pieces fit (see train/loop.py):
- each rank renders its own disjoint slice of every global batch (SyntheticStream(rank, world_size));
- `data_parallel` wraps the method in torch's DistributedDataParallel (NCCL on CUDA, gloo on CPU): gradients are
  averaged in buckets while backward still runs. DDP only synchronises what runs inside its `forward`, so the
  wrapper's forward is the method's `training_step` (every backbone and head call of a step happens inside it);
  `no_sync` keeps accumulation micro-batches local (one reduction per optimiser step); momentum targets and frozen
  teachers (parameters without gradients) stay outside DDP, and the non-finite checks see the same averaged
  gradients on every rank before anyone steps;
- `gather_with_grad` (synthsight/distributed.py, with the other primitives methods may call) collects embeddings
  from all ranks with gradients, so contrastive losses use the global batch for negatives (losses stay pure
  functions: they receive the gathered tensors);
- `convert_sync_batchnorm` swaps BatchNorm for torch's SyncBatchNorm on CUDA, for `CPUSyncBatchNorm` on CPU;
- only rank 0 logs and writes; `on_main` runs such an action there and stops every rank if it fails.

Example:
    >>> with distributed_session("auto") as ctx:      # ctx.rank, ctx.world_size, ctx.device
    ...     model = data_parallel(method, accumulate=2)
    ...     with no_sync(model):                      # first micro-batch: gradients stay on this rank
    ...         model.training_step(images1, g1).loss.backward()
    ...     model.training_step(images2, g2).loss.backward()   # inside: z_all = gather_with_grad(z)
    ...                                              # now every rank holds the same averaged gradients
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import itertools
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel

from synthsight.config import ConfigError
from synthsight.distributed import all_reduce_with_grad, launched_by_torchrun, rank_and_world

T = TypeVar("T")
_BUCKET_BYTES = 25 << 20  # buffers are all-reduced in flat buckets of about this size (DDP's gradient default)
# DDP's switch for broadcasting rank 0's buffers before every forward: newer torch calls it forward_sync_buffers (and
# deprecates broadcast_buffers), older versions know only broadcast_buffers
_NO_FORWARD_BUFFER_SYNC = (
    {"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    else {"broadcast_buffers": False}
)


class RankStopped(RuntimeError):
    """Another rank failed; that rank printed the reason."""


@dataclass
class DistContext:
    """Where this process sits: its rank among world_size processes and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N'; with several processes on CUDA each takes cuda:LOCAL_RANK."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name} but CUDA is not available here; use trainer.device=cpu")
    device = torch.device(name)
    if device.type == "cuda" and device.index is None and local_rank is not None:
        device = torch.device("cuda", local_rank)
    return device


@contextlib.contextmanager
def distributed_session(device_name: str = "auto") -> Iterator[DistContext]:
    """Join the torchrun process group (if launched by torchrun and not joined yet) and leave it afterwards; rank 0
    says so on stderr."""
    if not launched_by_torchrun() and not (dist.is_available() and dist.is_initialized()):
        yield DistContext(device=resolve_device(device_name))
        return
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    owned = False
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://")
        owned = True
        if dist.get_rank() == 0:
            print(f"torch.distributed: {dist.get_world_size()} process(es), {backend}, rank 0 on {device}",
                  file=sys.stderr)
    ctx = DistContext(dist.get_rank(), dist.get_world_size(), local_rank, device)
    try:
        yield ctx
    finally:
        if owned and dist.is_initialized():
            dist.destroy_process_group()


def _comm_device(ctx: DistContext) -> torch.device:
    """NCCL moves only CUDA tensors; gloo only CPU ones."""
    return ctx.device if dist.get_backend() == "nccl" else torch.device("cpu")


def broadcast_int(ctx: DistContext, value: int) -> int:
    """Rank 0's value on every rank."""
    if not ctx.distributed:
        return value
    t = torch.tensor([value], dtype=torch.long, device=_comm_device(ctx))
    dist.broadcast(t, src=0)
    return int(t.item())


def broadcast_str(ctx: DistContext, text: str) -> str:
    """Rank 0's string on every rank (sent as UTF-8 bytes in a tensor, no pickling)."""
    if not ctx.distributed:
        return text
    data = torch.tensor(list(text.encode()), dtype=torch.uint8)
    n = broadcast_int(ctx, len(data))
    buf = (data if ctx.is_main else torch.zeros(n, dtype=torch.uint8)).to(_comm_device(ctx))
    dist.broadcast(buf, src=0)
    return bytes(buf.cpu().tolist()).decode()


def any_rank(ctx: DistContext, flag: bool) -> bool:
    """True on every rank if `flag` is true on any rank."""
    if not ctx.distributed:
        return flag
    t = torch.tensor([int(flag)], dtype=torch.long, device=_comm_device(ctx))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def on_main(ctx: DistContext, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Run fn on rank 0 only. If it raises, rank 0 re-raises and every other rank raises RankStopped, so a failed
    checkpoint write or a refused run folder stops the whole job instead of leaving ranks waiting."""
    result, error = None, None
    if ctx.is_main:
        try:
            result = fn(*args, **kwargs)
        except BaseException as err:  # noqa: BLE001  (re-raised below, after telling the other ranks)
            error = err
    if any_rank(ctx, error is not None) and error is None:
        raise RankStopped("stopped because rank 0 failed (its error message says why)")
    if error is not None:
        raise error
    return result


def broadcast_module(ctx: DistContext, module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (an identical start, whatever each rank initialised)."""
    if not ctx.distributed:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        buf = t.data if t.device.type == _comm_device(ctx).type else t.data.to(_comm_device(ctx))
        dist.broadcast(buf, src=0)
        if buf is not t.data:
            t.data.copy_(buf)


def _buckets(tensors: list[torch.Tensor]) -> Iterator[list[torch.Tensor]]:
    bucket: list[torch.Tensor] = []
    size = 0
    for t in tensors:
        if bucket and (size + t.numel() * t.element_size() > _BUCKET_BYTES or t.dtype != bucket[0].dtype):
            yield bucket
            bucket, size = [], 0
        bucket.append(t)
        size += t.numel() * t.element_size()
    if bucket:
        yield bucket


def all_reduce_mean(ctx: DistContext, tensors: list[torch.Tensor]) -> None:
    """Average tensors in place across ranks, a few flat buckets at a time (asynchronously launched). Used for
    buffers (`average_buffers`); gradients are averaged by DDP (`data_parallel`)."""
    pending = []
    for bucket in _buckets(tensors):
        flat = torch.cat([t.reshape(-1) for t in bucket]).to(_comm_device(ctx))
        pending.append((bucket, flat, dist.all_reduce(flat, async_op=True)))
    for bucket, flat, work in pending:
        work.wait()
        flat = flat.div_(ctx.world_size).to(bucket[0].device)
        offset = 0
        for t in bucket:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()


class _TrainingStep(nn.Module):
    """A method's `training_step` as a module's forward, so that DistributedDataParallel sees every backbone and head
    call of a step. It returns the loss as a tensor of its own output: DDP's static-graph bookkeeping attaches to
    the output tensors it can find, and a StepOutput is opaque to it."""

    def __init__(self, method: nn.Module) -> None:
        super().__init__()
        self.method = method

    def forward(self, images: torch.Tensor, g: Any, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, Any]:
        out = self.method.training_step(images, g, labels)
        return out.loss, out


class DataParallelMethod(DistributedDataParallel):
    """DistributedDataParallel around a Method, called like the Method: `training_step(images, g, labels)`."""

    def training_step(self, images: torch.Tensor, g: Any, labels: torch.Tensor | None = None) -> Any:
        loss, out = self(images, g, labels)
        return dataclasses.replace(out, loss=loss)  # the loss DDP handed back: backward goes through its hooks


def data_parallel(method: nn.Module, accumulate: int = 1) -> nn.Module:
    """The method as the train loop calls it: inside DistributedDataParallel in a process group (under torchrun,
    also with one process), else the method itself.

    Gradients are averaged over ranks in buckets during backward (DDP's defaults: 25 MB buckets, the first
    reduction launched while backward still runs); call `training_step` once per micro-batch, under `no_sync` for
    all but the last. Parameters without gradients (momentum targets such as BYOL's, MoCo's and DINO's, frozen
    distillation teachers) are kept out of DDP: each rank updates them from the averaged online weights.
    Buffers are not broadcast at each forward (BatchNorm statistics are averaged at checkpoints by
    `average_buffers`; queues and centres are kept equal by the methods). With one micro-batch per step the graph
    is declared static (DDP then also tolerates parameters a method never uses); with accumulation it is not,
    because static_graph with no_sync mis-counts gradient hooks (pytorch/pytorch#187732, accelerate#3679).
    device_ids stays None (allowed for a module on one device, CUDA included): the inputs are on the device already,
    and DDP would otherwise try to move the augmentation randomness `g` too.
    Every rank must call this with the same weights (`broadcast_module` first).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return method
    step = _TrainingStep(method)
    frozen = [f"method.{name}" for name, p in method.named_parameters() if not p.requires_grad]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(step, frozen)
    return DataParallelMethod(step, static_graph=accumulate == 1, **_NO_FORWARD_BUFFER_SYNC)


def no_sync(model: nn.Module) -> contextlib.AbstractContextManager:
    """For an accumulation micro-batch other than the last: its gradients stay on this rank and add up; the last
    micro-batch's backward then reduces the sum once. Forward and backward both belong inside. A no-op for a model
    that is not wrapped by `data_parallel`."""
    return model.no_sync() if isinstance(model, DistributedDataParallel) else contextlib.nullcontext()


def average_buffers(ctx: DistContext, module: nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over ranks, so the checkpoint holds statistics
    of the global stream rather than of rank 0's slice, and every rank continues from the same state."""
    if not ctx.distributed:
        return
    buffers = [b for b in module.buffers() if b.is_floating_point()]
    if buffers:
        all_reduce_mean(ctx, buffers)


class CPUSyncBatchNorm(_BatchNorm):
    """BatchNorm over the global batch of all ranks on CPU with gloo (torch's SyncBatchNorm is CUDA-only, and DDP
    refuses it in CPU modules): the per-channel sums are all-reduced in float64 with gradients. Same parameters and
    buffers as BatchNorm, so checkpoints load into plain BatchNorm models. One process, or eval: plain BatchNorm."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected an input of at least 2 dimensions (N, C, ...), got {x.dim()}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and self.training and rank_and_world()[1] > 1:
            return self._cpu_sync(x)
        return super().forward(x)

    @torch.compiler.disable  # the autograd all-reduce runs eagerly, also inside a compiled backbone
    def _cpu_sync(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        dims = [0, *range(2, x.ndim)]
        x64 = x.double()
        count = torch.full((1,), x.numel() // c, dtype=torch.float64)
        stats = all_reduce_with_grad(torch.cat([x64.sum(dims), (x64 * x64).sum(dims), count]))
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp(min=0)  # float64 sums: no cancellation worth mentioning
        shape = [1, c] + [1] * (x.ndim - 2)
        y = (x.float() - mean.float().view(shape)) * torch.rsqrt(var.float() + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            self.num_batches_tracked.add_(1)
            momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            with torch.no_grad():
                unbiased = (var * n / (n - 1).clamp(min=1)).to(self.running_var.dtype)
                self.running_mean.mul_(1 - momentum).add_(mean.to(self.running_mean.dtype), alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm*d in `module` (in place where possible) by a BatchNorm over the global batch, keeping
    its state: torch's SyncBatchNorm when training on CUDA, `CPUSyncBatchNorm` on CPU. Returns the module."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, _BatchNorm) and not isinstance(module, CPUSyncBatchNorm):
        new = CPUSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        ref = next(itertools.chain(module.parameters(), module.buffers()), None)
        if ref is not None:
            new.to(ref.device)
        if module.affine:
            new.weight.requires_grad_(module.weight.requires_grad)
            new.bias.requires_grad_(module.bias.requires_grad)
        return new
    for name, child in module.named_children():
        replaced = convert_sync_batchnorm(child, device)
        if replaced is not child:
            setattr(module, name, replaced)
    return module
