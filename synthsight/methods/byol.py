"""BYOL (Grill et al. 2020, "Bootstrap Your Own Latent"): an online network (backbone -> projector -> predictor)
regresses the projection of the other view by a slowly moving target network; no negatives.

Per step: both views go through the online network in one pass (p1, p2) and through the target, an EMA copy of
backbone + projector (z1', z2'); loss = ||p1/|p1| - z2'/|z2'|||^2 + ||p2/|p2| - z1'/|z1'|||^2, each term 2 - 2 cos,
summed over the two directions as in the paper (in [0, 8]; 4 for unrelated vectors). The target's momentum rises
from `momentum` to 1 along a half cosine. What keeps BYOL from collapsing is the predictor plus the slow target:
watch the `embeddings` (one view's online projection) for a spread that shrinks to nothing.

Shapes: images Tensor[B, 3, S, S] -> p1, p2, z1', z2' Tensor[B, proj_dim].

Example:
    >>> method = BYOL(create_backbone("smallconv"), BYOLConfig())
    >>> out = method.training_step(images, torch.Generator().manual_seed(0)); out.loss.backward()
    >>> optimizer.step(); method.after_optimizer_step(step, total_steps)   # EMA update
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from synthsight.augment.rng import Randomness
from synthsight.augment.views import ViewConfig, two_views
from synthsight.config import check_ranges
from synthsight.losses.regression import normalized_mse
from synthsight.methods.base import Method, StepOutput
from synthsight.methods.momentum import cosine_momentum, ema_update_, frozen_copy
from synthsight.models.heads import mlp_head
from synthsight.registry import METHODS


@dataclass
class BYOLConfig:
    # target EMA momentum at step 0, rising to 1 along a half cosine; the paper's 0.996 suits 300-1000 ImageNet
    # epochs, short CPU runs need a target that keeps up (0.99)
    momentum: float = 0.99
    proj_hidden: int = 512  # projector hidden width (4096 in the paper; Linear-BN-ReLU-Linear)
    proj_dim: int = 128  # projection width (256 in the paper)
    pred_hidden: int = 512  # predictor hidden width (4096 in the paper; same shape as the projector)

    def __post_init__(self) -> None:
        check_ranges(self, "method", momentum="[0,1]", proj_hidden=">=1", proj_dim=">=1", pred_hidden=">=1")


@METHODS.register("byol")
class BYOL(Method):
    config_class = BYOLConfig

    def __init__(self, backbone: torch.nn.Module, cfg: BYOLConfig, views: ViewConfig | None = None) -> None:
        super().__init__(backbone)
        self.cfg = cfg
        self.views = views or ViewConfig()
        self.projector = mlp_head(backbone.num_features, cfg.proj_hidden, cfg.proj_dim)
        self.predictor = mlp_head(cfg.proj_dim, cfg.pred_hidden, cfg.proj_dim)
        self.target_backbone = frozen_copy(backbone)
        self.target_projector = frozen_copy(self.projector)

    def training_step(self, images: torch.Tensor, g: Randomness, labels: torch.Tensor | None = None) -> StepOutput:
        v1, v2 = two_views(images, g, self.views)
        x = self.network_input(v1, v2)  # one forward pass for both views
        z = self.projector(self.backbone(x))
        p1, p2 = self.predictor(z).chunk(2)
        with torch.no_grad():
            t1, t2 = self.target_projector(self.target_backbone(x)).chunk(2)
        loss = normalized_mse(p1, t2) + normalized_mse(p2, t1)
        return StepOutput(loss, {"byol": float(loss.detach())}, embeddings=z[: len(v1)].detach())

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        m = cosine_momentum(step, total_steps, base=self.cfg.momentum)
        ema_update_(self.target_backbone, self.backbone, m)
        ema_update_(self.target_projector, self.projector, m)
