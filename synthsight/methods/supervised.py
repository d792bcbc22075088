"""Formula-driven supervised pretraining, "ce" (FractalDB, Kataoka et al. ACCV 2020; RCDB, Kataoka et al. CVPR 2022):
a linear classifier over the backbone's features learns the generators' categories (a fractal system, a contour
or program id) with cross-entropy, optionally with label smoothing and MixUp (Shaders21k, Baradad et al. 2022:
MixUp was the biggest single gain). Needs a stream with labels (families fractal_ifs, contours, programs, mix).

Shapes: one augmented view Tensor[B, 3, S, S], labels int64 Tensor[B] -> logits Tensor[B, num_classes].

Example:
    >>> method = Supervised(create_backbone("smallconv"), SupervisedConfig(mixup_alpha=0.2), num_classes=1000)
    >>> out = method.training_step(images, torch.Generator().manual_seed(0), labels)
    >>> out.loss.backward()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from synthsight.augment.mixup import mixup, sample_mixup
from synthsight.augment.rng import Randomness
from synthsight.augment.views import ViewConfig, make_view
from synthsight.config import ConfigError, check_ranges
from synthsight.losses.ce import smooth_one_hot, soft_cross_entropy
from synthsight.methods.base import Method, StepOutput
from synthsight.registry import METHODS


@dataclass
class SupervisedConfig:
    label_smoothing: float = 0.1  # share of each target spread over all classes (0 = hard one-hot targets)
    mixup_alpha: float = 0.0  # MixUp Beta(alpha, alpha) within the batch; 0 = off, 0.2-1.0 typical when on

    def __post_init__(self) -> None:
        check_ranges(self, "method", label_smoothing="[0,0.999]", mixup_alpha=">=0")


@METHODS.register("ce")
class Supervised(Method):
    """Backbone + `classifier` (one Linear over the pooled features, num_classes outputs)."""

    config_class = SupervisedConfig
    needs_labels: ClassVar[bool] = True

    def __init__(self, backbone: nn.Module, cfg: SupervisedConfig, views: ViewConfig | None = None,
                 num_classes: int | None = None) -> None:
        super().__init__(backbone)
        if not num_classes or num_classes < 2:
            raise ConfigError(f"method ce needs a stream with at least 2 classes, got num_classes={num_classes}")
        self.cfg = cfg
        self.views = views or ViewConfig()
        self.num_classes = num_classes
        self.classifier = nn.Linear(backbone.num_features, num_classes)  # "classifier": what distillation looks for

    def training_step(self, images: torch.Tensor, g: Randomness, labels: torch.Tensor | None = None) -> StepOutput:
        if labels is None:
            raise ValueError("ce needs class labels: train it through a labelled stream (needs_labels)")
        x = make_view(images, g, self.views)
        targets = smooth_one_hot(labels, self.num_classes, self.cfg.label_smoothing).to(x.device)
        if self.cfg.mixup_alpha > 0:
            lam, partner = sample_mixup(g, len(x), self.cfg.mixup_alpha)
            x, targets = mixup(x, targets, lam, partner)
        features = self.backbone(self.network_input(x))
        logits = self.classifier(features)
        loss = soft_cross_entropy(logits, targets)
        hard = targets.argmax(dim=1)  # the heavier class of a mixed target
        accuracy = float((logits.detach().argmax(dim=1) == hard).float().mean())
        return StepOutput(loss, {"ce": float(loss.detach()), "train_top1": accuracy}, embeddings=features.detach())
