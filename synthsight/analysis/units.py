"""Class selectivity of single feature units on real images (Morcos et al. 2018, "On the importance of single
directions for generalization").

For unit u with class-mean activations mu_c (over the real test images of class c):

    SI_u = (mu_max - mu_rest) / (mu_max + mu_rest),   mu_max = max_c mu_c,  mu_rest = mean of the other class means

SI is 0 when all classes drive the unit equally and 1 when only one class does. It assumes non-negative
activations (post-ReLU). Features that go negative (LayerNorm'd ViT tokens, linear layers) are shifted per unit by
their minimum over the images, so each such unit's weakest response becomes 0; units that never go negative are
used as they are, exactly as in the paper. A unit silent on every image (mu_max + mu_rest = 0) gets SI = 0.

A unit counts as class-selective when SI > 0.5, i.e. its preferred class drives it at least 3x as strongly as
the other classes on average. The pretrained count is compared with the same architecture at random init.

Example:
    >>> sel = unit_selectivity(test_feats, test_labels)
    >>> sel.n_selective, sel.n_units
    >>> plot_top_units(test_feats, test_images, sel, Path("eval/units_top.png"), classes)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthsight.analysis.figures import class_name, displayable, mosaic_figure, new_figure, save_png

SELECTIVE_THRESHOLD = 0.5  # SI > 0.5 <=> preferred class mean > 3x the mean of the other class means


@dataclass
class UnitSelectivity:
    index: torch.Tensor  # float Tensor[D]: SI per unit
    preferred: torch.Tensor  # int64 Tensor[D]: the class with the highest mean activation
    threshold: float = SELECTIVE_THRESHOLD
    n_shifted: int = 0  # units that had negative activations and were shifted to a zero minimum

    @property
    def n_units(self) -> int:
        return len(self.index)

    @property
    def n_selective(self) -> int:
        return int((self.index > self.threshold).sum())

    def to_dict(self) -> dict[str, Any]:
        si = self.index
        return {"n_units": self.n_units, "n_selective": self.n_selective, "threshold": self.threshold,
                "fraction_selective": round(self.n_selective / max(1, self.n_units), 4),
                "mean_index": round(float(si.mean()), 4), "median_index": round(float(si.median()), 4),
                "n_shifted": self.n_shifted}


def class_means(features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(classes present, sorted: Tensor[C]; their mean activations: Tensor[C, D])."""
    if features.ndim != 2 or labels.shape != (len(features),):
        raise ValueError(f"need features Tensor[N, D] and labels Tensor[N], got {tuple(features.shape)} and "
                         f"{tuple(labels.shape)}")
    present, inverse = torch.unique(labels, return_inverse=True)
    sums = torch.zeros(len(present), features.shape[1], dtype=torch.float64).index_add_(0, inverse, features.double())
    counts = torch.bincount(inverse, minlength=len(present)).double().unsqueeze(1)
    return present, sums / counts


def selectivity_index(features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(SI per unit: Tensor[D] in [0, 1], preferred class per unit: Tensor[D], number of shifted units).

    Raises ValueError with fewer than two classes: selectivity between classes is undefined.
    """
    if not torch.isfinite(features).all():
        raise ValueError("features contain NaN or infinite values")
    if torch.unique(labels).numel() < 2:
        raise ValueError("class selectivity needs images of at least two classes; got one")
    x = features.double()
    low = x.min(dim=0).values
    negative = low < 0
    x = x - torch.where(negative, low, torch.zeros_like(low))  # shift only the units that go negative
    present, means = class_means(x, labels)
    top, arg = means.max(dim=0)
    rest = (means.sum(dim=0) - top) / (len(present) - 1)
    denom = top + rest
    si = torch.where(denom > 0, (top - rest) / denom.clamp_min(1e-300), torch.zeros_like(top))
    return si.float().clamp_(0, 1), present[arg], int(negative.sum())


def unit_selectivity(features: torch.Tensor, labels: torch.Tensor,
                     threshold: float = SELECTIVE_THRESHOLD) -> UnitSelectivity:
    """Selectivity of every unit of Tensor[N, D] features over the classes in `labels`."""
    si, preferred, shifted = selectivity_index(features, labels)
    return UnitSelectivity(si, preferred, threshold, shifted)


def plot_selectivity_histogram(results: dict[str, UnitSelectivity], path: Path,
                               title: str = "class selectivity of feature units (real test images)") -> Path:
    """Overlaid SI histograms, one per encoder, with the threshold and the selective counts in the legend."""
    fig, axes = new_figure(6, 3.4)
    ax = axes[0, 0]
    bins = np.linspace(0, 1, 41)
    for name, sel in results.items():
        ax.hist(sel.index.numpy(), bins=bins, alpha=0.55,
                label=f"{name}: {sel.n_selective}/{sel.n_units} units SI > {sel.threshold:g}")
    threshold = next(iter(results.values())).threshold if results else SELECTIVE_THRESHOLD
    ax.axvline(threshold, color="k", ls="--", lw=1)
    ax.set_xlabel("class-selectivity index (Morcos et al. 2018)")
    ax.set_ylabel("units")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_png(fig, path)


def top_units(sel: UnitSelectivity, n: int = 8) -> torch.Tensor:
    """Indices of the n most selective units, most selective first (ties by unit index)."""
    order = torch.argsort(-sel.index, stable=True)
    return order[: min(n, sel.n_units)]


def plot_top_units(features: torch.Tensor, images: torch.Tensor, sel: UnitSelectivity, path: Path,
                   classes: list[str] | None = None, n_units: int = 8, n_images: int = 8) -> Path:
    """A grid: one row per most-selective unit, its n_images top-activating images (uint8 Tensor[N, 3, H, W])."""
    if len(images) != len(features):
        raise ValueError(f"need one image per feature row, got {len(images)} images and {len(features)} rows")
    units = top_units(sel, n_units)
    n_images = min(n_images, len(images))
    best = [torch.argsort(-features[:, u].float(), stable=True)[:n_images] for u in units.tolist()]
    tiles = displayable(images[torch.cat(best)])
    labels = [f"unit {u}, SI {float(sel.index[u]):.2f}\nmean prefers {class_name(classes, int(sel.preferred[u]))}"
              for u in units.tolist()]
    fig = mosaic_figure(tiles, n_images, "most class-selective units (by class-mean activation): their top-activating single real images",
                        row_labels=labels, tile_inches=0.75, left_inches=1.1)
    return save_png(fig, path)
