"""The one result type every evaluation protocol returns, with a sentence that spells the protocol out.

Example:
    >>> r = ProtocolResult("knn", 0.873, {"k": 20, "temperature": 0.07}, n_train=60000, n_test=10000)
    >>> r.describe()
    'k-NN, cosine similarity, k=20, weighted vote exp(s/0.07), 60000 train / 10000 test images: top-1 87.30%'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch


@dataclass
class ProtocolResult:
    """Top-1 accuracy of one protocol on one train/test pair of frozen features, and its other numbers.

    `top1` is a fraction in [0, 1] (describe() prints it as a percentage); `settings` holds every choice that
    changes the number (k, temperature, chosen weight decay, ...), JSON-serialisable; `metrics` holds the
    protocol's further numbers (k-NN: top-1 at each k; k-means: NMI, ARI; few-shot: mean and std per shot).
    """

    protocol: str  # "knn", "linear", "kmeans", "fewshot", "finetune"; other names get a generic description
    top1: float  # fraction of test images whose predicted class is the true class (k-means: Hungarian-matched)
    settings: dict[str, Any] = field(default_factory=dict)
    n_train: int = 0  # labelled images the classifier used (k-NN: the memory bank; k-means: 0, it uses none)
    n_test: int = 0  # images the accuracy is measured on
    metrics: dict[str, float] = field(default_factory=dict)  # numbers beside top1, e.g. {"nmi": .., "ari": ..}
    per_class: list[float | None] | None = None  # top-1 on each class's test images (None: class has none)

    def describe(self) -> str:
        """One line a reader can reproduce the protocol from, ending with the accuracy."""
        s, m = self.settings, self.metrics
        sizes = f"{self.n_train} train / {self.n_test} test images"
        if self.protocol == "knn":
            head = f"k-NN, cosine similarity, k={s['k']}, weighted vote exp(s/{s['temperature']:g})"
            others = [(k, v) for k, v in m.items() if k.startswith("top1_k") and k != f"top1_k{s['k']}"]
            extra = "".join(f" (k={k[len('top1_k'):]}: {100 * v:.2f}%)" for k, v in others)
            return f"{head}, {sizes}: top-1 {100 * self.top1:.2f}%{extra}"
        if self.protocol == "linear":
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
            return f"{head}, {sizes}: top-1 {100 * self.top1:.2f}%"
        if self.protocol == "kmeans":
            return (
                f"k-means (scikit-learn, k={s['k']} = number of classes, {s['n_init']} seeded inits, seed "
                f"{s['seed']}) on L2-normalised {s['fit_on']} features, no labels used; {self.n_test} images: "
                f"NMI {m['nmi']:.3f}, ARI {m['ari']:.3f}, Hungarian-matched accuracy {100 * self.top1:.2f}%"
            )
        if self.protocol == "fewshot":
            shots = ", ".join(
                f"{n}-shot {100 * m[f'top1_{n}shot']:.2f} ± {100 * m[f'top1_{n}shot_std']:.2f}%" for n in s["shots"]
            )
            return (
                f"few-shot, nearest class mean by cosine similarity on features centred by the training mean, "
                f"{s['draws']} seeded draws of labelled training images per class (seed {s['seed']}), "
                f"{self.n_test} test images: {shots} (mean ± std over draws)"
            )
        if self.protocol == "finetune":
            return (
                f"full fine-tuning of backbone + "
                + ("BatchNorm (no affine) + linear head" if s.get("head") == "bn" else "linear head")
                + f", AdamW (lr {s['lr']:g}, weight decay "
                f"{s['weight_decay']:g}"
                + (f", layer-wise lr decay {s['layer_decay']:g}" if s.get("layer_decay", 1) != 1 else "")
                + f"), cosine schedule with {s['warmup_epochs']:g} warm-up epochs, "
                f"{s['epochs']} epochs x batch {s['batch_size']}, {s['augment']}, {sizes}: top-1 {100 * self.top1:.2f}%"
            )
        head = ", ".join([self.protocol] + [f"{k}={v}" for k, v in s.items()])
        return f"{head}, {sizes}: top-1 {100 * self.top1:.2f}%"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON reports), with the description included."""
        return {**asdict(self), "description": self.describe()}


def per_class_accuracy(pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> list[float | None]:
    """Top-1 on each class's images: predictions, labels int Tensor[N] -> one entry per class (None for a class
    without images: JSON has no NaN)."""
    y = y.cpu().long()
    correct = torch.bincount(y[pred.cpu().long() == y], minlength=num_classes).tolist()
    total = torch.bincount(y, minlength=num_classes).tolist()
    return [None if t == 0 else round(c / t, 6) for c, t in zip(correct, total)]


def _grid(values: list[float]) -> str:
    return "{" + ", ".join(f"{v:g}" for v in values) + "}"
