"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al. 2020).

Pure function of tensors: no state, no distributed calls.

Example:
    >>> z1, z2 = torch.randn(8, 128), torch.randn(8, 128)   # two views of 8 images
    >>> loss = nt_xent(z1, z2, temperature=0.2)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float = 0.2,
    all_z1: torch.Tensor | None = None,
    all_z2: torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    """Mean NT-Xent over the 2B anchors; z1[i] and z2[i] (Tensor[B, D]) are the positive pair.

    Each anchor's negatives are the other embeddings of the batch. With data parallelism pass the embeddings of
    the global batch, gathered from every rank (`all_z1`, `all_z2`: Tensor[N, D], N >= B), and where this rank's
    pairs sit in them (`all_z1[offset:offset + B]` is z1): the anchors stay local, the negatives are the other
    2N - 2 embeddings of the global batch. The mean over the ranks' losses is then the one-process loss of the
    global batch. Computed in float32.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"expected two [B, D] tensors of one shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if (all_z1 is None) != (all_z2 is None):
        raise ValueError("pass both all_z1 and all_z2 (the gathered views), or neither")
    b = z1.shape[0]
    if all_z1 is None:
        all_z1, all_z2, offset = z1, z2, 0
    n = all_z1.shape[0]
    if all_z1.shape != all_z2.shape or all_z1.shape[1:] != z1.shape[1:] or not 0 <= offset <= n - b:
        raise ValueError(
            f"gathered views {tuple(all_z1.shape)}, {tuple(all_z2.shape)} must be [N, {z1.shape[1]}] with "
            f"0 <= offset <= N - {b}; got offset {offset}"
        )
    queries = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # [2B, D]
    keys = queries  # [2N, D]
    if all_z1 is not z1 or all_z2 is not z2:
        keys = F.normalize(torch.cat([all_z1, all_z2]).float(), dim=1)
    logits = queries @ keys.t() / temperature
    local = torch.arange(b, device=logits.device) + offset
    own = torch.cat([local, local + n])  # the column of each anchor itself: not its own negative
    logits = logits.index_put((torch.arange(2 * b, device=logits.device), own), logits.new_tensor(float("-inf")))
    targets = torch.cat([local + n, local])  # z1[i] pairs with z2[i] and back
    return F.cross_entropy(logits, targets)
