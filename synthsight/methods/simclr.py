"""SimCLR (Chen et al. 2020): two augmented views, a 2-layer projector, NT-Xent over the batch.

Example:
    >>> method = SimCLR(create_backbone("smallconv"), SimCLRConfig())
    >>> out = method.training_step(images, torch.Generator().manual_seed(0))
    >>> out.loss.backward()
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from synthsight.augment.rng import Randomness
from synthsight.augment.views import ViewConfig, two_views
from synthsight.config import check_ranges
from synthsight.distributed import gather_with_grad, rank_and_world
from synthsight.losses.ntxent import nt_xent
from synthsight.methods.base import Method, StepOutput
from synthsight.models.heads import mlp_head
from synthsight.registry import METHODS


@dataclass
class SimCLRConfig:
    temperature: float = 0.2  # 0.1-0.5 in the paper; lower is sharper, 0.2 works well for small batches
    proj_hidden: int = 512  # projector hidden width
    proj_dim: int = 128  # projector output width (the space NT-Xent compares in)

    def __post_init__(self) -> None:
        check_ranges(self, "method", temperature=">0", proj_hidden=">=1", proj_dim=">=1")


@METHODS.register("simclr")
class SimCLR(Method):
    config_class = SimCLRConfig

    def __init__(self, backbone: torch.nn.Module, cfg: SimCLRConfig, views: ViewConfig | None = None) -> None:
        super().__init__(backbone)
        self.cfg = cfg
        self.views = views or ViewConfig()
        self.projector = mlp_head(backbone.num_features, cfg.proj_hidden, cfg.proj_dim)

    def training_step(self, images: torch.Tensor, g: Randomness, labels: torch.Tensor | None = None) -> StepOutput:
        v1, v2 = two_views(images, g, self.views)
        x = self.network_input(v1, v2)  # one forward pass for both views
        z = self.projector(self.backbone(x))
        z1, z2 = z.chunk(2)
        rank, world = rank_and_world()
        if world > 1:  # negatives from the global batch: every rank's pairs, gathered with gradients
            all_z1, all_z2 = gather_with_grad(torch.cat([z1, z2], dim=1)).split(z1.shape[1], dim=1)
            loss = nt_xent(z1, z2, self.cfg.temperature, all_z1, all_z2, offset=rank * z1.shape[0])
        else:
            loss = nt_xent(z1, z2, self.cfg.temperature)
        return StepOutput(loss, {"nt_xent": float(loss.detach())}, embeddings=z1.detach())
