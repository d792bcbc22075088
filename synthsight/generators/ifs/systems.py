"""Random iterated function systems: how each fractal_ifs variant draws its categories and their instances.

- svd (Anderson & Farrell, WACV 2022): each map is R(theta) diag(s1, s2) R(phi) F (rotations, a random reflection
  F), 0 <= s2 <= s1 <= 1, with sigma = sum over maps of (s1 + 2 s2) ~ U((5+n)/2, (6+n)/2) for n in 2..4 maps:
  always contractive, no search. An instance scales one map (all six numbers) by U(0.8, 1.1), as their generator
  does, redrawn up to 4 times while a singular value would exceed 1, else the category's system.
- fractaldb (Kataoka et al., ACCV 2020): 2..7 maps with a..f ~ U(-1, 1), map probability proportional to |det|;
  a category is the first random system whose attractor fills >= 20% of a coarse 64 x 64 grid (4,096 chaos-game
  points fitted by their min/max box, as FractalDB fits its points) in two independent runs. Systems that are not
  contractive on average (sum_j p_j log sigma_max(A_j) >= 0, ~75% of them) or whose total area ratio
  sum_j |det A_j| is below 0.7 (none of those passed in our trials) are dropped before rendering; ~5% of all random
  systems pass (FractalDB: ~4.5%). Candidates are drawn 32 per category per round, and those of all the new
  categories of a batch rendered in one vectorised chaos game (~1 ms per category on one core, once per process).
  An instance is one of FractalDB's 25 weight rows ("weights 0.4"): the system itself, or one parameter (a..f)
  of every map times 0.2, 0.6, 1.4 or 1.8 -- the map probabilities stay the category's, as in FractalDB; an
  instance that is no longer contractive on average renders the category's system instead.
- 1p_frac (Nakamura et al., ECCV 2024): ONE system (the first svd system with 4 maps that passes the filling check,
  from `category_seed`); category c is that system with every parameter times U(1 - D, 1 + D), D = 0.1.

A category's system is a pure function of (variant, `category_seed`, label), computed once per process and cached.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import torch

from synthsight.generators.base import image_rng
from synthsight.generators.ifs.points import BANK, chaos_game, fit_boxes, hit_counts

MAX_MAPS = 7  # params["maps"] is padded to this many rows
SCALE_FACTORS = (0.2, 0.6, 1.4, 1.8)  # FractalDB's weights_0.4: one parameter of every map times one of these
WEIGHT_ROWS = 1 + 6 * len(SCALE_FACTORS)  # the system itself + (parameter, factor) pairs: 25
JITTER_RANGE = (0.8, 1.1)  # Anderson & Farrell's instance jitter: one map times U(0.8, 1.1)
JITTER_TRIES = 4  # ... redrawn this many times while a singular value exceeds 1
_SEARCH_GRID, _SEARCH_CHAINS, _SEARCH_BURN, _SEARCH_STEPS, _SEARCH_BATCH = 64, 64, 8, 72, 32
_SEARCH_MARGIN = 0.04  # free border of the filling check's grid
_MIN_AREA = 0.7  # fractaldb pre-screen on sum_j |det A_j|
_MAX_ROUNDS = 10_000


def map_probabilities(maps: torch.Tensor, n_maps: int) -> torch.Tensor:
    """p_j proportional to |det A_j| for the first n_maps rows of maps [..., N, 6]; zero for the padding."""
    det = (maps[..., 0] * maps[..., 3] - maps[..., 1] * maps[..., 2]).abs()
    det[..., n_maps:] = 0.0
    return det / det.sum(-1, keepdim=True).clamp_min(1e-30)


def contraction_bound(maps: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """sum_j p_j log sigma_max(A_j) for systems maps [..., N, 6]: negative means contractive on average, so the
    chaos game converges (Barnsley-Elton). Maps with p_j = 0 do not count."""
    a, b, c, d = maps[..., 0], maps[..., 1], maps[..., 2], maps[..., 3]
    frob = a * a + b * b + c * c + d * d
    det = a * d - b * c
    smax = torch.sqrt(0.5 * (frob + torch.sqrt((frob * frob - 4.0 * det * det).clamp_min(0.0)))).clamp_min(1e-30)
    return (probs * torch.log(smax)).sum(-1)


def _smax(a: float, b: float, c: float, d: float) -> float:
    """Largest singular value of [[a, b], [c, d]] (plain Python)."""
    frob, det = a * a + b * b + c * c + d * d, a * d - b * c
    return math.sqrt(0.5 * (frob + math.sqrt(max(frob * frob - 4.0 * det * det, 0.0))))


def contraction_bound_rows(rows: list[list[float]], probs: list[float]) -> float:
    """contraction_bound of one system given as n lists (a, b, c, d, e, f) and its map probabilities."""
    if not sum(probs) > 0:
        return math.inf
    return sum(p * math.log(max(_smax(*r[:4]), 1e-30)) for r, p in zip(rows, probs) if p > 0)


def svd_system(rng: torch.Generator, n: int) -> torch.Tensor:
    """n maps [n, 6] after Anderson & Farrell: singular values with sum_j (s1 + 2 s2) ~ U((5+n)/2, (6+n)/2).

    The budget b_j = s1 + 2 s2 <= 3 of each map is drawn in turn, uniform within what keeps the rest feasible;
    then s1 ~ U(b/3, min(1, b)) and s2 = (b - s1) / 2, which gives 0 <= s2 <= s1 <= 1.
    """
    u = torch.rand(8 * n + 1, generator=rng, dtype=torch.float64).tolist()
    remaining = (5 + n) / 2 + 0.5 * u[0]
    maps = []
    for j in range(n):
        v = u[1 + 8 * j : 9 + 8 * j]
        left = n - 1 - j
        lo, hi = max(0.0, remaining - 3.0 * left), min(3.0, remaining)
        budget = remaining if left == 0 else lo + (hi - lo) * v[0]
        remaining -= budget
        s1 = budget / 3.0 + (min(1.0, budget) - budget / 3.0) * v[1]
        s2 = (budget - s1) / 2.0
        t1, t2 = 2.0 * math.pi * v[2], 2.0 * math.pi * v[3]
        flip = 1.0 if v[4] < 0.5 else -1.0
        c1, n1, c2, n2 = math.cos(t1), math.sin(t1), math.cos(t2), math.sin(t2)
        # R(t1) diag(s1, s2) R(t2) diag(1, flip)
        m00, m01 = s1 * c1 * c2 - s2 * n1 * n2, -(s1 * c1 * n2 + s2 * n1 * c2)
        m10, m11 = s1 * n1 * c2 + s2 * c1 * n2, s2 * c1 * c2 - s1 * n1 * n2
        maps.append([m00, m01 * flip, m10, m11 * flip, 2.0 * v[5] - 1.0, 2.0 * v[6] - 1.0])
    return torch.tensor(maps, dtype=torch.float32)


def padded(maps: torch.Tensor) -> torch.Tensor:
    """maps [n, 6] as [MAX_MAPS, 6], zero rows past n."""
    out = torch.zeros(MAX_MAPS, 6)
    out[: maps.shape[0]] = maps
    return out


# ---------------------------------------------------------------------------------------------- instances
def anderson_jitter(rows: list[list[float]], u: Sequence[float]) -> list[list[float]]:
    """Anderson & Farrell's instance of the system `rows` (n lists a..f): map floor(u[2t] n) times U(0.8, 1.1)
    (u[2t + 1]) for the first try t < JITTER_TRIES whose maps all keep singular values <= 1; else `rows`."""
    n = len(rows)
    lo, hi = JITTER_RANGE
    for t in range(JITTER_TRIES):
        j, factor = min(int(u[2 * t] * n), n - 1), lo + (hi - lo) * u[2 * t + 1]
        out = [list(r) for r in rows]
        out[j] = [x * factor for x in out[j]]
        if _smax(*out[j][:4]) <= 1.0:
            return out
    return rows


def fractaldb_instance(rows: list[list[float]], probs: list[float], weight_row: int) -> list[list[float]]:
    """FractalDB's instance `weight_row` (0..24) of the system `rows`: 0 is the system itself, 1 + 4 k + i scales
    parameter k (a..f) of every map by SCALE_FACTORS[i]. An instance that is not contractive on average (under the
    category's probabilities `probs`) would diverge: the system itself is returned instead."""
    if weight_row == 0:
        return rows
    k, factor = divmod(weight_row - 1, len(SCALE_FACTORS))
    out = [[x * SCALE_FACTORS[factor] if i == k else x for i, x in enumerate(r)] for r in rows]
    return out if contraction_bound_rows(out, probs) < 0 else rows


# ---------------------------------------------------------------------------------------------- categories
@lru_cache(maxsize=None)
def svd_category(category_seed: int, label: int) -> torch.Tensor:
    """The svd system [n, 6] of category `label`."""
    rng = image_rng(category_seed, label, "fractal_ifs/svd/category")
    n = 2 + int(torch.randint(3, (1,), generator=rng))
    return svd_system(rng, n)


_FRACTALDB: dict[tuple[int, float, int], torch.Tensor] = {}


def _draw_candidates(rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """_SEARCH_BATCH random systems from `rng`: n_maps [C] ~ U{2..7}, maps [C, 7, 6] with a..f ~ U(-1, 1) (rows past
    n_maps zeroed later), chain shuffles [C, 2, steps] uint8 (two independent runs of the filling check)."""
    n = torch.randint(2, MAX_MAPS + 1, (_SEARCH_BATCH,), generator=rng)
    maps = torch.rand(_SEARCH_BATCH, MAX_MAPS, 6, generator=rng) * 2.0 - 1.0
    choices = torch.randint(0, BANK, (_SEARCH_BATCH, 2, _SEARCH_STEPS), generator=rng, dtype=torch.uint8)
    return n, maps, choices


def fractaldb_categories(labels: Sequence[int], category_seed: int, threshold: float) -> list[torch.Tensor]:
    """The systems [n, 6] of FractalDB categories `labels`, searching all missing ones at once.

    Category c draws rounds of candidates from its own generator (`_draw_candidates`). Candidates that are not
    contractive on average or whose maps' total area ratio is below 0.7 are dropped unrendered; the others, of all
    missing categories, are rendered together, in chunks, and a category is its first candidate whose attractor
    fills >= threshold of the coarse grid in two independent runs (the min/max box makes one run's fill depend on
    its few most extreme points; two runs keep out most systems that pass by luck). So a category does not depend
    on which others are searched with it.
    """
    missing = sorted({int(c) for c in labels if (category_seed, threshold, int(c)) not in _FRACTALDB})
    rngs = {c: image_rng(category_seed, c, "fractal_ifs/fractaldb/category") for c in missing}
    for _ in range(_MAX_ROUNDS):
        if not missing:
            break
        drawn = [_draw_candidates(rngs[c]) for c in missing]
        n, maps, choices = (torch.cat([d[k] for d in drawn]) for k in range(3))
        owner = torch.tensor(missing).repeat_interleave(_SEARCH_BATCH)
        maps *= (torch.arange(MAX_MAPS).view(1, -1) < n.view(-1, 1)).unsqueeze(-1)
        det = (maps[..., 0] * maps[..., 3] - maps[..., 1] * maps[..., 2]).abs()
        probs = det / det.sum(1, keepdim=True)
        # unrendered pre-screens: contractive on average, and total area ratio sum_j |det A_j| >= 0.7 (a thinner
        # attractor never filled 20% in our trials; below 1 the attractor has zero area)
        passed = ((contraction_bound(maps, probs) < 0) & (det.sum(1) >= _MIN_AREA)).nonzero().flatten()
        for run in range(2):  # the second run only for the candidates that passed the first
            fill = torch.cat([fill_ratio(maps[i], probs[i], n[i], choices[i, run])
                              for i in passed.split(256)] or [torch.zeros(0)])
            passed = passed[fill >= threshold]
        for i in passed.tolist():
            key = (category_seed, threshold, int(owner[i]))
            if key not in _FRACTALDB:  # candidates are in each category's drawing order: the first one wins
                _FRACTALDB[key] = maps[i, : int(n[i])].clone()
        missing = [c for c in missing if (category_seed, threshold, c) not in _FRACTALDB]
    if missing:
        raise RuntimeError(f"fractaldb: no system fills {threshold:.0%} of the grid for categories {missing[:5]}")
    return [_FRACTALDB[category_seed, threshold, int(c)] for c in labels]


def fill_ratio(maps: torch.Tensor, probs: torch.Tensor, n_maps: torch.Tensor, choices: torch.Tensor,
               grid: int = _SEARCH_GRID) -> torch.Tensor:
    """Fraction of a grid x grid canvas that the attractor of each system covers, Tensor[B] (FractalDB's filter).

    `choices` [B, T] gives the chain shuffles: 64 chains, the first 8 steps dropped, so 64 x 64 points at the
    default 72 steps. The box is the points' min/max, as in FractalDB: a heavy-tailed system squeezes its bulk into
    a few cells and fails.
    """
    if maps.shape[0] == 0:
        return torch.zeros(0)
    xs, ys = chaos_game(maps, probs, n_maps, choices, _SEARCH_CHAINS, _SEARCH_BURN)
    lit = []
    for first in range(0, maps.shape[0], 32):  # ~128k points at a time: the counts stay in the cache
        x, y = xs[:, first : first + 32], ys[:, first : first + 32]
        counts = hit_counts(x, y, fit_boxes(x, y), torch.ones(x.shape[1], 2), grid, _SEARCH_MARGIN, guard=True)
        lit.append((counts > 0).flatten(1).sum(1))
    return torch.cat(lit).float() / (grid * grid)


@lru_cache(maxsize=None)
def one_p_base(category_seed: int, threshold: float) -> torch.Tensor:
    """The single system of 1p_frac: the first svd system (4 maps) whose attractor passes the filling check (in
    two runs, as the fractaldb categories)."""
    rng = image_rng(category_seed, 0, "fractal_ifs/1p_frac/base")
    for _ in range(_MAX_ROUNDS):
        maps = torch.stack([padded(svd_system(rng, 4)) for _ in range(16)])
        n = torch.full((16,), 4)
        probs = torch.stack([map_probabilities(m, 4) for m in maps])
        choices = torch.randint(0, BANK, (2, 16, _SEARCH_STEPS), generator=rng, dtype=torch.uint8)
        ok = ((fill_ratio(maps, probs, n, choices[0]) >= threshold)
              & (fill_ratio(maps, probs, n, choices[1]) >= threshold)).nonzero().flatten()
        if ok.numel():
            return maps[int(ok[0]), :4].clone()
    raise RuntimeError("1p_frac: no base system found")


@lru_cache(maxsize=None)
def one_p_copy(category_seed: int, threshold: float, label: int, spread: float) -> torch.Tensor:
    """Category `label` of 1p_frac: every parameter of the base system times U(1 - D, 1 + D), redrawn in the rare
    case that a map is no longer a contraction (so copies render like svd systems, with no far-flung points)."""
    base = one_p_base(category_seed, threshold)
    rng = image_rng(category_seed, label, "fractal_ifs/1p_frac/category")
    for _ in range(_MAX_ROUNDS):
        maps = base * (1.0 + spread * (2.0 * torch.rand(base.shape, generator=rng) - 1.0))
        if float(torch.linalg.matrix_norm(maps[:, :4].view(-1, 2, 2).double(), ord=2).max()) < 1.0:
            return maps
    raise RuntimeError("1p_frac: no contractive perturbation found")
