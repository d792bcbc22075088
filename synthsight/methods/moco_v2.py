"""MoCo v2 (He et al. 2020, "Momentum Contrast"; Chen et al. 2020, "Improved Baselines with Momentum Contrastive
Learning"): a query encoder trained by InfoNCE against a slowly moving key encoder and a queue of earlier keys.

Per step: view 1 -> query q = projector(backbone(.)), view 2 -> key k from the momentum (EMA) copy of backbone +
projector; the loss is InfoNCE of q against its own k and the queue of `queue_size` keys from earlier batches.
After the optimiser step the key encoder moves towards the query encoder and the step's keys (of every rank) are
enqueued, replacing the oldest.

Choices worth knowing:
- The queue starts filled with random unit vectors (as the paper's code does), so the loss has its full set of
  negatives from step 0 and needs no masking; real keys replace them within queue_size / batch_size steps.
- The queue and its pointer are buffers: checkpointed, so a resumed run continues with the same negatives.
- Shuffle BN: with a queue, BatchNorm's batch statistics let the network recognise the one key from the current
  batch (the positive) among keys from older batches, a shortcut instead of learning. The paper computes keys on
  shuffled per-GPU sub-batches; here `bn_groups` virtual devices do the same on one process: queries are
  computed on contiguous slices of the batch, keys on strided slices (image i in group i % bn_groups), so the
  positive key's BatchNorm group shares only 1/bn_groups of its images with the query's.
- Keys of a step whose optimiser step was skipped (non-finite loss) are enqueued with the next step's; rows that
  are not finite are never written.

Shapes: images Tensor[B, 3, S, S] -> q, k Tensor[B, proj_dim]; queue Tensor[queue_size, proj_dim].

Example:
    >>> method = MoCoV2(create_backbone("smallconv"), MoCoV2Config())
    >>> out = method.training_step(images, torch.Generator().manual_seed(0)); out.loss.backward()
    >>> optimizer.step(); method.after_optimizer_step(step, total_steps)   # EMA update + enqueue
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from synthsight.augment.rng import Randomness
from synthsight.augment.views import ViewConfig, two_views
from synthsight.config import check_ranges
from synthsight.distributed import gather_with_grad
from synthsight.losses.infonce import info_nce_queue
from synthsight.methods.base import Method, StepOutput
from synthsight.methods.momentum import ema_update_, frozen_copy
from synthsight.models.heads import mlp_head
from synthsight.registry import METHODS


@dataclass
class MoCoV2Config:
    temperature: float = 0.2  # the MoCo v2 value (0.07 in MoCo v1)
    # key encoder EMA momentum, constant; the paper's 0.999 suits 200+ ImageNet epochs, short CPU runs need a key
    # encoder that keeps up with the query encoder (0.99)
    momentum: float = 0.99
    # negative keys kept from earlier batches; 65536 in the paper, 4096 at CPU scale (with a fast-moving encoder
    # old keys go stale: keep it to a few dozen batches)
    queue_size: int = 4096
    proj_hidden: int = 512  # projector hidden width (2048 in the paper; Linear-ReLU-Linear, no BatchNorm)
    proj_dim: int = 128  # query/key width (128 in the paper)
    # Shuffle BN on one process: BatchNorm statistics over B / bn_groups images, keys grouped apart from queries
    # (the paper: 8 GPUs x 32 images); 1 turns it off (then BatchNorm can leak which key is the positive)
    bn_groups: int = 8

    def __post_init__(self) -> None:
        check_ranges(self, "method", temperature=">0", momentum="[0,1]", queue_size=">=1", proj_hidden=">=1",
                     proj_dim=">=1", bn_groups=">=1")


def grouped_forward(net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, groups: int, strided: bool,
                    memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """net(x) computed on `groups` slices of x (Tensor[B, ...]) one at a time, so BatchNorm normalises within each
    slice, and returned in x's order. Slices are contiguous, or strided (image i in slice i % groups)."""
    b = x.shape[0]
    groups = min(groups, b)
    if groups <= 1:
        return net(x)
    if not strided:
        return torch.cat([net(part) for part in x.tensor_split(groups)])
    order = torch.argsort(torch.arange(b, device=x.device) % groups, stable=True)
    sizes = [len(range(j, b, groups)) for j in range(groups)]
    out = torch.cat([net(part.contiguous(memory_format=memory_format)) for part in x[order].split(sizes)])
    return out[torch.argsort(order)]


@METHODS.register("moco_v2")
class MoCoV2(Method):
    config_class = MoCoV2Config

    def __init__(self, backbone: torch.nn.Module, cfg: MoCoV2Config, views: ViewConfig | None = None) -> None:
        super().__init__(backbone)
        self.cfg = cfg
        self.views = views or ViewConfig()
        self.projector = mlp_head(backbone.num_features, cfg.proj_hidden, cfg.proj_dim, batch_norm=False)
        self.target_backbone = frozen_copy(backbone)
        self.target_projector = frozen_copy(self.projector)
        self.register_buffer("queue", F.normalize(torch.randn(cfg.queue_size, cfg.proj_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))  # the next row to overwrite
        self._pending: list[torch.Tensor] = []  # this step's keys (all ranks), enqueued after the optimiser step

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone(x))

    def _key(self, x: torch.Tensor) -> torch.Tensor:
        return self.target_projector(self.target_backbone(x))

    def training_step(self, images: torch.Tensor, g: Randomness, labels: torch.Tensor | None = None) -> StepOutput:
        v1, v2 = two_views(images, g, self.views)
        x_q, x_k = self.network_input(v1), self.network_input(v2)
        q = grouped_forward(self._query, x_q, self.cfg.bn_groups, strided=False)
        with torch.no_grad():
            k = grouped_forward(self._key, x_k, self.cfg.bn_groups, strided=True, memory_format=self.memory_format)
        loss = info_nce_queue(q, k, self.queue, self.cfg.temperature)
        with torch.no_grad():
            self._pending.append(gather_with_grad(F.normalize(k.float(), dim=1)))  # every rank's keys, rank order
            while sum(len(p) for p in self._pending[1:]) >= self.cfg.queue_size:
                self._pending.pop(0)  # would be overwritten anyway: bounds memory if nobody calls the hook
        return StepOutput(loss, {"info_nce": float(loss.detach())}, embeddings=q.detach())

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        ema_update_(self.target_backbone, self.backbone, self.cfg.momentum)
        ema_update_(self.target_projector, self.projector, self.cfg.momentum)
        if self._pending:
            self.enqueue(torch.cat(self._pending))
            self._pending = []

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write keys (Tensor[N, proj_dim], unit rows) over the oldest rows of the queue, wrapping around; of more
        than queue_size keys only the last queue_size stay. Non-finite rows keep the old entry."""
        size, n = self.queue.shape[0], keys.shape[0]
        keep = min(n, size)
        rows = (self.queue_ptr + (n - keep) + torch.arange(keep, device=self.queue.device)) % size
        new = keys[n - keep:].to(self.queue)
        new = torch.where(torch.isfinite(new).all(dim=1, keepdim=True), new, self.queue[rows])
        self.queue.index_copy_(0, rows, new)
        self.queue_ptr.add_(n).remainder_(size)
