"""Clustering of frozen features: k-means with k = number of classes, scored against the labels it never saw.

Features are L2-normalised (the cosine geometry k-NN uses too), clustered with scikit-learn's k-means (Lloyd,
k-means++ seeding, a few seeded restarts), and the clusters compared with the true classes by normalised mutual
information (NMI), adjusted Rand index (ARI) and accuracy after the best one-to-one matching of clusters to
classes (Hungarian algorithm, scipy's linear_sum_assignment), as in deep-clustering papers (e.g. Van Gansbeke et
al. 2020, SCAN). NMI and ARI are ~1 for a perfect clustering and ~0 for one unrelated to the classes.

Example:
    >>> result = kmeans_eval(test_feats, test_labels)
    >>> result.metrics["nmi"], result.metrics["ari"], result.top1      # top1: Hungarian-matched accuracy
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

from synthsight.eval.features import check_labeled_features
from synthsight.eval.result import ProtocolResult, per_class_accuracy


def hungarian_accuracy(clusters: torch.Tensor, labels: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Accuracy of the best one-to-one cluster -> class matching, and each item's matched class (int64 Tensor[N]).

    Clusters left unmatched (more clusters than classes) predict -1, which is never correct.
    """
    from scipy.optimize import linear_sum_assignment

    clusters, labels = clusters.cpu().long(), labels.cpu().long()
    n_clusters, n_classes = int(clusters.max()) + 1, int(labels.max()) + 1
    counts = torch.zeros(n_clusters, n_classes, dtype=torch.long)
    counts.index_put_((clusters, labels), torch.ones_like(labels), accumulate=True)
    rows, cols = linear_sum_assignment(counts.numpy(), maximize=True)
    mapping = torch.full((n_clusters,), -1, dtype=torch.long)
    mapping[torch.from_numpy(rows).long()] = torch.from_numpy(cols).long()
    matched = int(counts[torch.from_numpy(rows).long(), torch.from_numpy(cols).long()].sum())
    return matched / len(labels), mapping[clusters]


def kmeans_eval(
    x: torch.Tensor,
    y: torch.Tensor,
    n_clusters: int | None = None,
    n_init: int = 3,
    max_iter: int = 100,
    seed: int = 0,
    fit_on: str = "test",
) -> ProtocolResult:
    """Cluster features Tensor[N, D] with k-means and score against labels Tensor[N]; see the module docstring.

    `n_clusters` defaults to the number of distinct labels. Where the features have fewer distinct points than
    clusters (e.g. constant features), k-means finds fewer clusters: the scores are still defined (NMI = ARI = 0
    for a single cluster) and settings["clusters_found"] records it. `fit_on` only labels the description.
    """
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    num_classes = check_labeled_features(x, y, "features")
    k = n_clusters if n_clusters is not None else int(torch.unique(y).numel())
    if not 2 <= k <= len(x):
        raise ValueError(f"n_clusters must be in 2..{len(x)} (the number of images), got {k}")
    if n_init < 1 or max_iter < 1:
        raise ValueError(f"n_init and max_iter must be >= 1, got {n_init} and {max_iter}")
    points = F.normalize(x.detach().float().cpu(), dim=1).numpy()
    if np.ptp(points, axis=0).max() == 0:  # one distinct point: k-means is undefined, every item is one cluster
        clusters = np.zeros(len(points), dtype=np.int64)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # fewer distinct points than clusters: recorded
            km = KMeans(n_clusters=k, n_init=n_init, max_iter=max_iter, random_state=seed)
            clusters = km.fit_predict(points).astype(np.int64)
    truth = y.cpu().numpy()
    acc, matched = hungarian_accuracy(torch.from_numpy(clusters), y)
    metrics = {
        "nmi": float(normalized_mutual_info_score(truth, clusters)),
        "ari": float(adjusted_rand_score(truth, clusters)),
        "hungarian_acc": acc,
    }
    settings = {"k": k, "n_init": n_init, "max_iter": max_iter, "seed": seed, "fit_on": fit_on,
                "normalise": "L2", "clusters_found": int(len(np.unique(clusters)))}
    return ProtocolResult("kmeans", acc, settings, n_train=0, n_test=len(x), metrics=metrics,
                          per_class=per_class_accuracy(matched, y, num_classes))
