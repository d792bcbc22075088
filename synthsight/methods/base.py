"""What every pretraining method provides to the train loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from synthsight.augment.rng import Randomness
from synthsight.models.preprocess import normalize_images


@dataclass
class StepOutput:
    """The loss to minimise and its named terms (floats, for logging)."""

    loss: torch.Tensor
    terms: dict[str, float] = field(default_factory=dict)
    # What the collapse alarm watches (detached): the embeddings the loss compares, Tensor[N, D] (e.g. one view's
    # projector output), and for self-distillation the teacher's output probabilities, Tensor[N, K].
    embeddings: torch.Tensor | None = None
    teacher_probs: torch.Tensor | None = None


class Method(nn.Module):
    """A backbone plus whatever heads the method trains. `backbone` is what evaluation and export keep."""

    config_class: type  # the dataclass of the method's own options (method.<key>=... on the command line)
    memory_format: torch.memory_format = torch.channels_last  # of the network input; set from trainer.channels_last
    # Methods trained on the generators' class labels set this; the train loop then streams labels and the
    # constructor receives `num_classes` (the stream's total number of categories).
    needs_labels: ClassVar[bool] = False
    # Methods with needs_labels that also learn from images without a class (label -1: families without
    # categories, real images) set this: the stream may then mix such families in, and data.real is allowed.
    partial_labels: ClassVar[bool] = False
    # Methods that work on ViT patch tokens (masked image modelling) set this: they raise a ConfigError for any
    # other backbone, and the contract tests build them on model.backbone=vit_tiny.
    needs_vit: ClassVar[bool] = False
    # Methods that learn from trained networks (distillation) set this: the builder loads the checkpoints in
    # method.teachers and passes them to the constructor as `teachers` (train/build.py), so methods never load runs.
    needs_teachers: ClassVar[bool] = False

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def training_step(self, images: torch.Tensor, g: Randomness, labels: torch.Tensor | None = None) -> StepOutput:
        """Loss for one batch of synthetic images (Tensor[B, 3, S, S] in [0, 1]).

        `labels` (int64 Tensor[B], stream-wide classes) is given only to methods with `needs_labels = True`.

        `g` draws the augmentations: pass it to the `augment` ops unchanged. In training it is per-image
        randomness (`augment.rng.PerImageRandom`) built from (seed, step, global image index), so the views do not
        depend on the rank or micro-batch holding an image; a plain `torch.Generator` works too. Under
        torch.distributed this batch is this rank's slice; gather embeddings with
        `synthsight.distributed.gather_with_grad` when the loss needs the global batch (e.g. negatives).
        """
        raise NotImplementedError

    def network_input(self, *views: torch.Tensor) -> torch.Tensor:
        """Views (each Tensor[B, 3, S, S] in [0, 1]) as one normalised network input Tensor[n x B, 3, S, S], in
        the configured memory format: one forward pass for all of them."""
        return normalize_images(torch.cat(views)).contiguous(memory_format=self.memory_format)

    def before_optimizer_step(self, step: int, total_steps: int) -> None:
        """Hook between backward (gradients unscaled and all-reduced) and clipping + the optimiser step, e.g. to
        drop the gradients of a frozen layer; nothing by default."""

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        """Hook for momentum (EMA) updates; nothing by default."""
