"""IFS fractals: attractors of random affine iterated function systems, rendered by a parallel chaos game.

Variants (each category is one IFS; `num_classes` categories, the image's class in params["label"]):
    svd        Anderson & Farrell (WACV 2022): each map is R(theta) diag(s1, s2) R(phi) F (rotations, a random
               reflection F), 0 <= s2 <= s1 <= 1, with sigma = sum over maps of (s1 + 2 s2) ~ U((5+n)/2, (6+n)/2)
               for n in 2..4 maps: always contractive, no search. Coloured by hue from the hit density over a
               random smooth background. `num_classes=None` draws a fresh system for every image instead.
    fractaldb  FractalDB (Kataoka et al., ACCV 2020): 2..7 maps with a..f ~ U(-1, 1), map probability
               proportional to |det|; a category is the first random system whose attractor fills >= 20% of a
               coarse 64 x 64 grid (4,096 chaos-game points fitted by their min/max box, as FractalDB fits its
               points) in two independent runs. Systems that are not contractive on average (sum_j p_j log
               sigma_max(A_j) >= 0, ~75% of them) or whose total area ratio sum_j |det A_j| is below 0.7 (none of
               those passed in our trials) are dropped before rendering; ~5% of all random systems pass
               (FractalDB: ~4.5%). Candidates are drawn 32 per category per round, and those of all the new
               categories of a batch rendered in one vectorised chaos game (~1 ms per category on one core, once
               per process). Instances scale one parameter by 0.2, 0.6, 1.4 or 1.8 (or jitter all of them by
               +-5%) and flip; colour over a black, smooth or textured background.
    1p_frac    1p-frac (ECCV 2024): ONE system (the first svd system with 4 maps that passes the filling check,
               from `category_seed`); category c is that system with every parameter times U(1 - D, 1 + D),
               D = 0.1. Instances: flips, colours, background.

A category's system is a pure function of (variant, `category_seed`, label), computed once per process and
cached; the label and all instance variation come from the image's own generator. A map is (a, b, c, d, e, f):
(x, y) -> (a x + b y + e, c x + d y + f).

Renderer: K parallel chains (default 256 per image) run T steps at once over the whole batch. Chain slot k always
applies the same map -- the slots are split between the maps in proportion to their probabilities (stratified
selection) -- and between steps the chains are shuffled among the slots by a permutation that the image's own
random bytes pick from a fixed bank of 256 random permutations. So a step costs two 1-D gathers and four
multiply-adds per point, with no per-point random numbers or coefficient look-ups. Chains start at the fixed points
of their maps (points of the attractor); the first ceil(log2 K) + 2 steps are dropped until the chains are spread
out. The K x (T - burn-in) points are fitted to the canvas (their min/max box for svd and 1p_frac, whose maps are
all contractions; for fractaldb, whose maps need only contract on average and fling rare points far out, the
0.5%-99.5% quantile box of the last 4 steps' points), aspect ratio kept, flipped, and counted per
pixel with one integer `bincount` per chunk of images (image-major, so each image's counts stay in the cache),
exact on any device and whatever the batch. Colour: a per-image look-up table maps the hit count to
(colour x alpha + (1 - alpha) x background colour A, 1 - alpha), the hue moving with the log density; the
background runs from A to B with a noise bilinearly upsampled from a 4 x 4 (smooth) or 4 x 4 + 16 x 16 (textured)
grid, so a pixel is one table look-up plus (1 - alpha) x noise x (B - A).

Example:
    >>> gen = GENERATORS.create("fractal_ifs", variant="fractaldb", size=128)
    >>> images, labels = gen.generate_with_labels(range(16), seed=0)   # [16, 3, 128, 128], [16] in [0, 1000)
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from synthsight.generators.base import Generator, image_rng
from synthsight.registry import GENERATORS

MAX_MAPS = 7  # params["maps"] is padded to this many rows
BANK = 256  # permutations in the bank; one byte per step and image picks one
SCALE_FACTORS = (0.2, 0.6, 1.4, 1.8)  # FractalDB's instance variation of one parameter
BACKGROUNDS = ("black", "smooth", "textured")
_LUT = 64  # hit counts >= _LUT - 1 share the last colour
_GRID = 16  # background noise grid
_MARGIN = 0.04  # free border around the attractor, fraction of the side
_SEARCH_GRID, _SEARCH_CHAINS, _SEARCH_BURN, _SEARCH_STEPS, _SEARCH_BATCH = 64, 64, 8, 72, 32
_MIN_AREA = 0.7  # fractaldb pre-screen on sum_j |det A_j|
_MAX_ROUNDS = 10_000


# ---------------------------------------------------------------------------------------------- systems
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


def _padded(maps: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(MAX_MAPS, 6)
    out[: maps.shape[0]] = maps
    return out


@lru_cache(maxsize=None)
def _svd_category(category_seed: int, label: int) -> torch.Tensor:
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


@lru_cache(maxsize=None)
def _one_p_base(category_seed: int, threshold: float) -> torch.Tensor:
    """The single system of 1p_frac: the first svd system (4 maps) whose attractor passes the filling check (in
    two runs, as the fractaldb categories)."""
    rng = image_rng(category_seed, 0, "fractal_ifs/1p_frac/base")
    for _ in range(_MAX_ROUNDS):
        maps = torch.stack([_padded(svd_system(rng, 4)) for _ in range(16)])
        n = torch.full((16,), 4)
        probs = torch.stack([map_probabilities(m, 4) for m in maps])
        choices = torch.randint(0, BANK, (2, 16, _SEARCH_STEPS), generator=rng, dtype=torch.uint8)
        ok = ((fill_ratio(maps, probs, n, choices[0]) >= threshold)
              & (fill_ratio(maps, probs, n, choices[1]) >= threshold)).nonzero().flatten()
        if ok.numel():
            return maps[int(ok[0]), :4].clone()
    raise RuntimeError("1p_frac: no base system found")


@lru_cache(maxsize=None)
def _one_p_copy(category_seed: int, threshold: float, label: int, spread: float) -> torch.Tensor:
    """Category `label` of 1p_frac: every parameter of the base system times U(1 - D, 1 + D), redrawn in the rare
    case that a map is no longer a contraction (so copies render like svd systems, with no far-flung points)."""
    base = _one_p_base(category_seed, threshold)
    rng = image_rng(category_seed, label, "fractal_ifs/1p_frac/category")
    for _ in range(_MAX_ROUNDS):
        maps = base * (1.0 + spread * (2.0 * torch.rand(base.shape, generator=rng) - 1.0))
        if float(torch.linalg.matrix_norm(maps[:, :4].view(-1, 2, 2).double(), ord=2).max()) < 1.0:
            return maps
    raise RuntimeError("1p_frac: no contractive perturbation found")


# ---------------------------------------------------------------------------------------------- chaos game
@lru_cache(maxsize=8)
def _bank(chains: int, device: torch.device) -> torch.Tensor:
    """BANK fixed random permutations of range(chains), Tensor[BANK, chains] int32 (part of the algorithm)."""
    g = torch.Generator().manual_seed(0x1F5)
    return torch.stack([torch.randperm(chains, generator=g) for _ in range(BANK)]).to(device, torch.int32)


def chaos_game(
    maps: torch.Tensor, probs: torch.Tensor, n_maps: torch.Tensor, choices: torch.Tensor, chains: int, burn_in: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Points of the attractors of a batch of systems.

    Args: maps [B, N, 6], probs [B, N], n_maps [B] int64, choices [B, T] uint8 (one bank permutation per step),
        all on the rendering device; chains K (a power of two up to 256 is typical); burn_in steps to drop.
    Returns: xs, ys [T - burn_in, B, K], step-major.
    """
    b, steps = choices.shape
    dev = maps.device
    cum = torch.cumsum(probs, 1)
    cum = cum / cum[:, -1:].clamp_min(1e-30)
    centre = ((torch.arange(chains, device=dev, dtype=torch.float32) + 0.5) / chains).expand(b, chains)
    slot_map = torch.minimum(torch.searchsorted(cum, centre.contiguous()), (n_maps - 1).view(b, 1))
    coef = torch.gather(maps, 1, slot_map.unsqueeze(-1).expand(b, chains, 6)).permute(2, 0, 1).reshape(6, -1)
    a, bb, c, d, e, f = coef.contiguous().unbind(0)
    # start at each slot's fixed point: (I - A) z = (e, f)
    det = (1.0 - a) * (1.0 - d) - bb * c
    det = torch.where(det.abs() < 1e-6, torch.full_like(det, 1e-6), det)
    x = torch.nan_to_num(((1.0 - d) * e + bb * f) / det).clamp_(-1e3, 1e3)
    y = torch.nan_to_num((c * e + (1.0 - a) * f) / det).clamp_(-1e3, 1e3)
    offset = (torch.arange(b, device=dev, dtype=torch.int32) * chains).view(1, b, 1)
    perm = (_bank(chains, dev).index_select(0, choices.t().reshape(-1).long()).view(steps, b, chains) + offset)
    perm = perm.view(steps, b * chains)
    keep = steps - burn_in
    xs = torch.empty(keep, b * chains, device=dev)
    ys = torch.empty(keep, b * chains, device=dev)
    for t in range(steps):
        xp, yp = x.index_select(0, perm[t]), y.index_select(0, perm[t])
        if t >= burn_in:
            x, y = xs[t - burn_in], ys[t - burn_in]
            torch.addcmul(e, a, xp, out=x).addcmul_(bb, yp)
            torch.addcmul(f, c, xp, out=y).addcmul_(d, yp)
        else:
            x = torch.addcmul(e, a, xp).addcmul_(bb, yp)
            y = torch.addcmul(f, c, xp).addcmul_(d, yp)
    return xs.view(keep, b, chains), ys.view(keep, b, chains)


