"""The one input normalisation shared by pretraining, evaluation and export."""

from __future__ import annotations

import torch

MEAN = (0.5, 0.5, 0.5)  # synthetic and real images alike are mapped from [0, 1] to roughly [-2, 2]
STD = (0.25, 0.25, 0.25)


def normalize_images(x: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1], Tensor[B, 3, H, W] -> normalised network input of the same shape.

    uint8 input is scaled to [0, 1] first.
    """
    if x.dtype == torch.uint8:
        x = x.float().div_(255.0)
    mean = torch.tensor(MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std
