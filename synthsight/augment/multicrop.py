"""Multi-crop views (Caron et al. 2020, SwAV; used by DINO): 2 large global crops and N small local crops per image.

Crops of one resolution are concatenated so a network sees each resolution in ONE forward pass:
`MultiCrops.groups` is a list of Tensor[n_views x B, 3, side, side], view-major (view 0's B images, then view 1's),
globals first. With the CPU defaults (G=32, L=16, N=4) that is Tensor[2B, 3, 32, 32] and Tensor[4B, 3, 16, 16].
Colour augmentation follows the SimCLR/BYOL recipe of `ViewConfig`; DINO's asymmetric blur (global 1 always,
global 2 at 0.1, locals at 0.5) and solarisation (global 2) are optional.

Example:
    >>> crops = multi_crop(images, torch.Generator().manual_seed(0), MultiCropConfig(), ViewConfig())
    >>> [x.shape for x in crops.groups]        # [torch.Size([2B, 3, 32, 32]), torch.Size([4B, 3, 16, 16])]
    >>> per_view = crops.views()               # 6 tensors of Tensor[B, 3, side, side]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from synthsight.augment.ops import (
    color_jitter, gaussian_blur, random_grayscale, random_resized_crop, random_solarize,
)
from synthsight.augment.rng import Randomness
from synthsight.augment.views import ViewConfig
from synthsight.config import check_not_above, check_ranges

BLUR_SIGMA_AT_224 = (0.1, 2.0)  # DINO's blur sigma in pixels at 224 px; scaled with the crop side here
DINO_BLUR_P = (1.0, 0.1, 0.5)  # DINO's blur probability: global crop 1, global crop 2, every local crop


@dataclass
class MultiCropConfig:
    """Geometry of the crops; their colour comes from a `ViewConfig`."""

    global_size: int = 32  # side of the 2 global crops (DINO: 224; here the training view size)
    global_crops: int = 2  # the teacher sees these; DINO uses 2
    global_scale_min: float = 0.4  # global crop area fraction in [this, 1] (DINO 0.4; 0.32 for small images)
    local_crops: int = 4  # small crops seen by the student only (DINO: 6-10); 0 = plain two-view training
    local_size: int = 16  # side of the local crops (DINO: 96 at 224, i.e. ~0.43 of the global side)
    local_scale_min: float = 0.05  # local crop area fraction in [this, local_scale_max]
    local_scale_max: float = 0.4  # DINO: the global crops' lower bound, so locals see parts, globals the whole
    blur: bool = False  # DINO's asymmetric Gaussian blur (sigma scaled to the crop side); off for tiny images
    solarize_p: float = 0.2  # solarisation of the second global crop (DINO, BYOL: 0.2)

    def __post_init__(self) -> None:
        check_ranges(self, "multicrop", global_size=">=1", global_crops=">=1", global_scale_min="(0,1]",
                     local_crops=">=0", local_size=">=1", local_scale_min="(0,1]", local_scale_max="(0,1]",
                     solarize_p="[0,1]")
        check_not_above(self, "multicrop", "local_scale_min", "local_scale_max")

    @property
    def num_crops(self) -> int:
        return self.global_crops + self.local_crops


@dataclass
class MultiCrops:
    """Crops grouped by resolution: `groups[j]` holds `counts[j]` views of the whole batch, view-major."""

    groups: list[torch.Tensor]
    counts: list[int]

    def views(self) -> list[torch.Tensor]:
        """One Tensor[B, 3, side, side] per crop, globals first."""
        return [v for x, n in zip(self.groups, self.counts) for v in x.chunk(n)]


def _crop(images: torch.Tensor, g: Randomness, size: int, scale: tuple[float, float], colour: ViewConfig,
          blur_p: float, solarize_p: float) -> torch.Tensor:
    x = random_resized_crop(images, size, g, scale=scale, flip_p=colour.flip_p)
    x = color_jitter(x, g, colour.brightness, colour.contrast, colour.saturation, colour.hue, p=colour.jitter_p)
    x = random_grayscale(x, g, p=colour.grayscale_p)
    if blur_p > 0:
        sigma = tuple(s * size / 224 for s in BLUR_SIGMA_AT_224)
        x = gaussian_blur(x, g, sigma=sigma, p=blur_p)
    if solarize_p > 0:
        x = random_solarize(x, g, p=solarize_p)
    return x


def multi_crop(images: torch.Tensor, g: Randomness, cfg: MultiCropConfig, colour: ViewConfig) -> MultiCrops:
    """Tensor[B, 3, S, S] in [0, 1] -> global and local crops in [0, 1], consecutive crops of one side concatenated
    (so locals of the global side share the globals' group). Deterministic given `g`."""
    sides, crops = [], []
    for i in range(cfg.global_crops):
        blur_p = (DINO_BLUR_P[0] if i == 0 else DINO_BLUR_P[1]) if cfg.blur else 0.0
        solarize_p = cfg.solarize_p if i == 1 else 0.0
        crops.append(_crop(images, g, cfg.global_size, (cfg.global_scale_min, 1.0), colour, blur_p, solarize_p))
        sides.append(cfg.global_size)
    for _ in range(cfg.local_crops):
        blur_p = DINO_BLUR_P[2] if cfg.blur else 0.0
        crops.append(_crop(images, g, cfg.local_size, (cfg.local_scale_min, cfg.local_scale_max), colour, blur_p,
                           0.0))
        sides.append(cfg.local_size)
    groups: list[list[torch.Tensor]] = []
    for i, (side, crop) in enumerate(zip(sides, crops)):
        if i > 0 and side == sides[i - 1]:
            groups[-1].append(crop)
        else:
            groups.append([crop])
    return MultiCrops([torch.cat(grp) for grp in groups], [len(grp) for grp in groups])
