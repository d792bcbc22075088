"""Draw ViT attention maps: each real image beside its CLS-token attention, one map per head, upsampled.

Takes the output of `synthsight.analysis.attention.cls_attention_maps` (Tensor[B, heads, h, w], the last block's
attention from the CLS token to every patch) and the images it was computed on. Each map is min-max scaled on
its own and upsampled bilinearly to the image size; DINO (Caron et al. 2021) showed such maps segment objects.

Example:
    >>> maps = cls_attention_maps(vit.eval(), normalize_images(images))    # Tensor[4, 3, 8, 8]
    >>> upsample_maps(maps, (32, 32)).shape                                # Tensor[4, 3, 32, 32], each in [0, 1]
    >>> plot_attention(maps, images, Path("eval/attention.png"), labels=labels, classes=classes)
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F

from synthsight.analysis.figures import class_name, displayable, mosaic_figure, save_png

MAX_HEADS = 12  # columns beyond this make the figure unreadable; the first heads are shown


def upsample_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Tensor[B, heads, h, w] -> Tensor[B, heads, H, W], each map scaled to [0, 1] on its own, then bilinear."""
    if maps.ndim != 4:
        raise ValueError(f"attention maps must be Tensor[B, heads, h, w], got shape {tuple(maps.shape)}")
    m = maps.float()
    low = m.amin(dim=(2, 3), keepdim=True)
    high = m.amax(dim=(2, 3), keepdim=True)
    m = (m - low) / (high - low).clamp_min(1e-12)
    return F.interpolate(m, size=size, mode="bilinear", align_corners=False)


def plot_attention(maps: torch.Tensor, images: torch.Tensor, path: Path, labels: torch.Tensor | None = None,
                   classes: list[str] | None = None, title: str = "CLS attention of the last block, per head") -> Path:
    """Row per image: the image, the head-mean map over it, then every head's map (up to MAX_HEADS)."""
    if len(maps) != len(images):
        raise ValueError(f"need one image per attention map, got {len(images)} images and {len(maps)} maps")
    pics = displayable(images).astype(np.float32)
    size = tuple(images.shape[-2:])
    heads = min(MAX_HEADS, maps.shape[1])
    up = upsample_maps(maps[:, :heads], size).cpu().numpy()
    mean = upsample_maps(maps.float().mean(dim=1, keepdim=True), size)[:, 0].cpu().numpy()
    cmap = matplotlib.colormaps["inferno"]
    tiles, titles = [], []
    for row in range(len(maps)):
        overlay = 0.4 * pics[row] + 0.6 * 255 * cmap(mean[row])[..., :3]
        tiles += [pics[row], overlay] + [255 * cmap(up[row, h])[..., :3] for h in range(heads)]
        label = class_name(classes, int(labels[row])) if labels is not None else ""
        titles += [label, "mean of heads" if row == 0 else ""] + [f"head {h}" if row == 0 else "" for h in range(heads)]
    tiles = np.stack(tiles).round().clip(0, 255).astype(np.uint8)
    more = f" (first {MAX_HEADS} of {maps.shape[1]})" if maps.shape[1] > MAX_HEADS else ""
    return save_png(mosaic_figure(tiles, heads + 2, title + more, titles=titles, tile_inches=0.95), path)
