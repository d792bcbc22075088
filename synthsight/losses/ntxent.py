"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al. 2020).

Pure function of tensors: no state, no distributed calls.

Example:
    >>> z1, z2 = torch.randn(8, 128), torch.randn(8, 128)   # two views of 8 images
    >>> loss = nt_xent(z1, z2, temperature=0.2)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """Mean NT-Xent over the 2B anchors; z1[i] and z2[i] (Tensor[B, D]) are the positive pair.

    Each anchor's negatives are the other 2B - 2 embeddings of the batch. Computed in float32.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"expected two [B, D] tensors of one shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    logits = z @ z.t() / temperature
    logits.fill_diagonal_(float("-inf"))  # an embedding is not its own negative
    targets = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(logits, targets)
