"""Supervised contrastive loss, SupCon (Khosla et al. 2020, "Supervised Contrastive Learning"), L_out form.

Every view of the batch is an anchor; its positives are all other views of the same class (its own second view
included), its denominator all other views of the batch. The loss of an anchor is the mean over its positives of
-log softmax, averaged over anchors. With one class per image it is NT-Xent (SimCLR). A label < 0 means "no
class" (an image of a family without categories, or a real image): its only positive is its own other view, so a
batch mixing labelled and unlabelled images is SupCon on the first and SimCLR on the second, in one softmax.

Pure function of tensors: no state, no distributed calls.

Example:
    >>> z1, z2, labels = torch.randn(8, 128), torch.randn(8, 128), torch.randint(0, 3, (8,))
    >>> loss = supcon_loss(z1, z2, labels, temperature=0.1)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def supcon_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 0.1,
    all_z1: torch.Tensor | None = None,
    all_z2: torch.Tensor | None = None,
    all_labels: torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    """Mean SupCon loss over the 2B local anchors; z1[i], z2[i] (Tensor[B, D]) are two views of image i, whose class
    is labels[i] (int Tensor[B]).

    With data parallelism pass the global batch gathered from every rank (`all_z1`, `all_z2`: Tensor[N, D],
    `all_labels`: Tensor[N]) and where this rank's images sit in it (`all_z1[offset:offset + B]` is z1): anchors
    stay local, positives and negatives come from the whole global batch, so the mean over ranks is the
    one-process loss of the global batch. Computed in float32.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"expected two [B, D] tensors of one shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    b = z1.shape[0]
    if labels.shape != (b,) or labels.is_floating_point():
        raise ValueError(f"labels must be an integer Tensor[{b}], got {labels.dtype} {tuple(labels.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    gathered = (all_z1 is not None, all_z2 is not None, all_labels is not None)
    if any(gathered) and not all(gathered):
        raise ValueError("pass all of all_z1, all_z2 and all_labels (the gathered batch), or none")
    if all_z1 is None:
        all_z1, all_z2, all_labels, offset = z1, z2, labels, 0
    n = all_z1.shape[0]
    if (all_z1.shape != all_z2.shape or all_z1.shape[1:] != z1.shape[1:] or all_labels.shape != (n,)
            or not 0 <= offset <= n - b):
        raise ValueError(
            f"gathered views {tuple(all_z1.shape)}, {tuple(all_z2.shape)} and labels {tuple(all_labels.shape)} must be "
            f"[N, {z1.shape[1]}], [N, {z1.shape[1]}], [N] with 0 <= offset <= N - {b}; got offset {offset}"
        )
    # unlabelled images (< 0) become classes of one: ids -1 - (position in the gathered batch)
    labels = _own_class_if_unlabelled(labels.to(all_labels.device), offset)
    all_labels = _own_class_if_unlabelled(all_labels, 0)
    queries = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # [2B, D]
    keys = queries if all_z1 is z1 else F.normalize(torch.cat([all_z1, all_z2]).float(), dim=1)  # [2N, D]
    logits = queries @ keys.t() / temperature  # [2B, 2N]
    local = torch.arange(b, device=logits.device) + offset
    own = torch.cat([local, local + n])  # each anchor's own column: neither its positive nor in its denominator
    rows = torch.arange(2 * b, device=logits.device)
    self_mask = torch.zeros_like(logits, dtype=torch.bool).index_put_((rows, own), torch.tensor(True))
    log_prob = logits.masked_fill(self_mask, float("-inf")).log_softmax(dim=1)
    key_labels = torch.cat([all_labels, all_labels]).to(logits.device)
    anchor_labels = torch.cat([labels, labels]).to(logits.device)
    positives = (anchor_labels[:, None] == key_labels[None, :]) & ~self_mask  # >= 1 per row: the other view
    per_anchor = -(log_prob.masked_fill(~positives, 0.0).sum(dim=1)) / positives.sum(dim=1)
    return per_anchor.mean()


def _own_class_if_unlabelled(labels: torch.Tensor, first: int) -> torch.Tensor:
    """labels with every negative entry replaced by a class of its own, -1 - (its position in the gathered batch;
    the first of `labels` sits at `first`): never equal to another image's label."""
    own = -1 - torch.arange(first, first + labels.shape[0], device=labels.device, dtype=labels.dtype)
    return torch.where(labels < 0, own, labels)
