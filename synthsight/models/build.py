"""The configured backbone, and the one function that gives the weights every run of a config starts from.

Training, evaluation's random-init baseline, fine-tuning from scratch and the benchmarks all take their starting
weights from `initial_backbone`, so "random init" always means exactly the weights pretraining started from.

Example:
    >>> start = initial_backbone(load_config("demo"))   # seeded by trainer.seed
"""

from __future__ import annotations

import torch

from synthsight.config import Config
from synthsight.models.backbones import create_backbone


def build_backbone(cfg: Config) -> torch.nn.Module:
    """The configured architecture (weights from the global RNG as it stands); ViTs size their position embeddings
    for the training view side (views.size)."""
    m = cfg.model
    return create_backbone(m.backbone, small_stem=m.small_stem, width=m.width, image_size=cfg.views.size,
                           patch_size=m.patch_size, pool=m.pool)


def initial_backbone(cfg: Config, seed: int | None = None) -> torch.nn.Module:
    """The backbone a run of `cfg` starts from: the global RNG seeded with trainer.seed (or `seed`), then the
    architecture built. The RNG is left where building left it, so a method's heads, built next, are seeded too."""
    torch.manual_seed(cfg.trainer.seed if seed is None else seed)
    return build_backbone(cfg)
