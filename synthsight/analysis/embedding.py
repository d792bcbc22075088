"""2-D maps of frozen features coloured by class: do the real classes form clusters the encoder never saw labels for?

t-SNE (van der Maaten & Hinton 2008, scikit-learn, seeded) on a stratified subsample, or UMAP (McInnes et al.
2018) when the optional `umap-learn` package is importable. Before embedding, features are L2-normalised (the
cosine geometry the k-NN probe uses) and reduced to 50 dimensions with PCA, the usual t-SNE preprocessing; 2,000
points take about 10-20 s on two CPU cores.

Example:
    >>> emb = embed_2d(test_feats, test_labels, n_points=2000, seed=0)
    >>> emb.points.shape, emb.method                                    # (2000, 2), 't-SNE'
    >>> plot_embeddings({"pretrained": emb}, classes, Path("eval/embedding.png"))
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from synthsight.analysis.figures import class_name, new_figure, save_png
from synthsight.eval.data import stratified_subset

METHODS = ("auto", "tsne", "umap")
MAX_LEGEND = 20  # more classes than this get colours but no legend (it would not fit)
PCA_DIMS = 50  # t-SNE's customary preprocessing: denoises and speeds up the neighbour search


@dataclass
class Embedding2D:
    points: np.ndarray  # float [n, 2]
    labels: np.ndarray  # int [n], the class of each point
    indices: np.ndarray  # int [n], the rows of the input features the points come from
    method: str  # "t-SNE" or "UMAP"
    seconds: float


def umap_available() -> bool:
    return importlib.util.find_spec("umap") is not None


def embed_2d(features: torch.Tensor, labels: torch.Tensor, n_points: int = 2000, seed: int = 0,
             method: str = "auto") -> Embedding2D:
    """Tensor[N, D] features and their int labels -> 2-D coordinates of a seeded, stratified subsample.

    method: "tsne", "umap" (needs `pip install umap-learn`), or "auto" (UMAP when installed, else t-SNE).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "umap" and not umap_available():
        raise ValueError("method='umap' needs the optional package umap-learn (pip install umap-learn); "
                         "or use method='tsne'")
    if features.ndim != 2 or labels.shape != (len(features),):
        raise ValueError(f"need features Tensor[N, D] and labels Tensor[N], got {tuple(features.shape)} and "
                         f"{tuple(labels.shape)}")
    if len(features) < 4:
        raise ValueError(f"a 2-D embedding needs at least 4 points, got {len(features)}")
    if not torch.isfinite(features).all():
        raise ValueError("features contain NaN or infinite values; cannot embed them")
    keep = stratified_subset(labels, n_points, seed) if n_points < len(labels) else torch.arange(len(labels))
    x = F.normalize(features[keep].float(), dim=1).numpy().astype(np.float64)
    t0 = time.perf_counter()
    x = _pca(x, PCA_DIMS)
    use_umap = method == "umap" or (method == "auto" and umap_available())
    points = _umap(x, seed) if use_umap else _tsne(x, seed)
    return Embedding2D(points.astype(np.float32), labels[keep].numpy(), keep.numpy(),
                       "UMAP" if use_umap else "t-SNE", time.perf_counter() - t0)


def _pca(x: np.ndarray, dims: int) -> np.ndarray:
    if x.shape[1] <= dims or len(x) <= dims:
        return x
    from sklearn.decomposition import PCA

    return PCA(n_components=dims, random_state=0).fit_transform(x)


def _tsne(x: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    perplexity = float(min(30.0, (len(x) - 1) / 3))  # must stay below the number of points
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed)
    # One OpenMP thread: Barnes-Hut t-SNE on 2,000 points needs ~7 s of CPU, but its OpenMP threads spin-wait, and
    # on a busy machine (PyTorch's threads, other processes) two of them took 10x longer than one in our trials.
    with threadpool_limits(limits=1, user_api="openmp"):
        return tsne.fit_transform(x)


def _umap(x: np.ndarray, seed: int) -> np.ndarray:
    import umap  # optional dependency

    return umap.UMAP(n_components=2, n_neighbors=min(15, len(x) - 1), random_state=seed).fit_transform(x)


def plot_embeddings(panels: dict[str, Embedding2D], classes: list[str] | None, path: Path,
                    title: str = "real test images, frozen features") -> Path:
    """One scatter panel per encoder, points coloured by class, one shared legend; writes a PNG."""
    if not panels:
        raise ValueError("plot_embeddings needs at least one embedding")
    fig, axes = new_figure(4.2 * len(panels) + 1.6, 4.4, 1, len(panels))
    present = sorted({int(c) for e in panels.values() for c in np.unique(e.labels)})
    cmap = _colours(len(present))
    for ax, (name, emb) in zip(axes[0], panels.items()):
        for i, c in enumerate(present):
            m = emb.labels == c
            ax.scatter(emb.points[m, 0], emb.points[m, 1], s=3, color=cmap[i], label=class_name(classes, c),
                       alpha=0.8, linewidths=0)
        ax.set_title(f"{name}\n{emb.method}, {len(emb.points)} points", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if len(present) <= MAX_LEGEND:
        handles, names = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, names, loc="center right", fontsize=7, markerscale=3, frameon=False)
    else:
        title += f" ({len(present)} classes, no legend)"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1 - 1.5 / fig.get_figwidth(), 1))
    return save_png(fig, path)


def _colours(n: int) -> list:
    import matplotlib

    name = "tab10" if n <= 10 else "tab20" if n <= 20 else "turbo"
    cmap = matplotlib.colormaps[name]
    return [cmap(i if n <= 20 else i / max(1, n - 1)) for i in range(n)]