def fit_boxes(xs: torch.Tensor, ys: torch.Tensor, quantile: float) -> torch.Tensor:
    """Per-image bounding boxes [B, 4] = (x_lo, x_hi, y_lo, y_hi) of points [T, B, K]: min/max over all points
    (quantile 0) or the quantile box of the last 4 steps' points."""
    if quantile <= 0:
        return torch.stack([xs.amin((0, 2)), xs.amax((0, 2)), ys.amin((0, 2)), ys.amax((0, 2))], 1)
    boxes = []
    for v in (xs, ys):
        sample = v[-4:].permute(1, 0, 2).reshape(v.shape[1], -1)
        sample = torch.nan_to_num(sample, nan=0.0, posinf=1e30, neginf=-1e30)
        k = int(quantile * sample.shape[1]) + 1
        boxes += [torch.topk(sample, k, 1, largest=False).values[:, -1], torch.topk(sample, k, 1).values[:, -1]]
    return torch.stack(boxes, 1)


def hit_counts(xs: torch.Tensor, ys: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor, size: int,
               guard: bool) -> torch.Tensor:
    """Hits per pixel, Tensor[B, size, size] int64, of points [T, B, K] fitted (aspect kept) into the canvas.

    Points outside are clamped onto a one-pixel ring around the canvas, which is cut off afterwards. `guard` maps
    non-finite coordinates onto the ring too (needed where maps need not be contractive).
    """
    b = xs.shape[1]
    side = size + 2
    extent = torch.maximum(boxes[:, 1] - boxes[:, 0], boxes[:, 3] - boxes[:, 2]).clamp_min(1e-12)
    scale = (1.0 - 2.0 * _MARGIN) * size / extent
    index = None
    for axis, v in enumerate((xs, ys)):
        s = scale * flips[:, axis]
        centre = 0.5 * (boxes[:, 2 * axis] + boxes[:, 2 * axis + 1])
        shift = (0.5 * size + 1.0) - centre * s
        p = torch.empty(b, v.shape[0], v.shape[2], device=v.device)  # image-major, so each image's hits are
        torch.addcmul(shift.view(b, 1, 1), v.permute(1, 0, 2), s.view(b, 1, 1), out=p)  # counted in cache
        if guard:
            torch.nan_to_num_(p, nan=0.0, posinf=side - 1.0, neginf=0.0)
        i = p.clamp_(0.0, side - 1.0).to(torch.int32)
        index = i if index is None else i.mul_(side).add_(index)
    index += (torch.arange(b, device=xs.device, dtype=torch.int32) * (side * side)).view(b, 1, 1)
    counts = torch.bincount(index.view(-1), minlength=b * side * side).view(b, side, side)
    return counts[:, 1:-1, 1:-1]


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
        counts = hit_counts(x, y, fit_boxes(x, y, 0.0), torch.ones(x.shape[1], 2), grid, guard=True)
        lit.append((counts > 0).flatten(1).sum(1))
    return torch.cat(lit).float() / (grid * grid)


