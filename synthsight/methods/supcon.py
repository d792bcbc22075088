"""SupCon (Khosla et al. 2020): two augmented views, a 2-layer projector, the supervised contrastive loss over the
batch, where the positives of a view are all other views of its class (the generators' categories: a fractal
system, a contour or program id). Images without a class (families without categories such as dead_leaves, or
real images with data.real) have only their own other view as positive: on a mixed stream the loss is SupCon on
the labelled images and SimCLR on the others, in one softmax (the hybrid), and on real images it is SimCLR.

Shapes: images Tensor[B, 3, S, S] and labels int64 Tensor[B] -> projector outputs Tensor[2B, proj_dim].

Example:
    >>> method = SupCon(create_backbone("smallconv"), SupConConfig(), num_classes=1000)
    >>> out = method.training_step(images, torch.Generator().manual_seed(0), labels)
    >>> out.loss.backward()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.distributed as dist

from synthsight.augment.rng import Randomness
from synthsight.augment.views import ViewConfig, two_views
from synthsight.config import check_ranges
from synthsight.distributed import gather_with_grad, rank_and_world
from synthsight.losses.supcon import supcon_loss
from synthsight.methods.base import Method, StepOutput
from synthsight.models.heads import mlp_head
from synthsight.registry import METHODS


@dataclass
class SupConConfig:
    temperature: float = 0.1  # the paper's best at ImageNet scale; lower is sharper
    proj_hidden: int = 512  # projector hidden width
    proj_dim: int = 128  # projector output width (the space the loss compares in; 128 in the paper)

    def __post_init__(self) -> None:
        check_ranges(self, "method", temperature=">0", proj_hidden=">=1", proj_dim=">=1")


def _gather_labels(labels: torch.Tensor, world: int) -> torch.Tensor:
    """Every rank's labels in rank order (no gradient; integer-exact, unlike a float gather under bf16)."""
    parts = [torch.empty_like(labels) for _ in range(world)]
    dist.all_gather(parts, labels.contiguous())
    return torch.cat(parts)


@METHODS.register("supcon")
class SupCon(Method):
    config_class = SupConConfig
    needs_labels: ClassVar[bool] = True
    partial_labels: ClassVar[bool] = True  # label -1 (no category, or real images): SimCLR's positive only

    def __init__(self, backbone: torch.nn.Module, cfg: SupConConfig, views: ViewConfig | None = None,
                 num_classes: int | None = None) -> None:
        super().__init__(backbone)
        self.cfg = cfg
        self.views = views or ViewConfig()
        self.num_classes = num_classes  # not used by the loss (any integer ids work); kept for the record
        self.projector = mlp_head(backbone.num_features, cfg.proj_hidden, cfg.proj_dim)

    def training_step(self, images: torch.Tensor, g: Randomness, labels: torch.Tensor | None = None) -> StepOutput:
        if labels is None:  # real images (data.real): no classes, every image its own (SimCLR at this temperature)
            labels = torch.full((images.shape[0],), -1, dtype=torch.long)
        v1, v2 = two_views(images, g, self.views)
        x = self.network_input(v1, v2)  # one forward pass for both views
        z = self.projector(self.backbone(x))
        z1, z2 = z.chunk(2)
        labels = labels.to(z.device)
        rank, world = rank_and_world()
        if world > 1:  # positives and negatives from the global batch, gathered with gradients
            all_z1, all_z2 = gather_with_grad(torch.cat([z1, z2], dim=1)).split(z1.shape[1], dim=1)
            loss = supcon_loss(z1, z2, labels, self.cfg.temperature, all_z1, all_z2,
                               _gather_labels(labels, world), offset=rank * z1.shape[0])
        else:
            loss = supcon_loss(z1, z2, labels, self.cfg.temperature)
        return StepOutput(loss, {"supcon": float(loss.detach())}, embeddings=z1.detach())
