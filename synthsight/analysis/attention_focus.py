"""How much of a ViT's CLS attention falls on the object: a number for "object-shaped attention maps".

An image's foreground is what differs from its background, taken as the median colour of its one-pixel border
(Fashion-MNIST: the garment on black). A patch is foreground when at least half of its pixels are. For each image
and head the CLS attention map (analysis.attention.cls_attention_maps) is scaled to sum to 1; its mass on the
foreground patches is the attention share. Attention spread evenly would give the area share (the foreground
patches' fraction), so share / area > 1 means attention concentrates on the object, 1 means it ignores it.

A head may instead attend to everything but the object (MAE-trained ViTs often split their heads so): its map is
as object-shaped, but its share is below the area. The separation measures shape in either direction: per image
and head, the AUC of the map's values as a foreground-versus-background score (the chance that a foreground patch
gets more attention than a background patch, ties half), as |2 AUC - 1|: 0 when the map does not follow the
object's outline, 1 when a threshold on it segments the object exactly.

Example:
    >>> maps = cls_attention_maps(vit.eval(), normalize_images(images))       # Tensor[B, heads, 8, 8]
    >>> focus = attention_focus(maps, foreground_patches(images, patch=4))
    >>> focus["attention_share"], focus["area_share"], focus["ratio"], focus["separation"]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def foreground_patches(images: torch.Tensor, patch: int, threshold: float = 0.1) -> torch.Tensor:
    """Tensor[B, H / patch, W / patch] (bool): patches of which at least half the pixels differ from the image's
    border colour (per-channel median of the outer frame) by more than `threshold` in some channel; `images` in
    [0, 1] (or uint8), Tensor[B, C, H, W] with H and W multiples of `patch`."""
    if images.ndim != 4 or images.shape[-1] % patch or images.shape[-2] % patch:
        raise ValueError(f"images must be Tensor[B, C, H, W] with sides that are multiples of {patch}, got "
                         f"{tuple(images.shape)}")
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    frame = torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], dim=-1)  # Tensor[B, C, 2H + 2W]
    border = frame.median(dim=-1).values[..., None, None]
    pixels = ((x - border).abs() > threshold).any(dim=1, keepdim=True).float()  # Tensor[B, 1, H, W]
    return F.avg_pool2d(pixels, patch)[:, 0] >= 0.5


def separation(maps: torch.Tensor, foreground: torch.Tensor) -> torch.Tensor:
    """|2 AUC - 1| per image and head, Tensor[B, heads]: how well each map's values tell foreground patches from
    background ones (`maps` Tensor[B, heads, h, w], `foreground` Tensor[B, h, w] bool), whichever way round."""
    values = maps.float().flatten(2)  # Tensor[B, heads, N]
    fg = foreground.flatten(1)  # Tensor[B, N]
    pairs = (fg[:, :, None] & ~fg[:, None, :]).float()[:, None]  # Tensor[B, 1, N, N]: (foreground i, background j)
    diff = values[..., :, None] - values[..., None, :]
    wins = ((diff > 0).float() + 0.5 * (diff == 0).float()) * pairs
    auc = wins.sum(dim=(-2, -1)) / pairs.sum(dim=(-2, -1)).clamp_min(1)
    return (2 * auc - 1).abs()


def attention_focus(maps: torch.Tensor, foreground: torch.Tensor) -> dict[str, float]:
    """Over the images that have both foreground and background patches (`images`: how many): the mean share of the
    CLS attention on foreground patches (`maps` Tensor[B, heads, h, w], each map scaled to sum to 1), the mean share
    of the patches that are foreground, their ratio (attention share / area share), and the separation (mean
    |2 AUC - 1| over images and heads) with that of the most object-shaped head."""
    if maps.ndim != 4 or foreground.shape != (maps.shape[0], *maps.shape[-2:]):
        raise ValueError(f"maps Tensor[B, heads, h, w] and foreground Tensor[B, h, w] must match, got "
                         f"{tuple(maps.shape)} and {tuple(foreground.shape)}")
    weights = maps.float() / maps.float().sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    fg = foreground.float()
    area = fg.mean(dim=(-2, -1))  # Tensor[B]
    keep = (area > 0) & (area < 1)
    if not keep.any():
        raise ValueError("no image has both foreground and background patches: the attention focus is undefined")
    share = (weights * fg[:, None]).sum(dim=(-2, -1)).mean(dim=1)  # Tensor[B]: mean over heads
    attention_share, area_share = float(share[keep].mean()), float(area[keep].mean())
    per_head = separation(maps[keep], foreground[keep]).mean(dim=0)  # Tensor[heads]
    return {"attention_share": round(attention_share, 4), "area_share": round(area_share, 4),
            "ratio": round(attention_share / area_share, 4), "separation": round(float(per_head.mean()), 4),
            "separation_best_head": round(float(per_head.max()), 4), "images": int(keep.sum())}
