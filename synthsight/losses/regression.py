"""Regression losses of the negative-free methods: a prediction p regresses a target z in cosine.

- `normalized_mse`: BYOL (Grill et al. 2020), ||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z), in [0, 4].
- `negative_cosine`: SimSiam (Chen & He 2021), D(p, z) = -cos(p, z), in [-1, 1].

Pure functions of tensors, computed in float32. They do not stop the gradient: the method passes a target that
carries none (BYOL's momentum network runs under no_grad; SimSiam passes z.detach()).

Example:
    >>> p, z = torch.randn(8, 256), torch.randn(8, 256)   # predictions and targets of 8 images
    >>> loss = normalized_mse(p, z.detach())               # about 2 for unrelated vectors
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Per-row cosine similarity of two Tensor[B, D] -> Tensor[B]."""
    if p.shape != z.shape or p.ndim != 2:
        raise ValueError(f"expected predictions and targets as two [B, D] tensors of one shape, got "
                         f"{tuple(p.shape)} and {tuple(z.shape)}")
    return (F.normalize(p.float(), dim=1) * F.normalize(z.float(), dim=1)).sum(dim=1)


def normalized_mse(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of 2 - 2 cos(p[i], z[i]) (BYOL's loss for one direction)."""
    return (2 - 2 * _cosine(p, z)).mean()


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -cos(p[i], z[i]) (SimSiam's D for one direction)."""
    return -_cosine(p, z).mean()
