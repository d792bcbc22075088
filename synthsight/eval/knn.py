"""Weighted k-nearest-neighbour classification of frozen features (Wu et al. 2018, InstDisc; Caron et al. 2021, DINO).

Each test image takes the k training images with the highest cosine similarity s; each neighbour votes for
its class with weight exp(s / T). No parameters are fitted, so the number measures the feature geometry
directly. DINO's defaults: k=20, T=0.07.

Example:
    >>> result = knn_eval(train_feats, train_labels, test_feats, test_labels)
    >>> result.describe()
    'k-NN, cosine similarity, k=20, weighted vote exp(s/0.07), 60000 train / 10000 test images: top-1 ...'
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from synthsight.eval.features import check_probe_inputs
from synthsight.eval.result import ProtocolResult


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
    n_cls = check_probe_inputs(train_x, train_y, test_x)
    num_classes = max(num_classes or 0, n_cls)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    k = _effective_k(k, len(train_x))

    device = train_x.device
    bank = F.normalize(train_x.float(), dim=1)
    bank_y = train_y.to(device=device, dtype=torch.long)
    preds = []
    for start in range(0, len(test_x), chunk_size):
        q = F.normalize(test_x[start : start + chunk_size].to(device).float(), dim=1)
        sim, idx = (q @ bank.T).topk(k, dim=1)  # [B, k] each
        # Subtracting each row's best similarity rescales that row's weights by one constant factor: the vote
        # is unchanged, but exp() cannot overflow however small T is.
        weights = ((sim - sim[:, :1]) / temperature).exp()
        votes = torch.zeros(len(q), num_classes, device=device).scatter_add_(1, bank_y[idx], weights)
        preds.append(votes.argmax(dim=1))
    return torch.cat(preds).cpu()


def knn_eval(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 256,
) -> ProtocolResult:
    """Top-1 accuracy of `knn_predict` on (test_x, test_y); see the module docstring for the protocol."""
    num_classes = check_probe_inputs(train_x, train_y, test_x, test_y)
    pred = knn_predict(train_x, train_y, test_x, k, temperature, num_classes, chunk_size)
    top1 = (pred == test_y.cpu()).float().mean().item()
    settings = {"k": _effective_k(k, len(train_x), warn=False), "temperature": temperature, "similarity": "cosine"}
    if settings["k"] != k:
        settings["k_requested"] = k
    return ProtocolResult("knn", top1, settings, n_train=len(train_x), n_test=len(test_x))


def _effective_k(k: int, n_train: int, warn: bool = True) -> int:
    if k > n_train and warn:
        warnings.warn(f"k={k} is larger than the {n_train} training images; using k={n_train}", stacklevel=3)
    return min(k, n_train)
