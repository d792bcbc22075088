"""Target matching (`data.match=DATA_SPEC`): weigh the generator families so the stream's image statistics match the
user's unlabelled target images.

Only summary numbers of the target are used (never its pixels in training): on `n` seeded target images at 64 px,

    slope       mean power-spectrum slope of the grey image (natural photographs ~2; reference_stats.py)
    contrast    mean per-image pixel std (reference_stats.py `std`)
    chroma      mean std across R, G, B per pixel (0 for grey images)
    grey        share of images whose chroma is below GREY_CHROMA (Fashion-MNIST: 1)
    background  share of pixels within BACKGROUND_TOLERANCE of the median of the image's border (plain backgrounds)
    mean        mean pixel value

Each candidate family's images are measured the same way. The weights w >= 0, sum 1, minimise
||F w - t||^2 / scale^2 + RIDGE ||w||^2 (F: the families' figures, t: the target's, each figure divided by its
SCALE; the ridge spreads weight over several families, as diversity helps transfer), solved by SLSQP; weights
below MIN_WEIGHT are dropped. The mixture's figures are taken as the weighted mean of the families' (exact for
means over images). One option follows too: views.grayscale_p is raised to the target's grey share, so a grey
target is met by grey views. `pretrain_run` applies the match before training and writes match.json and the
`match` entry of provenance.json with every number used.

Example:
    >>> record = match_families("fashion-mnist", ["dead_leaves/mixed", "spectrum/gray", "contours/rcdb"])
    >>> record.weights            # {'spectrum/gray': 0.4, 'contours/rcdb': 0.6} (for instance)
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from synthsight.analysis.reference_stats import reference_statistics

FIGURES = ("slope", "contrast", "chroma", "grey", "background", "mean")
SCALE = {"slope": 1.0, "contrast": 0.1, "chroma": 0.1, "grey": 0.5, "background": 0.25, "mean": 0.25}
GREY_CHROMA = 0.02  # an image with mean per-pixel RGB std below this counts as grey
BACKGROUND_TOLERANCE = 0.06  # a pixel this close to its image's border median counts as background
RIDGE = 0.05  # weight of sum(w^2): spreads weight over families whose figures fit about equally
MIN_WEIGHT = 0.05  # smaller weights are dropped and the rest renormalised
SIZE = 64  # side at which target and families are measured
# Candidate families when data.match_families is empty: fast on a CPU, covering colour and grey, textures,
# shapes, contours and fractals (families are measured, so a changed family is measured as it now is).
DEFAULT_CANDIDATES = ("dead_leaves/mixed", "dead_leaves/textured", "spectrum/color", "spectrum/gray",
                      "statistical/spectrum_color_wmm", "stylegan_random/oriented", "fractal_ifs/svd",
                      "contours/rcdb", "programs")


@dataclass
class MatchRecord:
    """What matching measured and chose; written to match.json and provenance.json."""

    target: str
    n_images: int
    target_figures: dict[str, float]
    family_figures: dict[str, dict[str, float]]
    weights: dict[str, float]  # the chosen families and weights (sum 1)
    mixture_figures: dict[str, float]
    options: dict[str, Any] = field(default_factory=dict)  # config keys set besides the families
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def image_figures(images: torch.Tensor) -> dict[str, float]:
    """The six figures of a set of images (Tensor[B >= 2, 3, S, S] in [0, 1])."""
    x = images.float().clamp(0, 1)
    ref = reference_statistics(x)
    chroma_per_image = x.std(dim=1, unbiased=False).mean(dim=(1, 2))
    grey = x.mean(dim=1)  # [B, S, S]
    border = torch.cat([grey[:, 0], grey[:, -1], grey[:, :, 0], grey[:, :, -1]], dim=1)  # [B, 4S]
    background = (grey - border.median(dim=1).values[:, None, None]).abs() < BACKGROUND_TOLERANCE
    return {"slope": ref.slope, "contrast": ref.std, "chroma": ref.chroma,
            "grey": float((chroma_per_image < GREY_CHROMA).float().mean()),
            "background": float(background.float().mean()), "mean": ref.mean}


@functools.lru_cache(maxsize=8)
def target_figures(spec: str, n: int = 256, seed: int = 0) -> dict[str, float]:
    """Figures of `n` seeded (stratified) training images of an eval data spec; labels unused."""
    from synthsight.eval.data import load_dataset

    data = load_dataset(spec, "train", size=SIZE, limit=n, seed=seed)
    return image_figures(data.images.float() / 255.0)


@functools.lru_cache(maxsize=64)
def family_figures(name: str, n: int = 64, seed: int = 0) -> dict[str, float]:
    """Figures of a family's first `n` images at seed `seed` (cached per process)."""
    from synthsight.config import split_family
    from synthsight.generators import create_generator

    family, variant = split_family(name)
    return image_figures(create_generator(family, variant, SIZE).generate(range(n), seed))