# ---------------------------------------------------------------------------------------------- family
@GENERATORS.register("fractal_ifs")
class FractalIFS(Generator):
    """Random IFS attractors; see the module docstring.

    Args:
        variant: "svd" (default), "fractaldb" or "1p_frac".
        size: image side in pixels.
        num_classes: categories (systems); labels are uniform in [0, num_classes). None (svd only): every image
            draws its own system and has no label.
        category_seed: which set of categories (systems); the images' seed does not change them.
        points: chaos-game points per image (default size^2: 16k at 128 px; 1.5x more looks the same).
        chains: parallel chains per image (default min(256, points / 32) rounded down to a power of two).
        background: "black", "smooth", "textured" or "mixed" (each image picks one of the three); default
            smooth for svd, mixed for the others.
        fill_threshold: FractalDB's filter (fraction of a coarse grid the attractor must cover).
        perturbation: D of 1p_frac (each parameter of a category times U(1 - D, 1 + D)).
        jitter: relative jitter of every parameter in the fractaldb instances that do not scale one parameter.
    """

    family = "fractal_ifs"
    variants = ("svd", "fractaldb", "1p_frac")

    def __init__(
        self,
        variant: str | None = None,
        size: int = 128,
        num_classes: int | None = 1000,
        category_seed: int = 0,
        points: int | None = None,
        chains: int | None = None,
        background: str | None = None,
        fill_threshold: float = 0.2,
        perturbation: float = 0.1,
        jitter: float = 0.05,
    ) -> None:
        super().__init__(variant, size)
        if num_classes is None and self.variant != "svd":
            raise ValueError(f"fractal_ifs/{self.variant} needs num_classes >= 1 (only svd can do without)")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 or None, got {num_classes}")
        points = size * size if points is None else int(points)
        if points < 64:
            raise ValueError(f"points must be >= 64, got {points}")
        if chains is None:
            chains = 1 << max(5, min(8, (points // 32).bit_length() - 1))
        if not 2 <= chains <= points:
            raise ValueError(f"chains must be in [2, points], got {chains}")
        background = background or ("smooth" if self.variant == "svd" else "mixed")
        if background not in BACKGROUNDS + ("mixed",):
            raise ValueError(f"background must be one of {BACKGROUNDS + ('mixed',)}, got {background!r}")
        if not 0.0 < fill_threshold < 1.0 or not 0.0 <= perturbation < 1.0 or not 0.0 <= jitter < 1.0:
            raise ValueError(f"need 0 < fill_threshold < 1, 0 <= perturbation < 1, 0 <= jitter < 1, got "
                             f"{fill_threshold}, {perturbation}, {jitter}")
        self.num_classes = num_classes
        self.category_seed = int(category_seed)
        self.points, self.chains = points, int(chains)
        self.burn_in = math.ceil(math.log2(self.chains)) + 2
        self.steps = self.burn_in + math.ceil(points / self.chains)
        self.background = background
        self.fill_threshold, self.perturbation, self.jitter = float(fill_threshold), float(perturbation), float(jitter)

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "num_classes": self.num_classes,
            "category_seed": self.category_seed,
            "points": self.points,
            "chains": self.chains,
            "background": self.background,
            "fill_threshold": self.fill_threshold,
            "perturbation": self.perturbation,
            "jitter": self.jitter,
        }

    # ------------------------------------------------------------------------------------------ categories
    def category(self, label: int) -> torch.Tensor:
        """The system [n, 6] that defines category `label` (a pure function of variant, category_seed, label)."""
        if self.num_classes is None or not 0 <= label < self.num_classes:
            raise ValueError(f"label must be in [0, {self.num_classes}), got {label}")
        return self._system(int(label)).clone()

    def _system(self, label: int) -> torch.Tensor:
        """The cached system of category `label` (shared: not to be modified)."""
        if self.variant == "svd":
            return _svd_category(self.category_seed, int(label))
        if self.variant == "fractaldb":
            return fractaldb_categories([label], self.category_seed, self.fill_threshold)[0]
        return _one_p_copy(self.category_seed, self.fill_threshold, int(label), self.perturbation)

    def prepare_categories(self, labels: Sequence[int]) -> None:
        """Compute (and cache) the systems of `labels` in one vectorised search (fractaldb); optional."""
        if self.variant == "fractaldb":
            fractaldb_categories(labels, self.category_seed, self.fill_threshold)

    def generate_with_labels(
        self, indices: Sequence[int], seed: int, device: str | torch.device = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.variant == "fractaldb" and len(indices) > 1:  # search the batch's new categories together
            self.prepare_categories([self._draw_label(image_rng(seed, int(i), self.salt)) for i in indices])
        return super().generate_with_labels(indices, seed, device)

    def _draw_label(self, rng: torch.Generator) -> int:
        return int(torch.randint(self.num_classes, (1,), generator=rng))

    # ------------------------------------------------------------------------------------------ parameters
    def sample_params(self, rng: torch.Generator) -> dict[str, torch.Tensor]:
        """label [] int64 (absent when num_classes is None); maps [7, 6] (zero rows past n_maps), probs [7],
        n_maps [] int64; choices [steps] uint8 (bank permutation per chain step); flips [2] (+-1); palette [5]
        (hue, hue span, saturation, value floor, alpha gain); colours [2, 3] (background ends); noise_coarse
        [1, 4, 4] and noise_fine [1, 16, 16] with texture [] (weight of the fine noise)."""
        params: dict[str, torch.Tensor] = {}
        if self.num_classes is None:
            rows = svd_system(rng, 2 + int(torch.randint(3, (1,), generator=rng))).tolist()
        else:
            label = self._draw_label(rng)
            params["label"] = torch.tensor(label, dtype=torch.int64)
            rows = self._system(label).tolist()
        u = torch.rand(24, generator=rng).tolist()
        if self.variant == "fractaldb":
            rows = self._instance(rows, u[:4], rng)
        n = len(rows)
        dets = [abs(a * d - b * c) for a, b, c, d, _, _ in rows]
        params["maps"] = torch.tensor(rows + [[0.0] * 6] * (MAX_MAPS - n))
        params["probs"] = torch.tensor([x / max(sum(dets), 1e-30) for x in dets] + [0.0] * (MAX_MAPS - n))
        params["n_maps"] = torch.tensor(n, dtype=torch.int64)
        params["choices"] = torch.randint(0, BANK, (self.steps,), generator=rng, dtype=torch.uint8)
        params["flips"] = torch.tensor([1.0 if u[4] < 0.5 else -1.0, 1.0 if u[5] < 0.5 else -1.0])
        span = (0.15 + 0.5 * u[7]) * (1.0 if u[8] < 0.5 else -1.0)
        params["palette"] = torch.tensor([u[6], span, 0.45 + 0.55 * u[9], 0.35 + 0.35 * u[10], 0.4 + 0.6 * u[11]])
        kind = self.background
        if kind == "mixed":
            kind = BACKGROUNDS[min(int(u[12] * 3), 2)]
        dark = 0.0 if kind == "black" else 0.15 + 0.35 * u[13]
        params["colours"] = torch.tensor(u[14:20]).view(2, 3) * dark
        params["texture"] = torch.tensor(0.6 if kind == "textured" else 0.0)
        params["noise_coarse"] = torch.rand(1, 4, 4, generator=rng)
        params["noise_fine"] = torch.rand(1, _GRID, _GRID, generator=rng)
        return params

    def _instance(self, rows: list[list[float]], u: list[float], rng: torch.Generator) -> list[list[float]]:
        """FractalDB instance of the system `rows` (n lists of a..f): one parameter scaled by a factor of
        SCALE_FACTORS (half the images) or every parameter jittered; kept only if the system stays contractive on
        average (plain Python: a handful of numbers)."""
        n = len(rows)
        jitter = torch.rand(n * 6, generator=rng).tolist()
        if u[0] < 0.5:
            out = [list(r) for r in rows]
            out[min(int(u[1] * n), n - 1)][min(int(u[2] * 6), 5)] *= SCALE_FACTORS[min(int(u[3] * 4), 3)]
        else:
            out = [[x * (1.0 + self.jitter * (2.0 * jitter[6 * i + k] - 1.0)) for k, x in enumerate(r)]
                   for i, r in enumerate(rows)]
        return out if _contraction_bound_rows(out) < 0 else rows

    # ------------------------------------------------------------------------------------------ rendering
    def render(self, params: Sequence[dict[str, torch.Tensor]], device: torch.device) -> torch.Tensor:
        """Tensor[B, 3, S, S] in [0, 1]. On CPU in groups of images (their point buffers stay near the cache)."""
        device = torch.device(device)
        return self._render(params, device, grouped=device.type == "cpu")

    def _render(self, params: Sequence[dict[str, torch.Tensor]], device: torch.device, grouped: bool) -> torch.Tensor:
        """grouped (CPU): the chaos game runs ~1M points at a time (enough chains per step to amortise the
        per-operation cost) and the pixel passes ~128k points at a time (their arrays stay in the cache)."""
        out = torch.empty(len(params), 3, self.size, self.size, device=device)
        group = max(1, (1 << 20) // self.points) if grouped else len(params)
        chunk = max(1, (1 << 17) // self.points) if grouped else len(params)

        def stack(part: Sequence[dict[str, torch.Tensor]], key: str) -> torch.Tensor:
            return torch.stack([p[key] for p in part]).to(device)

        for start in range(0, len(params), group):
            part = params[start : start + group]
            xs, ys = chaos_game(stack(part, "maps"), stack(part, "probs"), stack(part, "n_maps"),
                                stack(part, "choices"), self.chains, self.burn_in)
            palette = stack(part, "palette")
            colours = _palette_colours(palette)  # [B, _LUT, 3]
            for first in range(0, len(part), chunk):
                few = part[first : first + chunk]
                rows = slice(first, first + len(few))
                self._shade(few, xs[:, rows], ys[:, rows], stack(few, "flips"), colours[rows], palette[rows, 4],
                            stack(few, "colours"), out[start + first : start + first + len(few)])
        return out

    def _shade(self, params: Sequence[dict[str, torch.Tensor]], xs: torch.Tensor, ys: torch.Tensor,
               flips: torch.Tensor, palette: torch.Tensor, gain: torch.Tensor, colours: torch.Tensor,
               out: torch.Tensor) -> None:
        """Write images out [B, 3, S, S] from their chaos-game points xs, ys [T, B, K]; palette [B, _LUT, 3]
        (colours for densities 0..1), gain [B] (opacity per hit), colours [B, 2, 3] (background ends)."""
        b, size, device = len(params), self.size, out.device
        contractive = self.variant != "fractaldb"  # every map a contraction: no far-flung or non-finite points
        boxes = fit_boxes(xs, ys, 0.0 if contractive else 0.005)
        counts = hit_counts(xs, ys, boxes, flips, size, guard=not contractive)
        lut = self._colour_lut(counts, palette, gain, colours[:, 0])  # [4, B * _LUT]
        index = counts.clamp(max=_LUT - 1)
        index += (torch.arange(b, device=device) * _LUT).view(b, 1, 1)
        fg = lut.index_select(1, index.view(-1)).view(4, b, 1, size, size)
        base = fg[:3].squeeze(2).permute(1, 0, 2, 3)  # [B, 3, S, S]: colour x alpha + (1 - alpha) x background end
        # the rest of the background, (1 - alpha) x noise x (other end - first end)
        rest = fg[3].view(b, 1, size, size).mul_(self._noise(params, device))
        torch.addcmul(base, rest, (colours[:, 1] - colours[:, 0]).view(b, 3, 1, 1), out=out).clamp_(0.0, 1.0)

    def _colour_lut(self, counts: torch.Tensor, palette: torch.Tensor, gain: torch.Tensor,
                    back: torch.Tensor) -> torch.Tensor:
        """Per image, hit count (0.._LUT-1) -> (colour a + (1 - a) back, 1 - a): Tensor[4, B * _LUT], with back
        [B, 3] the background's first end colour.

        The palette position is the log density relative to twice the image's mean count over its lit pixels;
        alpha grows with the count (a single hit is translucent), zero where nothing landed.
        """
        b = counts.shape[0]
        flat = counts.flatten(1)
        lit = (flat > 0).sum(1).clamp_min(1)
        ref = torch.log1p(2.0 * flat.sum(1).float() / lit).clamp_min(1e-3).view(b, 1)  # counts: exact in float32
        level = torch.arange(_LUT, device=counts.device, dtype=torch.float32).view(1, -1)
        position = (torch.log1p(level) / ref).clamp_(0.0, 1.0).mul_(_LUT - 1).round_().long()  # [B, L]
        rgb = palette.gather(1, position.unsqueeze(-1).expand(b, _LUT, 3))
        alpha = (level * gain.view(b, 1)).clamp_(0.0, 1.0).unsqueeze(-1)
        clear = 1.0 - alpha
        lut = torch.cat([torch.addcmul(rgb * alpha, clear, back.view(b, 1, 3)), clear], -1)  # [B, L, 4]
        return lut.permute(2, 0, 1).reshape(4, b * _LUT)

    def _noise(self, params: Sequence[dict[str, torch.Tensor]], device: torch.device) -> torch.Tensor:
        """Background noise in [0, 1], Tensor[B, 1, S, S]: a 4 x 4 grid (plus the 16 x 16 grid, weighted by
        'texture'), bilinearly upsampled."""
        coarse = torch.stack([p["noise_coarse"] for p in params]).to(device)
        fine = torch.stack([p["noise_fine"] for p in params]).to(device)
        texture = torch.stack([p["texture"] for p in params]).to(device).view(-1, 1, 1, 1)
        grid = F.interpolate(coarse, size=(_GRID, _GRID), mode="bilinear", align_corners=False)
        grid = torch.lerp(grid, fine, texture)
        return F.interpolate(grid, size=(self.size, self.size), mode="bilinear", align_corners=False)


def _palette_colours(palette: torch.Tensor) -> torch.Tensor:
    """Colours [B, _LUT, 3] at densities v = 0.._LUT-1 / (_LUT - 1) of palettes [B, 5] = (hue, hue span,
    saturation, value floor, -): the hue moves by span * v, the value rises from the floor to 1."""
    b = palette.shape[0]
    v = torch.linspace(0.0, 1.0, _LUT, device=palette.device).view(1, -1)
    hue, span, sat, floor = (palette[:, i].view(b, 1) for i in range(4))
    h = torch.remainder(torch.addcmul(hue, span, v), 1.0)
    return _hsv_to_rgb(h, sat.expand_as(h), torch.addcmul(floor, 1.0 - floor, v))


def _contraction_bound_rows(rows: list[list[float]]) -> float:
    """contraction_bound of one system given as n lists (a, b, c, d, e, f), in plain Python."""
    dets = [abs(a * d - b * c) for a, b, c, d, _, _ in rows]
    total = sum(dets)
    if not total > 0:
        return math.inf
    bound = 0.0
    for (a, b, c, d, _, _), det in zip(rows, dets):
        frob = a * a + b * b + c * c + d * d
        smax = math.sqrt(0.5 * (frob + math.sqrt(max(frob * frob - 4.0 * det * det, 0.0))))
        if det > 0:
            bound += det / total * math.log(max(smax, 1e-30))
    return bound


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """HSV in [0, 1] (any equal shapes) to RGB, Tensor[..., 3]."""
    k = torch.tensor([5.0, 3.0, 1.0], device=h.device)
    t = torch.remainder(k + 6.0 * h.unsqueeze(-1), 6.0)
    ramp = torch.clamp(torch.minimum(t, 4.0 - t), 0.0, 1.0)
    return v.unsqueeze(-1) * (1.0 - s.unsqueeze(-1) * ramp)
