"""Numbers over seeds: mean with a 95% interval, and the gap closed G = (synthetic - random) / (real - random).

Example:
    >>> mean_ci([0.80, 0.82, 0.81])          # (0.81, 0.0248...): mean and half-width of the 95% t interval
    >>> gap_closed(0.80, 0.90, 0.70)         # 0.5: half of what pretraining on the real images gains
"""

from __future__ import annotations

import math


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
