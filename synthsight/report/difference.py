"""The pretrained encoder against its baseline: difference in points with a 95% interval, and a one-line verdict.

The interval treats the two top-1 accuracies as independent binomial proportions on the n test images
(difference ± 1.96 x sqrt(p1 (1 - p1) / n + p2 (1 - p2) / n)); both encoders see the same test images, so the
paired interval would be narrower: this one errs on the side of "not distinguishable".

Example:
    >>> d = difference(0.86, 0.845, 10000)      # Difference(points=1.5, low=0.5, high=2.5)
    >>> d.verdict                                # 'better'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

Z95 = 1.959964


@dataclass(frozen=True)
class Difference:
    points: float  # ours - baseline, in accuracy points
    low: float  # 95% interval, points
    high: float

    @property
    def verdict(self) -> str:
        return "better" if self.low > 0 else "worse" if self.high < 0 else "not distinguishable"

    def describe(self) -> str:
        return f"{self.points:+.2f} points (95% interval {self.low:+.2f} to {self.high:+.2f})"


def difference(ours: float, baseline: float, n_test: int) -> Difference:
    """Top-1 accuracies in [0, 1] on the same n_test images -> difference in points with its 95% interval."""
    if n_test < 1:
        raise ValueError(f"n_test must be >= 1, got {n_test}")
    d = 100 * (ours - baseline)
    half = 100 * Z95 * math.sqrt((ours * (1 - ours) + baseline * (1 - baseline)) / n_test)
    return Difference(d, d - half, d + half)


def pick_pair(metrics: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(ours, baseline) encoders: the last encoder against random init, or else the first other one."""
    encoders = metrics.get("encoders", [])
    if len(encoders) < 2:
        return None
    ours = encoders[-1]
    others = [e for e in encoders[:-1]]
    baseline = next((e for e in others if e["name"].startswith("random init")), others[0])
    return ours, baseline


def differences(metrics: dict[str, Any]) -> dict[str, Difference]:
    """Per protocol both encoders ran: ours - baseline."""
    pair = pick_pair(metrics)
    if pair is None:
        return {}
    ours, base = pair
    out = {}
    for p, r in ours.get("results", {}).items():
        b = base.get("results", {}).get(p)
        n = r.get("n_test") or (b or {}).get("n_test")
        if b is not None and r.get("top1") is not None and b.get("top1") is not None and n:
            out[p] = difference(float(r["top1"]), float(b["top1"]), int(n))
    return out


def verdict_line(metrics: dict[str, Any], titles: dict[str, str] | None = None) -> str:
    """'synthsight pretrained beats random init on k-NN (+1.20 points, ...), is not distinguishable on ...'."""
    pair = pick_pair(metrics)
    diffs = differences(metrics)
    if pair is None or not diffs:
        return ""
    words = {"better": "better than", "worse": "worse than", "not distinguishable": "not distinguishable from"}
    parts = [f"{(titles or {}).get(p, p)}: {words[d.verdict]} {pair[1]['name']}, {d.describe()}"
             for p, d in diffs.items()]
    return f"{pair[0]['name']}: " + "; ".join(parts) + "."
