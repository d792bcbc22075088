"""Per-class accuracy of an encoder against a baseline: which real classes did synthetic pretraining help?

Accuracies come from evaluation (`ProtocolResult.per_class` of one protocol, e.g. k-NN); the difference is in
percentage points, positive when the pretrained encoder classifies that class better. A class without test
images (None) is left out.

Example:
    >>> cmp = compare_per_class(classes, ours=[0.9, 0.8], baseline=[0.7, 0.85])
    >>> cmp.diff                   # [20.0, -5.0] percentage points
    >>> plot_per_class_diff(cmp, Path("eval/per_class.png"), "pretrained", "random init")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from synthsight.analysis.figures import MATCH_COLOUR, MISMATCH_COLOUR, new_figure, save_png


@dataclass
class PerClassComparison:
    classes: list[str]
    ours: list[float]  # accuracy per class, fraction in [0, 1]
    baseline: list[float]
    protocol: str = ""  # which protocol the accuracies come from, e.g. "knn"

    @property
    def diff(self) -> list[float]:
        """Percentage points, ours minus baseline, per class."""
        return [100 * (a - b) for a, b in zip(self.ours, self.baseline)]

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "classes": self.classes, "ours": self.ours, "baseline": self.baseline,
                "diff_points": [round(d, 2) for d in self.diff]}


def compare_per_class(classes: Sequence[str], ours: Sequence[float | None], baseline: Sequence[float | None],
                      protocol: str = "") -> PerClassComparison:
    """Pair up two encoders' per-class accuracies; classes either has no number for (None) are dropped."""
    if not len(ours) == len(baseline) == len(classes):
        raise ValueError(f"need one accuracy per class: {len(classes)} classes, {len(ours)} and {len(baseline)} values")
    kept = [(c, a, b) for c, a, b in zip(classes, ours, baseline) if a is not None and b is not None]
    if not kept:
        raise ValueError("no class has an accuracy for both encoders")
    return PerClassComparison([c for c, _, _ in kept], [float(a) for _, a, _ in kept], [float(b) for _, _, b in kept],
                              protocol)


def plot_per_class_diff(cmp: PerClassComparison, path: Path, ours_name: str = "pretrained",
                        baseline_name: str = "baseline") -> Path:
    """Horizontal bars: accuracy difference per class (green: better than the baseline, red: worse)."""
    diff = cmp.diff
    fig, axes = new_figure(6.4, 0.28 * len(diff) + 1.7)
    ax = axes[0, 0]
    ys = list(range(len(diff)))[::-1]
    colours = [MATCH_COLOUR if d >= 0 else MISMATCH_COLOUR for d in diff]
    bars = ax.barh(ys, diff, color=colours)
    ax.bar_label(bars, labels=[f"{d:+.1f}" for d in diff], fontsize=6, padding=2)
    ax.set_yticks(ys, cmp.classes, fontsize=7)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("accuracy difference (percentage points)", fontsize=7)
    lim = max([abs(d) for d in diff] + [1.0]) * 1.25
    ax.set_xlim(-lim, lim)
    protocol = f" ({cmp.protocol})" if cmp.protocol else ""
    ax.set_title(f"per-class accuracy{protocol}\n{ours_name}\nminus {baseline_name}", fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)
