"""MoCo v3 (Chen, Xie & He 2021, "An Empirical Study of Training Self-Supervised Vision Transformers"): a
momentum encoder without a queue; queries (backbone -> projector -> predictor) pick their key out of the keys
of the global batch, symmetrised over the two views.

Per step: both views go through the online network in one pass (q1, q2) and through the momentum (EMA) copy of
backbone + projector (k1, k2); loss = (InfoNCE(q1, k2) + InfoNCE(q2, k1)) / 2 with the other keys of the global
batch as negatives (gathered from every rank). The momentum rises from `momentum` to 1 along a half cosine.

The paper multiplies each InfoNCE term by 2 x temperature; here the loss is the plain mean (comparable with
SimCLR's, ln(2N) at chance), which only rescales the gradient: irrelevant for AdamW, a learning-rate factor for SGD.

Shapes: images Tensor[B, 3, S, S] -> q1, q2, k1, k2 Tensor[B, proj_dim].

Example:
    >>> method = MoCoV3(create_backbone("smallconv"), MoCoV3Config())
    >>> out = method.training_step(images, torch.Generator().manual_seed(0)); out.loss.backward()
    >>> optimizer.step(); method.after_optimizer_step(step, total_steps)   # EMA update
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from synthsight.augment.rng import Randomness
from synthsight.augment.views import ViewConfig, two_views
from synthsight.config import check_ranges
from synthsight.distributed import gather_with_grad, rank_and_world
from synthsight.losses.infonce import info_nce
from synthsight.methods.base import Method, StepOutput
from synthsight.methods.momentum import cosine_momentum, ema_update_, frozen_copy
from synthsight.models.heads import mlp_head
from synthsight.registry import METHODS


@dataclass
class MoCoV3Config:
    temperature: float = 0.2  # the paper's value for ViT (its ResNet-50 recipe uses 1.0)
    momentum: float = 0.99  # EMA momentum at step 0, rising to 1 along a half cosine (the paper's 0.99)
    proj_hidden: int = 512  # projector hidden width (4096 in the paper)
    proj_dim: int = 128  # query/key width (256 in the paper)
    proj_layers: int = 3  # projector depth (3 in the paper), BatchNorm after every layer, the last without affine
    pred_hidden: int = 512  # predictor hidden width (4096 in the paper); the predictor has 2 layers

    def __post_init__(self) -> None:
        check_ranges(self, "method", temperature=">0", momentum="[0,1]", proj_hidden=">=1", proj_dim=">=1",
                     proj_layers=">=1", pred_hidden=">=1")


@METHODS.register("moco_v3")
class MoCoV3(Method):
    config_class = MoCoV3Config

    def __init__(self, backbone: torch.nn.Module, cfg: MoCoV3Config, views: ViewConfig | None = None) -> None:
        super().__init__(backbone)
        self.cfg = cfg
        self.views = views or ViewConfig()
        self.projector = mlp_head(backbone.num_features, cfg.proj_hidden, cfg.proj_dim, cfg.proj_layers,
                                  last_bn=True)
        self.predictor = mlp_head(cfg.proj_dim, cfg.pred_hidden, cfg.proj_dim)
        self.target_backbone = frozen_copy(backbone)
        self.target_projector = frozen_copy(self.projector)

    def training_step(self, images: torch.Tensor, g: Randomness, labels: torch.Tensor | None = None) -> StepOutput:
        v1, v2 = two_views(images, g, self.views)
        x = self.network_input(v1, v2)  # one forward pass for both views
        z = self.projector(self.backbone(x))
        q1, q2 = self.predictor(z).chunk(2)
        with torch.no_grad():
            k1, k2 = self.target_projector(self.target_backbone(x)).chunk(2)
        rank, world = rank_and_world()
        t = self.cfg.temperature
        if world > 1:  # negatives: the keys of every rank's images (keys carry no gradient)
            all_k1, all_k2 = gather_with_grad(torch.cat([k1, k2], dim=1)).split(k1.shape[1], dim=1)
            offset = rank * k1.shape[0]
            loss = (info_nce(q1, k2, t, all_k2, offset) + info_nce(q2, k1, t, all_k1, offset)) / 2
        else:
            loss = (info_nce(q1, k2, t) + info_nce(q2, k1, t)) / 2
        return StepOutput(loss, {"info_nce": float(loss.detach())}, embeddings=z[: len(v1)].detach())

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        m = cosine_momentum(step, total_steps, base=self.cfg.momentum)
        ema_update_(self.target_backbone, self.backbone, m)
        ema_update_(self.target_projector, self.projector, m)
