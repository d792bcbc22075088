"""Distillation losses: soft targets from an ensemble (Hinton et al. 2015; MEAL V2, Shen & Savvides 2020) and
cosine feature matching. Pure functions of tensors: no state, no distributed calls.

Example:
    >>> target = ensemble_soft_targets([teacher_a_logits, teacher_b_logits], temperature=1.0)   # Tensor[B, K]
    >>> loss = soft_target_loss(student_logits, target, temperature=1.0)
    >>> loss = loss + cosine_feature_loss(adapter(student_features), teacher_features)
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def ensemble_soft_targets(logits: Sequence[torch.Tensor], temperature: float = 1.0) -> torch.Tensor:
    """The teachers' averaged output distribution: mean_t softmax(logits_t / T), each Tensor[B, K] -> Tensor[B, K].

    Averaging probabilities (not logits) is MEAL V2's ensemble; no hard label is ever formed.
    """
    if not logits:
        raise ValueError("need at least one teacher's logits")
    shapes = {tuple(t.shape) for t in logits}
    if len(shapes) != 1:
        raise ValueError(f"teachers' outputs must share one shape to be averaged, got {sorted(shapes)}")
    return torch.stack([F.softmax(t.float() / temperature, dim=1) for t in logits]).mean(dim=0)


def soft_target_loss(student_logits: torch.Tensor, target: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """T^2 * KL(target || softmax(student / T)), averaged over the batch; Tensor[B, K] each -> scalar.

    The T^2 factor keeps gradient magnitudes comparable across temperatures (Hinton et al.). Computed in float32.
    """
    if student_logits.shape != target.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and target {tuple(target.shape)} differ")
    log_q = F.log_softmax(student_logits.float() / temperature, dim=1)
    return F.kl_div(log_q, target.float(), reduction="batchmean") * temperature**2


def cosine_feature_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """1 - mean cosine similarity of matching rows, Tensor[B, D] each -> scalar in [0, 2]. Computed in float32."""
    if student.shape != teacher.shape:
        raise ValueError(f"student features {tuple(student.shape)} and teacher features {tuple(teacher.shape)} "
                         "differ; map the student through an adapter first")
    return 1.0 - F.cosine_similarity(student.float(), teacher.float(), dim=1).mean()
