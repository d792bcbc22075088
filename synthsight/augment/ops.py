"""Batched tensor augmentations: every image of a batch gets its own parameters.

Parameters are drawn on the CPU (so a run is reproducible on any device), either from one `torch.Generator` for
the batch or from each image's own stream (`augment.rng.PerImageRandom`, what training uses, so an image's
augmentation does not depend on its batch or rank), and applied as whole-batch tensor operations: one
`grid_sample` for crop + flip, a few broadcasts for colour.

Example:
    >>> g = torch.Generator().manual_seed(0)
    >>> views = random_resized_crop(images, 32, g)             # Tensor[B, 3, 32, 32]
    >>> views = color_jitter(views, g, brightness=0.4)
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import torch
import torch.nn.functional as F

from synthsight.augment.rng import Randomness, rand

_LUMA = (0.299, 0.587, 0.114)


def outside_autocast(op: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Run an augmentation in its input's precision even inside the train step's autocast region: views are data,
    not network activations. Under CPU bf16 autocast the crop grid (affine_grid) and the hue rotation (a batched
    matmul) would otherwise run in bf16, less precise and, with the casts, ~35% slower (25 vs 18 ms for two views
    of 256 images, two threads)."""

    @functools.wraps(op)
    def run(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return op(x, *args, **kwargs)

    return run


def _uniform(g: Randomness, n: int, low: float, high: float) -> torch.Tensor:
    return rand(g, n) * (high - low) + low


def _coin(g: Randomness, n: int, p: float) -> torch.Tensor:
    return rand(g, n) < p


@outside_autocast
def random_resized_crop(
    x: torch.Tensor,
    size: int,
    g: Randomness,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_p: float = 0.5,
) -> torch.Tensor:
    """Crop a random area fraction in `scale` with aspect ratio in `ratio`, resize to size x size, flip with p.

    Tensor[B, C, H, W] -> Tensor[B, C, size, size]; bilinear sampling, crops clipped to the image.
    """
    b = x.shape[0]
    area = _uniform(g, b, *scale)
    log_r = _uniform(g, b, math.log(ratio[0]), math.log(ratio[1]))
    aspect = torch.exp(log_r)
    w = torch.sqrt(area * aspect).clamp(max=1.0)  # fraction of the width
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (rand(g, b) * 2 - 1) * (1 - w)  # centre in [-1, 1] keeping the crop inside
    cy = (rand(g, b) * 2 - 1) * (1 - h)
    flip = torch.where(_coin(g, b, flip_p), -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = w * flip
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, [b, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _luma_weights(x: torch.Tensor) -> torch.Tensor:
    return torch.tensor(_LUMA, device=x.device, dtype=x.dtype)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Tensor[B, 3, H, W] -> Tensor[B, 1, H, W] luma (ITU-R 601 weights)."""
    w = _luma_weights(x).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.to(device=like.device, dtype=like.dtype).view(-1, 1, 1, 1)


def _hue_rotation(angle: torch.Tensor) -> torch.Tensor:
    """Per-sample 3x3 RGB matrices rotating hue by `angle` radians about the grey axis (YIQ rotation)."""
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    from_yiq = torch.linalg.inv(to_yiq)
    c, s = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(angle.shape[0], 3, 3)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2] = c, -s
    rot[:, 2, 1], rot[:, 2, 2] = s, c
    return from_yiq @ rot @ to_yiq


@outside_autocast
def color_jitter(
    x: torch.Tensor,
    g: Randomness,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.1,
    p: float = 0.8,
) -> torch.Tensor:
    """Random brightness, contrast, saturation (factors in [1-v, 1+v]) and hue (shift in [-hue, hue] turns),
    applied to a random fraction p of the batch, in a fixed order. Values stay in [0, 1]."""
    b = x.shape[0]
    apply = _coin(g, b, p)

    def factor(v: float) -> torch.Tensor:
        f = _uniform(g, b, max(0.0, 1 - v), 1 + v)
        return torch.where(apply, f, torch.ones(b))

    fb, fc, fs = factor(brightness), factor(contrast), factor(saturation)
    angle = torch.where(apply, _uniform(g, b, -hue, hue) * 2 * math.pi, torch.zeros(b))
    # Each blend v + f (x - v) is one lerp and each clamp in place: fewer passes over the batch, same maths.
    x = (x * _per_sample(fb, x)).clamp_(0, 1)
    mean = (x.mean(dim=(2, 3)) @ _luma_weights(x)).view(-1, 1, 1, 1)  # grey image's mean, from the channel means
    x = torch.lerp(mean.expand_as(x), x, _per_sample(fc, x)).clamp_(0, 1)
    x = torch.lerp(grayscale(x).expand_as(x), x, _per_sample(fs, x)).clamp_(0, 1)
    mats = _hue_rotation(angle).to(device=x.device, dtype=x.dtype)
    x = torch.einsum("bij,bjhw->bihw", mats, x)
    return x.clamp_(0, 1)


@outside_autocast
def random_grayscale(x: torch.Tensor, g: Randomness, p: float = 0.2) -> torch.Tensor:
    """Replace a random fraction p of the batch by its grey version (kept as 3 channels)."""
    pick = _coin(g, x.shape[0], p)  # kept on the CPU: indexing with it needs no device sync
    out = x.clone()
    out[pick] = grayscale(x[pick]).expand(-1, x.shape[1], -1, -1)  # only the picked images are converted
    return out


@outside_autocast
def gaussian_blur(
    x: torch.Tensor, g: Randomness, sigma: tuple[float, float] = (0.1, 2.0), p: float = 0.5
) -> torch.Tensor:
    """Blur a random fraction p of the batch with a Gaussian of per-image sigma (pixels) drawn from `sigma`.

    Separable, reflect-padded, one grouped convolution per axis for the whole batch; Tensor[B, C, H, W] in and out.
    """
    b, c, h, w = x.shape
    apply = _coin(g, b, p)
    s = _uniform(g, b, *sigma)
    radius = max(1, min(math.ceil(3 * sigma[1]), h - 1, w - 1))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-offsets[None] ** 2 / (2 * s[:, None] ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    identity = (offsets == 0).float().expand_as(kernel)
    kernel = torch.where(apply[:, None], kernel, identity)  # images left alone get a delta kernel
    k = kernel.to(device=x.device, dtype=x.dtype).repeat_interleave(c, dim=0)  # [B*C, 2r+1]
    y = x.reshape(1, b * c, h, w)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), k.view(b * c, 1, 1, -1), groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), k.view(b * c, 1, -1, 1), groups=b * c)
    return y.view(b, c, h, w)


@outside_autocast
def random_solarize(x: torch.Tensor, g: Randomness, p: float = 0.2, threshold: float = 0.5) -> torch.Tensor:
    """Invert the pixels at or above `threshold` in a random fraction p of the batch (values in [0, 1])."""
    pick = _per_sample(_coin(g, x.shape[0], p).float(), x)
    return x * (1 - pick) + torch.where(x >= threshold, 1 - x, x) * pick
