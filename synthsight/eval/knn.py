"""Weighted k-nearest-neighbour classification of frozen features (Wu et al. 2018, InstDisc; Caron et al. 2021, DINO).

Each test image takes the k training images with the highest cosine similarity s; each neighbour votes for
its class with weight exp(s / T). No parameters are fitted, so the number measures the feature geometry
directly. DINO's defaults: k=20, T=0.07; k=200 is the other common choice (InstDisc), and `knn_eval(...,
extra_ks=[200])` reports it from the same neighbour search.

Example:
    >>> result = knn_eval(train_feats, train_labels, test_feats, test_labels)
    >>> result.describe()
    'k-NN, cosine similarity, k=20, weighted vote exp(s/0.07), 60000 train / 10000 test images: top-1 ...'
"""

from __future__ import annotations

import warnings
from typing import Sequence

import torch
import torch.nn.functional as F

from synthsight.eval.features import check_probe_inputs
from synthsight.eval.result import ProtocolResult, per_class_accuracy


def knn_predict(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int = 256,
) -> torch.Tensor:
    """Predicted class of each test row: Tensor[N, D], Tensor[N], Tensor[M, D] -> int64 Tensor[M].

    Runs on the device of `train_x`; test rows are processed `chunk_size` at a time, so memory stays at
    about chunk_size x N floats (256 x 60000 x 4 B = 61 MB). `k` larger than N is clamped to N with a warning.
    Ties between classes go to the lowest class index. All-zero feature rows have similarity 0 to everything.
    """
    return knn_predict_many(train_x, train_y, test_x, [k], temperature, num_classes, chunk_size)[0]


def knn_predict_many(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    ks: Sequence[int] = (20, 200),
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int = 256,
) -> list[torch.Tensor]:
    """`knn_predict` for several k at the cost of the largest: one int64 Tensor[M] per entry of `ks`."""
    n_cls = check_probe_inputs(train_x, train_y, test_x)
    num_classes = max(num_classes or 0, n_cls)
    if not ks or min(ks) < 1:
        raise ValueError(f"k must be >= 1, got {list(ks)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    ks = [_effective_k(k, len(train_x)) for k in ks]

    device = train_x.device
    bank = F.normalize(train_x.float(), dim=1)
    bank_y = train_y.to(device=device, dtype=torch.long)
    preds: list[list[torch.Tensor]] = [[] for _ in ks]
    for start in range(0, len(test_x), chunk_size):
        q = F.normalize(test_x[start : start + chunk_size].to(device).float(), dim=1)
        sim, idx = (q @ bank.T).topk(max(ks), dim=1)  # [B, k] each, sorted: the first k are the k nearest
        # Subtracting each row's best similarity rescales that row's weights by one constant factor: the vote
        # is unchanged, but exp() cannot overflow however small T is.
        weights = ((sim - sim[:, :1]) / temperature).exp()
        for out, k in zip(preds, ks):
            votes = torch.zeros(len(q), num_classes, device=device)
            votes.scatter_add_(1, bank_y[idx[:, :k]], weights[:, :k])
            out.append(votes.argmax(dim=1))
    return [torch.cat(p).cpu() for p in preds]


def knn_eval(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 256,
    extra_ks: Sequence[int] = (),
) -> ProtocolResult:
    """Top-1 accuracy of `knn_predict` on (test_x, test_y); see the module docstring for the protocol.

    `extra_ks` are reported beside k in `metrics` ("top1_k200": ...) from the same neighbour search; top1 and
    per_class are those of k.
    """
    num_classes = check_probe_inputs(train_x, train_y, test_x, test_y)
    ks = list(dict.fromkeys([k] + [min(e, len(train_x)) for e in extra_ks]))  # only k itself warns if clamped
    preds = knn_predict_many(train_x, train_y, test_x, ks, temperature, num_classes, chunk_size)
    y = test_y.cpu()
    metrics = {}
    for requested, pred in zip(ks, preds):
        metrics.setdefault(f"top1_k{min(requested, len(train_x))}", (pred == y).float().mean().item())
    settings = {"k": _effective_k(k, len(train_x), warn=False), "temperature": temperature, "similarity": "cosine"}
    if settings["k"] != k:
        settings["k_requested"] = k
    return ProtocolResult("knn", metrics[f"top1_k{settings['k']}"], settings, n_train=len(train_x),
                          n_test=len(test_x), metrics=metrics, per_class=per_class_accuracy(preds[0], y, num_classes))


def _effective_k(k: int, n_train: int, warn: bool = True) -> int:
    if k > n_train and warn:
        warnings.warn(f"k={k} is larger than the {n_train} training images; using k={n_train}", stacklevel=3)
    return min(k, n_train)