def solve_weights(families: np.ndarray, target: np.ndarray, ridge: float = RIDGE) -> np.ndarray:
    """w >= 0, sum 1, minimising ||families.T w - target||^2 + ridge ||w||^2; families: [K, F] scaled figures."""
    from scipy.optimize import minimize

    k = families.shape[0]

    def loss(w: np.ndarray) -> float:
        r = families.T @ w - target
        return float(r @ r + ridge * w @ w)

    def grad(w: np.ndarray) -> np.ndarray:
        return 2 * families @ (families.T @ w - target) + 2 * ridge * w

    res = minimize(loss, np.full(k, 1.0 / k), jac=grad, method="SLSQP", bounds=[(0.0, 1.0)] * k,
                   constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1, "jac": lambda w: np.ones_like(w)}],
                   options={"ftol": 1e-10, "maxiter": 200})
    w = np.clip(res.x, 0, None)
    return w / w.sum()


def match_families(target: str, candidates: list[str] | tuple[str, ...] = DEFAULT_CANDIDATES, n: int = 256,
                   family_n: int = 64, seed: int = 0, grayscale_p: float = 0.2) -> MatchRecord:
    """Measure the target and the candidates, choose the weights (see the module doc); `grayscale_p` is the
    config's own, raised to the target's grey share."""
    if not candidates:
        raise ValueError("data.match needs candidate families: leave data.match_families empty for the defaults "
                         f"({', '.join(DEFAULT_CANDIDATES)}) or list some")
    t0 = time.perf_counter()
    tgt = target_figures(target, n, seed)
    fams = {c: family_figures(c, family_n, seed) for c in candidates}
    scale = np.array([SCALE[f] for f in FIGURES])
    matrix = np.array([[fams[c][f] for f in FIGURES] for c in candidates]) / scale
    w = solve_weights(matrix, np.array([tgt[f] for f in FIGURES]) / scale)
    keep = w >= MIN_WEIGHT
    w = np.where(keep, w, 0.0)
    w = w / w.sum()
    weights = {c: round(float(x), 4) for c, x in zip(candidates, w) if x > 0}
    mixture = {f: round(float(sum(weights[c] * fams[c][f] for c in weights)), 4) for f in FIGURES}
    options = {"views.grayscale_p": round(max(grayscale_p, tgt["grey"]), 4)}
    return MatchRecord(target, n, {k: round(v, 4) for k, v in tgt.items()},
                       {c: {k: round(v, 4) for k, v in f.items()} for c, f in fams.items()}, weights, mixture,
                       options, round(time.perf_counter() - t0, 2))


def matched_config(cfg, record: dict[str, Any]):
    """The config with a match record's families, weights and options applied."""
    from synthsight.config import apply_overrides, config_from_dict

    values = apply_overrides(cfg.to_dict(), [f"{k}={v}" for k, v in record["options"].items()])
    values["data"] = {**values["data"], "families": list(record["weights"]),
                      "weights": list(record["weights"].values())}
    return config_from_dict(values)


def apply_match(cfg):
    """(config with data.families / data.weights / views.grayscale_p set by matching cfg.data.match, the record);
    the config unchanged and None when data.match is unset."""
    if not cfg.data.match:
        return cfg, None
    # seed 0, not data.seed: the match is part of the recipe, the same for every seed of a study
    record = match_families(cfg.data.match, cfg.data.match_families or DEFAULT_CANDIDATES,
                            grayscale_p=cfg.views.grayscale_p)
    return matched_config(cfg, record.to_dict()), record


def same_match(cfg, record: dict[str, Any] | None) -> bool:
    """Whether a match.json record was made for this config's target and candidates (reused on resume)."""
    return bool(record) and record.get("target") == cfg.data.match and (
        list(record.get("family_figures", {})) == list(cfg.data.match_families or DEFAULT_CANDIDATES))
