"""DINO self-distillation loss and its helpers (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision
Transformers"): the student's softmax over K prototypes is pulled towards the centred, sharpened softmax of a
momentum teacher, across views of the same image.

Pure functions of tensors: no module state, no torch.distributed calls (the method all-reduces the batch mean
before updating the centre). Logits are Tensor[B, K]; every function computes in float32 (safe under autocast).

Example:
    >>> probs = [teacher_probs(t, centre, teacher_temperature(step, 100)) for t in teacher_logits.chunk(2)]
    >>> loss = dino_loss(student_logits.chunk(2 + n_local), probs, student_temp=0.1)
    >>> centre = updated_centre(centre, teacher_logits, momentum=0.9)
    >>> loss = soft_cross_entropy(student_logits, probs[0], student_temp=0.1)   # one pair
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def teacher_probs(teacher_logits: torch.Tensor, centre: torch.Tensor, teacher_temp: float) -> torch.Tensor:
    """softmax((logits - centre) / temp): Tensor[B, K] (centre Tensor[K]) -> Tensor[B, K] probabilities.

    Centring keeps one prototype from dominating; the low temperature (sharpening) keeps the output from going
    uniform. Together they avoid collapse without negatives or a predictor.
    """
    if teacher_temp <= 0:
        raise ValueError(f"teacher_temp must be > 0, got {teacher_temp}")
    return F.softmax((teacher_logits.float() - centre.float()) / teacher_temp, dim=-1)


def dino_loss(student_logits_per_crop: Sequence[torch.Tensor], teacher_probs_per_global: Sequence[torch.Tensor],
              student_temp: float) -> torch.Tensor:
    """Mean over pairs (teacher global view t, student view s != t) of the cross-entropy
    -sum_k p_t[k] log softmax(s / student_temp)[k], averaged over the batch.

    `student_logits_per_crop`: one Tensor[B, K] per crop, the global crops first, in the order the teacher saw them
    (crop i < len(teacher_probs_per_global) is the same view as teacher view i, and that pair is skipped).
    `teacher_probs_per_global`: one Tensor[B, K] of probabilities per global view (from `teacher_probs`).
    With 2 globals and N locals there are 2 x (N + 1) pairs. A uniform teacher and student give ln K.
    """
    n_global, n_crops = len(teacher_probs_per_global), len(student_logits_per_crop)
    if n_global < 1 or n_crops < 2 or n_global > n_crops:
        raise ValueError(f"need at least one teacher view and two student views, the teacher's among them; got "
                         f"{n_global} teacher and {n_crops} student views")
    total, pairs = torch.zeros((), device=student_logits_per_crop[0].device), 0
    for t, p_t in enumerate(teacher_probs_per_global):
        for s, s_logits in enumerate(student_logits_per_crop):
            if s == t:  # the same view: nothing to learn from predicting itself
                continue
            total = total + soft_cross_entropy(s_logits, p_t, student_temp)
            pairs += 1
    return total / pairs


def soft_cross_entropy(student_logits: torch.Tensor, probs: torch.Tensor, student_temp: float) -> torch.Tensor:
    """-sum_k p[k] log softmax(s / student_temp)[k], averaged over the batch: Tensor[B, K] logits and teacher
    probabilities -> scalar. One (teacher view, student view) pair of `dino_loss`; also iBOT's CLS loss."""
    if student_temp <= 0:
        raise ValueError(f"student_temp must be > 0, got {student_temp}")
    log_p = F.log_softmax(student_logits.float() / student_temp, dim=-1)
    return (-(probs.float() * log_p).sum(dim=-1)).mean()


@torch.no_grad()
def updated_centre(centre: torch.Tensor, teacher_logits: torch.Tensor, momentum: float = 0.9) -> torch.Tensor:
    """EMA of the teacher's batch-mean logits: momentum x centre + (1 - momentum) x mean_b(logits).

    Tensor[K], Tensor[N, K] -> new Tensor[K] (the input is not modified). Under data parallelism pass the
    all-reduced batch mean as a one-row Tensor[1, K].
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"centre momentum must be in [0, 1], got {momentum}")
    batch_mean = teacher_logits.float().mean(dim=0)
    return centre * momentum + batch_mean.to(centre.dtype) * (1.0 - momentum)


def teacher_temperature(step: int, warmup_steps: int, start: float = 0.04, end: float = 0.07) -> float:
    """Linear warm-up of the teacher temperature from `start` at step 0 to `end` at `warmup_steps`, then `end`.

    DINO warms up over 30 epochs; a start above ~0.04 can make training unstable early on.
    """
    if warmup_steps <= 0:
        return end
    progress = min(max(step / warmup_steps, 0.0), 1.0)
    return start + (end - start) * progress


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Mean entropy in nats of Tensor[B, K] probability rows: ln K when uniform, 0 when one-hot (both collapse)."""
    p = probs.float()
    return -(p * p.clamp_min(1e-12).log()).sum(dim=-1).mean()
