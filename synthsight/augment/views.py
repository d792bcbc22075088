"""Views for joint-embedding methods: SimCLR-style pairs built from the batched ops."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from synthsight.augment.ops import color_jitter, gaussian_blur, random_grayscale, random_resized_crop
from synthsight.augment.rng import Randomness


@dataclass
class ViewConfig:
    """Augmentation of one view (SimCLR's recipe, scaled for small images)."""

    size: int = 32  # output side in pixels; the real evaluation images are resized to the same side
    crop_scale_min: float = 0.2  # smallest crop area fraction (0.08 at ImageNet scale, 0.2 for 32 px)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 0.0  # Gaussian blur (SimCLR's ImageNet recipe: 0.5; off at 32 px, as its CIFAR recipe)
    blur_sigma: list[float] = field(default_factory=lambda: [0.1, 2.0])  # sigma range [low, high], output pixels

    def __post_init__(self) -> None:
        from synthsight.config import SIZE_RULE, check_ranges  # config imports this module

        check_ranges(self, "views", size=SIZE_RULE, crop_scale_min="(0,1]", flip_p="[0,1]", jitter_p="[0,1]",
                     brightness=">=0", contrast=">=0", saturation=">=0", hue="[0,0.5]", grayscale_p="[0,1]",
                     blur_p="[0,1]", blur_sigma=">0")
        self.blur_sigma = [float(v) for v in self.blur_sigma]
        if len(self.blur_sigma) != 2 or self.blur_sigma[0] > self.blur_sigma[1]:
            from synthsight.config import ConfigError

            raise ConfigError(f"views.blur_sigma = {list(self.blur_sigma)}: must be [low, high] with low <= high")


def make_view(images: torch.Tensor, g: Randomness, cfg: ViewConfig) -> torch.Tensor:
    """One augmented view of every image: Tensor[B, 3, S, S] in [0, 1] -> Tensor[B, 3, cfg.size, cfg.size]."""
    x = random_resized_crop(images, cfg.size, g, scale=(cfg.crop_scale_min, 1.0), flip_p=cfg.flip_p)
    x = color_jitter(x, g, cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue, p=cfg.jitter_p)
    x = random_grayscale(x, g, p=cfg.grayscale_p)
    if cfg.blur_p > 0:  # drawn only when on: views of configs without blur stay as they were
        x = gaussian_blur(x, g, sigma=(cfg.blur_sigma[0], cfg.blur_sigma[1]), p=cfg.blur_p)
    return x


def two_views(images: torch.Tensor, g: Randomness, cfg: ViewConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent views of every image (the positive pairs of SimCLR, BYOL, MoCo)."""
    return make_view(images, g, cfg), make_view(images, g, cfg)
