"""Few-shot classification with frozen features: 1, 5 and 10 labelled training images per class.

Classifier: nearest class mean in cosine space (SimpleShot, Wang et al. 2019, "CL2N"): every feature is centred
by the mean of all training features (no labels used) and L2-normalised; each class's prototype is the mean of
its n support images; a test image takes the class of the most cosine-similar prototype. Chosen over logistic
regression because it has no hyper-parameter to tune on 1-10 images and takes milliseconds. Each of `draws`
seeded draws picks the support images per class; the n-shot sets are nested within a draw (the 1-shot image is
among the 5-shot ones), so differences between shot counts are not draw noise. Reported: mean and standard
deviation (over draws, ddof=1) of top-1 on the whole test set.

Example:
    >>> result = fewshot_eval(train_feats, train_labels, test_feats, test_labels, shots=(1, 5, 10), draws=5)
    >>> result.metrics["top1_5shot"], result.metrics["top1_5shot_std"]
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from synthsight.eval.features import check_probe_inputs
from synthsight.eval.result import ProtocolResult, per_class_accuracy

DEFAULT_SHOTS = (1, 5, 10)


def support_indices(y: torch.Tensor, shots: int, seed: int) -> torch.Tensor:
    """`shots` seeded indices of each class present in `y`; for one seed, a larger `shots` extends a smaller."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(y), generator=g)  # one permutation: each class's first n are nested in n
    return torch.cat([order[y[order] == c][:shots] for c in torch.unique(y)])


def nearest_mean_predict(support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor) -> torch.Tensor:
    """Class of the most cosine-similar class mean, for already centred features: int64 Tensor[M]."""
    classes = torch.unique(support_y)
    sx = F.normalize(support_x, dim=1)
    protos = torch.stack([sx[support_y == c].mean(dim=0) for c in classes])
    sim = F.normalize(query_x, dim=1) @ F.normalize(protos, dim=1).T
    return classes[sim.argmax(dim=1)]


def fewshot_eval(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    shots: Sequence[int] = DEFAULT_SHOTS,
    draws: int = 5,
    seed: int = 0,
) -> ProtocolResult:
    """Mean ± std top-1 of nearest-class-mean classifiers on n labelled images per class, for each n in `shots`.

    top1 and per_class are those of the largest shot count. Shot counts larger than the smallest class's
    number of training images are skipped (settings["skipped_shots"]); if all are, a ValueError says so.
    """
    num_classes = check_probe_inputs(train_x, train_y, test_x, test_y)
    if not shots or min(shots) < 1:
        raise ValueError(f"shots must be a non-empty list of counts >= 1, got {list(shots)}")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    train_y, test_y = train_y.cpu().long(), test_y.cpu().long()
    smallest = int(torch.bincount(train_y)[torch.unique(train_y)].min())
    wanted = sorted(set(int(n) for n in shots))
    kept = [n for n in wanted if n <= smallest]
    if not kept:
        raise ValueError(
            f"every shot count {wanted} exceeds the smallest class's {smallest} training image(s); "
            "use fewer shots or more training images (--limit)"
        )
    mean = train_x.float().mean(dim=0)
    train_c, test_c = train_x.float().cpu() - mean.cpu(), test_x.float().cpu() - mean.cpu()
    metrics: dict[str, float] = {}
    last_preds: list[torch.Tensor] = []
    for n in kept:
        accs, preds = [], []
        for d in range(draws):
            idx = support_indices(train_y, n, seed * 1000 + d)
            pred = nearest_mean_predict(train_c[idx], train_y[idx], test_c)
            accs.append((pred == test_y).double().mean())
            preds.append(pred)
        accs_t = torch.stack(accs)
        metrics[f"top1_{n}shot"] = float(accs_t.mean())
        metrics[f"top1_{n}shot_std"] = float(accs_t.std()) if draws > 1 else 0.0
        last_preds = preds
    per_draw = [per_class_accuracy(p, test_y, num_classes) for p in last_preds]
    per_class = [None if v[0] is None else round(sum(v) / len(v), 6) for v in zip(*per_draw)]
    settings = {"shots": kept, "draws": draws, "seed": seed, "classifier": "nearest class mean, cosine",
                "centring": "mean of all training features"}
    if len(kept) < len(wanted):
        settings["skipped_shots"] = [n for n in wanted if n not in kept]
    return ProtocolResult("fewshot", metrics[f"top1_{kept[-1]}shot"], settings, n_train=kept[-1] * len(
        torch.unique(train_y)), n_test=len(test_x), metrics=metrics, per_class=per_class)
