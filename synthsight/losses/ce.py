"""Cross-entropy with soft targets, and label smoothing (Szegedy et al. 2016) as soft targets.

Formula-driven supervised pretraining (FractalDB, Kataoka et al. 2020; RCDB, Kataoka et al. 2022) trains a
classifier over the generators' categories with this loss; MixUp (Zhang et al. 2018) mixes the soft targets.
Pure functions of tensors.

Example:
    >>> targets = smooth_one_hot(torch.tensor([3, 0]), num_classes=10, smoothing=0.1)   # Tensor[2, 10]
    >>> loss = soft_cross_entropy(torch.randn(2, 10), targets)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """int Tensor[B] -> float32 Tensor[B, K]: 1 - smoothing on the class, smoothing spread evenly over all K."""
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    if labels.ndim != 1 or labels.is_floating_point():
        raise ValueError(f"labels must be an integer Tensor[B], got {labels.dtype} {tuple(labels.shape)}")
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got {int(labels.min())}..{int(labels.max())}")
    one_hot = F.one_hot(labels.long(), num_classes).float()
    return one_hot * (1.0 - smoothing) + smoothing / num_classes


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -sum_k targets[k] log softmax(logits)[k]; Tensor[B, K] both, computed in float32."""
    if logits.shape != targets.shape or logits.ndim != 2:
        raise ValueError(f"logits and targets must be Tensor[B, K] of one shape, got {tuple(logits.shape)} and "
                         f"{tuple(targets.shape)}")
    return -(targets.float() * logits.float().log_softmax(dim=1)).sum(dim=1).mean()
