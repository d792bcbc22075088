"""MixUp (Zhang et al. 2018, "mixup: Beyond Empirical Risk Minimization") within a batch, with mixed targets.

Image i is blended with a partner from the same batch, x_i' = lam_i x_i + (1 - lam_i) x_partner(i), and so are the
soft targets. lam_i ~ Beta(alpha, alpha), one per image (drawn from the image's own randomness, like every other
augmentation parameter, by the inverse Beta CDF of one uniform); the partners are a random permutation of the
batch. Shaders21k (Baradad et al. 2022) found MixUp the largest single gain of supervised synthetic pretraining.

Example:
    >>> lam, partner = sample_mixup(torch.Generator().manual_seed(0), n=8, alpha=0.2)   # Tensor[8], Tensor[8]
    >>> mixed_images, mixed_targets = mixup(images, targets, lam, partner)             # [8, 3, S, S], [8, K]
"""

from __future__ import annotations

import torch
from scipy.special import betaincinv  # scipy comes with scikit-learn

from synthsight.augment.rng import Randomness, rand


def sample_mixup(g: Randomness, n: int, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image weights lam (float32 Tensor[n] in [0, 1], Beta(alpha, alpha)) and partners (int64 Tensor[n], a
    permutation of 0..n-1). Draws two uniforms per image from `g`."""
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0 (Beta(alpha, alpha)), got {alpha}")
    u = rand(g, n).double()
    lam = torch.from_numpy(betaincinv(alpha, alpha, u.numpy())).float()
    partner = torch.argsort(rand(g, n), stable=True)  # a uniformly random permutation of the batch
    return lam, partner


def mixup(
    images: torch.Tensor, targets: torch.Tensor, lam: torch.Tensor, partner: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend each image and its target with its partner's: Tensor[B, C, H, W], Tensor[B, K] (soft targets),
    lam Tensor[B], partner int Tensor[B] -> mixed images and targets of the same shapes."""
    b = images.shape[0]
    if targets.ndim != 2 or len(targets) != b or lam.shape != (b,) or partner.shape != (b,):
        raise ValueError(f"need images [B, ...], targets [B, K], lam [B], partner [B] with one B; got "
                         f"{tuple(images.shape)}, {tuple(targets.shape)}, {tuple(lam.shape)}, {tuple(partner.shape)}")
    partner = partner.to(images.device)
    w = lam.to(device=images.device, dtype=images.dtype).view(b, *([1] * (images.ndim - 1)))
    mixed = w * images + (1 - w) * images[partner]
    wt = lam.to(device=targets.device, dtype=targets.dtype).view(b, 1)
    return mixed, wt * targets + (1 - wt) * targets[partner.to(targets.device)]
