"""Momentum (EMA) target networks, shared by MoCo, BYOL and DINO: a frozen copy, its update, its schedule; and
DINO's centre, the EMA of the teacher's mean logits (DINO, data2vec's prototype losses).

Example:
    >>> target = frozen_copy(online)
    >>> ema_update_(target, online, cosine_momentum(step, total_steps, base=0.996))
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from synthsight.distributed import mean_across_ranks
from synthsight.losses.dino import updated_centre


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy with gradients off: the target starts equal to the online network."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


def cosine_momentum(step: int, total_steps: int, base: float, final: float = 1.0) -> float:
    """BYOL/DINO schedule: `base` at step 0, rising along a half cosine to `final` at the last step."""
    if total_steps <= 1:
        return base
    progress = min(max(step / (total_steps - 1), 0.0), 1.0)
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2


@torch.no_grad()
def ema_update_(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target <- momentum x target + (1 - momentum) x online, parameter by parameter; buffers (BatchNorm
    statistics) are copied from the online network."""
    t_params, o_params = list(target.parameters()), list(online.parameters())
    if len(t_params) != len(o_params):
        raise ValueError("target and online networks must have the same architecture")
    torch._foreach_lerp_(t_params, o_params, 1.0 - momentum)
    for t_buf, o_buf in zip(target.buffers(), online.buffers()):
        t_buf.copy_(o_buf)


@torch.no_grad()
def move_centre_(centre: torch.Tensor, teacher_logits: torch.Tensor, momentum: float) -> None:
    """DINO's centre update, in place: `centre` Tensor[K] <- the EMA (`momentum`) of the teacher's mean logits
    Tensor[N, K] over the global batch (all-reduced under DDP)."""
    centre.copy_(updated_centre(centre, mean_across_ranks(teacher_logits.mean(dim=0, keepdim=True)), momentum))
