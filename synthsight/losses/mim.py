"""Losses of masked image modelling: taken at the hidden patches only.

- `masked_pixel_loss`: MAE (He et al. 2022), mean squared error between predicted and true pixels of every hidden
  patch; with `norm_pix` each target patch is first normalised by its own mean and standard deviation (the paper's
  better-features variant).
- `layer_average_targets`: data2vec (Baevski et al. 2022), the average of the teacher's top-K block outputs, each
  instance-normalised (every channel over one image's tokens) first.
- `cls_targets`: one target per image for a loss on the CLS token (data2vec 2.0's mean of the patch targets, or the
  teacher's own CLS token).
- `masked_regression_loss`: data2vec's regression of those targets, MSE (data2vec 2.0) or smooth L1 (data2vec).

Pure functions of tensors, computed in float32; they do not stop the gradient (the teacher runs under no_grad).
Shapes: B images, N patches, K values per patch; mask bool [B, N], True where hidden.

Example:
    >>> target = patchify(normalize_images(x), 4)                    # [B, 64, 48] at 32 px
    >>> loss = masked_pixel_loss(pred, target, mask.mask)             # visible patches do not count
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """Tensor[B, C, H, W] -> Tensor[B, (H/p) x (W/p), p x p x C]: row-major patches, each flattened as (p, p, C)."""
    b, c, h, w = images.shape
    if h % patch or w % patch:
        raise ValueError(f"image side {h}x{w} is not a multiple of the patch side {patch}")
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def _masked_mean(per_patch: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of Tensor[B, N] over the entries where mask [B, N] is True."""
    if mask.shape != per_patch.shape:
        raise ValueError(f"mask {tuple(mask.shape)} does not match the patches {tuple(per_patch.shape)}")
    m = mask.to(per_patch.dtype)
    return (per_patch * m).sum() / m.sum().clamp(min=1.0)


def masked_pixel_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm_pix: bool = True,
                      eps: float = 1e-6) -> torch.Tensor:
    """MAE's loss: mean over hidden patches of the per-patch MSE; Tensor[B, N, K] twice and bool [B, N]."""
    if pred.shape != target.shape:
        raise ValueError(f"predictions {tuple(pred.shape)} and targets {tuple(target.shape)} differ in shape")
    target = target.float()
    if norm_pix:
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + eps).sqrt()
    return _masked_mean((pred.float() - target).pow(2).mean(dim=-1), mask)


def layer_average_targets(layers: list[torch.Tensor], layer_norm: bool = False) -> torch.Tensor:
    """data2vec's targets: the mean of the block outputs Tensor[B, N, D] after instance-normalising each (every
    channel to zero mean and unit variance over one image's N tokens); `layer_norm` normalises the average over
    channels too (data2vec 2.0)."""
    if not layers:
        raise ValueError("no block outputs to average; method.top_k_blocks must be >= 1")
    normed = [F.instance_norm(x.float().transpose(1, 2)).transpose(1, 2) for x in layers]
    target = torch.stack(normed).mean(dim=0)
    return F.layer_norm(target, target.shape[-1:]) if layer_norm else target


def cls_targets(kind: str, patch_targets: torch.Tensor, teacher_cls: list[torch.Tensor]) -> torch.Tensor:
    """Targets Tensor[B, D] for the student's CLS token: `patch_mean`, the mean over the N patches of the targets
    Tensor[B, N, D] (data2vec 2.0); `teacher_cls`, the teacher's CLS outputs of the top-K blocks (each Tensor[B, D])
    averaged and layer-normalised over channels."""
    if kind == "patch_mean":
        return patch_targets.float().mean(dim=1)
    if kind == "teacher_cls":
        if not teacher_cls:
            raise ValueError("no teacher CLS outputs to average; method.top_k_blocks must be >= 1")
        target = torch.stack([t.float() for t in teacher_cls]).mean(dim=0)
        return F.layer_norm(target, target.shape[-1:])
    raise ValueError(f"unknown CLS target {kind!r}; use patch_mean or teacher_cls")


def regression_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "mse", beta: float = 2.0) -> torch.Tensor:
    """Per-row MSE or smooth L1 (threshold `beta`), averaged over the last (channel) axis: Tensor[..., D] twice ->
    Tensor[...], float32."""
    if pred.shape != target.shape:
        raise ValueError(f"predictions {tuple(pred.shape)} and targets {tuple(target.shape)} differ in shape")
    pred, target = pred.float(), target.float()
    if kind == "mse":
        per = (pred - target).pow(2)
    elif kind == "smooth_l1":
        per = F.smooth_l1_loss(pred, target, reduction="none", beta=beta)
    else:
        raise ValueError(f"unknown regression loss {kind!r}; use mse or smooth_l1")
    return per.mean(dim=-1)


def masked_regression_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str = "mse",
                           beta: float = 2.0) -> torch.Tensor:
    """Mean over hidden patches of the per-patch MSE or smooth L1 (threshold `beta`), averaged over channels."""
    return _masked_mean(regression_loss(pred, target, kind, beta), mask)
