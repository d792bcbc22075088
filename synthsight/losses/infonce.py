"""InfoNCE of MoCo (He et al. 2020; Chen et al. 2020, MoCo v2; Chen et al. 2021, MoCo v3): each query must pick
its own key out of a set of negative keys, by a softmax over cosine similarities divided by a temperature.

Two sources of negatives: a queue of keys from earlier batches (`info_nce_queue`, MoCo v1/v2) or the other keys
of the (global) batch (`info_nce`, MoCo v3). Pure functions of tensors: no state, no distributed calls. Computed
in float32. Queries carry the gradient; pass keys from the momentum encoder (no gradient).

Example:
    >>> q, k, queue = torch.randn(8, 128), torch.randn(8, 128), torch.randn(4096, 128)
    >>> loss = info_nce_queue(q, k, queue, temperature=0.2)      # ln(4097) at chance
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check(q: torch.Tensor, k: torch.Tensor, temperature: float) -> None:
    if q.shape != k.shape or q.ndim != 2:
        raise ValueError(f"expected queries and keys as two [B, D] tensors of one shape, got {tuple(q.shape)} and "
                         f"{tuple(k.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def info_nce_queue(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """Mean InfoNCE of queries q (Tensor[B, D]) against their keys k (Tensor[B, D], the positives) and a queue of
    K negative keys (Tensor[K, D]); the logits of each query are [q.k, q.queue] / temperature, Tensor[B, 1 + K].
    All three are L2-normalised here."""
    _check(q, k, temperature)
    if queue.ndim != 2 or queue.shape[1] != q.shape[1]:
        raise ValueError(f"queue must be [K, {q.shape[1]}], got {tuple(queue.shape)}")
    q = F.normalize(q.float(), dim=1)
    k = F.normalize(k.float(), dim=1)
    negatives = F.normalize(queue.float(), dim=1)
    logits = torch.cat([(q * k).sum(dim=1, keepdim=True), q @ negatives.t()], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


def info_nce(
    q: torch.Tensor, k: torch.Tensor, temperature: float = 0.2, all_k: torch.Tensor | None = None, offset: int = 0
) -> torch.Tensor:
    """Mean InfoNCE with batch negatives: query q[i] (Tensor[B, D]) pairs with key k[i] (Tensor[B, D]); the other
    keys of the batch are its negatives (logits Tensor[B, B] / temperature, targets on the diagonal).

    With data parallelism pass the keys of the global batch gathered from every rank (`all_k`: Tensor[N, D],
    N >= B) and where this rank's keys sit in them (`all_k[offset:offset + B]` is k); the mean of the ranks'
    losses is then the one-process loss of the global batch.
    """
    _check(q, k, temperature)
    b = q.shape[0]
    if all_k is None:
        all_k, offset = k, 0
    if all_k.ndim != 2 or all_k.shape[1] != k.shape[1] or not 0 <= offset <= all_k.shape[0] - b:
        raise ValueError(f"gathered keys {tuple(all_k.shape)} must be [N, {k.shape[1]}] with 0 <= offset <= N - {b}; "
                         f"got offset {offset}")
    q = F.normalize(q.float(), dim=1)
    keys = F.normalize(all_k.float(), dim=1)
    logits = q @ keys.t() / temperature
    return F.cross_entropy(logits, torch.arange(b, device=q.device) + offset)
