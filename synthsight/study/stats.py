"""Numbers over seeds: mean with a 95% interval, and the gap closed G = (synthetic - random) / (real - random).

Example:
    >>> mean_ci([0.80, 0.82, 0.81])          # (0.81, 0.0248...): mean and half-width of the 95% t interval
    >>> gap_closed(0.80, 0.90, 0.70)         # 0.5: half of what pretraining on the real images gains
    >>> paired_difference({0: 0.86, 1: 0.85}, {0: 0.85, 1: 0.83})["mean"]  # 0.015: seed by seed, then the mean
"""

from __future__ import annotations

import math
from typing import Any


def mean_ci(values: list[float], level: float = 0.95) -> tuple[float, float | None]:
    """(mean, half-width of the Student-t interval at `level`) over seeds; the half-width is None for one value."""
    if not values:
        raise ValueError("mean_ci needs at least one value")
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    from scipy.stats import t

    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)


def gap_closed(synthetic: float, real: float, random: float, min_gap: float = 0.005) -> float | None:
    """G = (synthetic - random) / (real - random); None when real pretraining did not beat random init by more
    than `min_gap` (default half a point, about the standard error of an accuracy on 10,000 test images: below
    it the ratio is noise). 0 = no better than random init, 1 = as good as pretraining on the real images."""
    if real - random <= min_gap:
        return None
    return (synthetic - random) / (real - random)


def paired_difference(runs: dict[int, float], against: dict[int, float],
                      level: float = 0.95) -> dict[str, Any] | None:
    """`runs` minus `against` seed by seed over the seeds both have (seed -> top-1): the mean difference, the
    half-width of its Student-t interval (None for one seed), the per-seed differences, how many seeds are above and
    below zero, and a verdict: "above" / "below" where the interval excludes zero, "unresolved" where it does not,
    "one seed" where there is nothing to pair it with. Runs of one seed share the seed's draws, so pairing removes
    the spread between seeds that the two means' intervals both carry. None when no seed is shared."""
    seeds = sorted(k for k in runs if k in against)
    if not seeds:
        return None
    diffs = [runs[k] - against[k] for k in seeds]
    mean, ci = mean_ci(diffs, level)
    if ci is None:
        verdict = "one seed"
    else:
        verdict = "above" if mean - ci > 0 else "below" if mean + ci < 0 else "unresolved"
    return {"n_seeds": len(seeds), "mean": mean, "ci95": ci, "per_seed": dict(zip(seeds, diffs)),
            "above": sum(d > 0 for d in diffs), "below": sum(d < 0 for d in diffs), "verdict": verdict}
