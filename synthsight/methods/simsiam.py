"""SimSiam (Chen & He 2021, "Exploring Simple Siamese Representation Learning"): BYOL without the momentum target;
the stop-gradient alone keeps the two branches from collapsing.

Per step: both views go through backbone -> projector (z1, z2) -> predictor (p1, p2) in one pass; loss =
D(p1, stopgrad(z2)) / 2 + D(p2, stopgrad(z1)) / 2 with D = -cosine (in [-1, 1]; -1 is a perfect match, which a
collapsed network also reaches: watch the `embeddings`, view 1's projections, for a spread that shrinks).

Shapes: images Tensor[B, 3, S, S] -> z1, z2, p1, p2 Tensor[B, proj_dim].

Example:
    >>> method = SimSiam(create_backbone("smallconv"), SimSiamConfig())
    >>> out = method.training_step(images, torch.Generator().manual_seed(0))
    >>> out.loss.backward()
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from synthsight.augment.rng import Randomness
from synthsight.augment.views import ViewConfig, two_views
from synthsight.config import check_ranges
from synthsight.losses.regression import negative_cosine
from synthsight.methods.base import Method, StepOutput
from synthsight.models.heads import mlp_head
from synthsight.registry import METHODS


@dataclass
class SimSiamConfig:
    proj_hidden: int = 512  # projector hidden width (2048 in the paper)
    proj_dim: int = 512  # projection width (2048 in the paper)
    proj_layers: int = 2  # projector depth, BatchNorm after every layer incl. the output (3 on ImageNet, 2 for CIFAR)
    pred_hidden: int = 128  # predictor bottleneck, a quarter of proj_dim as in the paper (512 for 2048)

    def __post_init__(self) -> None:
        check_ranges(self, "method", proj_hidden=">=1", proj_dim=">=1", proj_layers=">=1", pred_hidden=">=1")


@METHODS.register("simsiam")
class SimSiam(Method):
    config_class = SimSiamConfig

    def __init__(self, backbone: torch.nn.Module, cfg: SimSiamConfig, views: ViewConfig | None = None) -> None:
        super().__init__(backbone)
        self.cfg = cfg
        self.views = views or ViewConfig()
        self.projector = mlp_head(backbone.num_features, cfg.proj_hidden, cfg.proj_dim, cfg.proj_layers,
                                  last_bn=True)
        self.predictor = mlp_head(cfg.proj_dim, cfg.pred_hidden, cfg.proj_dim)

    def training_step(self, images: torch.Tensor, g: Randomness, labels: torch.Tensor | None = None) -> StepOutput:
        v1, v2 = two_views(images, g, self.views)
        x = self.network_input(v1, v2)  # one forward pass for both views
        z = self.projector(self.backbone(x))
        p1, p2 = self.predictor(z).chunk(2)
        z1, z2 = z.detach().chunk(2)  # the stop-gradient
        loss = (negative_cosine(p1, z2) + negative_cosine(p2, z1)) / 2
        return StepOutput(loss, {"neg_cosine": float(loss.detach())}, embeddings=z1)
