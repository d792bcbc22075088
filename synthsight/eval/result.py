"""The one result type every evaluation protocol returns, with a sentence that spells the protocol out.

Example:
    >>> r = ProtocolResult("knn", 0.873, {"k": 20, "temperature": 0.07}, n_train=60000, n_test=10000)
    >>> r.describe()
    'k-NN, cosine similarity, k=20, weighted vote exp(s/0.07), 60000 train / 10000 test images: top-1 87.30%'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ProtocolResult:
    """Top-1 accuracy of one protocol on one train/test pair of frozen features.

    `top1` is a fraction in [0, 1] (describe() prints it as a percentage); `settings` holds every choice that
    changes the number (k, temperature, chosen weight decay, ...), JSON-serialisable.
    """

    protocol: str  # "knn" or "linear"; other names fall back to a generic description
    top1: float  # fraction of test images whose predicted class is the true class
    settings: dict[str, Any] = field(default_factory=dict)
    n_train: int = 0  # images the classifier was fitted on (k-NN: the memory bank)
    n_test: int = 0  # images the accuracy is measured on

    def describe(self) -> str:
        """One line a reader can reproduce the protocol from, ending with the accuracy."""
        s = self.settings
        if self.protocol == "knn":
            head = f"k-NN, cosine similarity, k={s['k']}, weighted vote exp(s/{s['temperature']:g})"
        elif self.protocol == "linear":
            if s.get("selection") == "validation":
                wd = (
                    f"L2 weight decay {s['weight_decay']:g} chosen from {_grid(s['grid'])} "
                    f"on a {s['val_fraction']:.0%} held-out validation split, then refit on all training images"
                )
            else:
                wd = f"L2 weight decay {s['weight_decay']:g} ({s.get('selection', 'fixed')})"
            head = (
                "linear probe, multinomial logistic regression on standardised frozen features, "
                f"{wd}, {s.get('solver', 'L-BFGS')} up to {s.get('max_iter', '?')} iterations"
            )
        else:
            head = ", ".join([self.protocol] + [f"{k}={v}" for k, v in s.items()])
        return f"{head}, {self.n_train} train / {self.n_test} test images: top-1 {100 * self.top1:.2f}%"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON reports), with the description included."""
        return {**asdict(self), "description": self.describe()}


def _grid(values: list[float]) -> str:
    return "{" + ", ".join(f"{v:g}" for v in values) + "}"
