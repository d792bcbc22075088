"""Nearest-neighbour retrieval on frozen features: what does the encoder consider similar?

A few real test images (one per class, seeded) query the training images by cosine similarity, the geometry
the k-NN probe votes with. The grid shows each query and its nearest neighbours, each neighbour framed green when
its label matches the query's and red when it does not.

Example:
    >>> q = pick_queries(test_labels, seed=0)
    >>> ret = retrieve(train_feats, train_labels, test_feats[q], test_labels[q], k=8)
    >>> plot_retrieval(ret, test_images[q], train_images, classes, Path("eval/retrieval.png"))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from synthsight.analysis.figures import (MATCH_COLOUR, MISMATCH_COLOUR, class_name, displayable, mosaic_figure,
                                         save_png)


@dataclass
class Retrieval:
    query_labels: torch.Tensor  # int64 Tensor[Q]
    neighbours: torch.Tensor  # int64 Tensor[Q, k]: rows of the bank, most similar first
    similarity: torch.Tensor  # float Tensor[Q, k]: cosine similarity
    neighbour_labels: torch.Tensor  # int64 Tensor[Q, k]

    @property
    def match(self) -> torch.Tensor:
        return self.neighbour_labels == self.query_labels.unsqueeze(1)

    @property
    def precision(self) -> float:
        """Fraction of retrieved neighbours whose class is the query's (precision@k averaged over queries)."""
        return float(self.match.float().mean()) if self.match.numel() else 0.0


def pick_queries(labels: torch.Tensor, per_class: int = 1, seed: int = 0, max_classes: int = 10) -> torch.Tensor:
    """Seeded indices: `per_class` images of each of the first `max_classes` classes present, in class order."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for c in torch.unique(labels)[:max_classes].tolist():
        idx = torch.nonzero(labels == c).flatten()
        out.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def retrieve(bank_x: torch.Tensor, bank_y: torch.Tensor, query_x: torch.Tensor, query_y: torch.Tensor, k: int = 8,
             exclude: torch.Tensor | None = None) -> Retrieval:
    """The k most cosine-similar bank rows of each query row.

    `exclude`: optional int64 Tensor[Q], a bank row per query to leave out (the query itself, when queries are
    drawn from the bank).
    """
    if bank_x.ndim != 2 or query_x.ndim != 2 or bank_x.shape[1] != query_x.shape[1]:
        raise ValueError(f"need bank Tensor[N, D] and queries Tensor[Q, D], got {tuple(bank_x.shape)} and "
                         f"{tuple(query_x.shape)}")
    if len(bank_y) != len(bank_x) or len(query_y) != len(query_x):
        raise ValueError("need one label per bank row and per query row")
    k = min(k, len(bank_x) - (1 if exclude is not None else 0))
    if k < 1:
        raise ValueError("the bank holds no image to retrieve")
    sim = F.normalize(query_x.float(), dim=1) @ F.normalize(bank_x.float(), dim=1).T
    if exclude is not None:
        sim[torch.arange(len(query_x)), exclude] = float("-inf")
    top, idx = sim.topk(k, dim=1)
    return Retrieval(query_y.long(), idx, top, bank_y[idx].long())


def plot_retrieval(ret: Retrieval, query_images: torch.Tensor, bank_images: torch.Tensor, classes: list[str] | None,
                   path: Path, title: str = "nearest training images by cosine similarity") -> Path:
    """Row per query: the query, then its neighbours framed green (same class) or red (other class)."""
    q, k = ret.neighbours.shape
    if len(query_images) != q:
        raise ValueError(f"need one image per query, got {len(query_images)} images for {q} queries")
    tiles, titles, borders = [], [], []
    for row in range(q):
        tiles.append(query_images[row : row + 1])
        titles.append(f"query: {class_name(classes, int(ret.query_labels[row]))}")
        borders.append(None)
        tiles.append(bank_images[ret.neighbours[row]])
        titles += [f"{float(s):.3f}" for s in ret.similarity[row]]
        borders += [MATCH_COLOUR if ok else MISMATCH_COLOUR for ok in ret.match[row].tolist()]
    heading = f"{title}\ngreen frame = same class, red = other; precision@{k} {100 * ret.precision:.0f}%"
    fig = mosaic_figure(displayable(torch.cat(tiles)), k + 1, heading, titles=titles, borders=borders)
    return save_png(fig, path)
