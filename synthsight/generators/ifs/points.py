"""The parallel chaos game and the step from its points to pixels, shared by every fractal_ifs painter.

The chaos game runs K chains T steps at once over a batch of systems. Chain slot k always applies the same map --
the slots are split between the maps in proportion to their probabilities (stratified selection) -- and between
steps the chains are shuffled among the slots by a permutation that the image's own random bytes pick from a fixed
bank of 256 random permutations. So a step costs two 1-D gathers and four multiply-adds per point, with no
per-point random numbers or coefficient look-ups. Chains start at the fixed points of their maps (points of the
attractor). A map is (a, b, c, d, e, f): (x, y) -> (a x + b y + e, c x + d y + f).

Example:
    >>> xs, ys = chaos_game(maps, probs, n_maps, choices, chains=256, burn_in=10)   # [T - 10, B, 256] each
    >>> cells = grid_cells(ys, xs, rows=(sy, ty), cols=(sx, tx), grid=130)          # [B, (T - 10) * 256]
"""

from __future__ import annotations

from functools import lru_cache

import torch

BANK = 256  # permutations in the bank; one byte per step and image picks one


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


def conjugate(maps: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """The systems whose attractors are those of maps [B, N, 6] transposed (x <-> y) and/or mirrored.

    flips [B, 3] = (transpose, mirror x, mirror y), each 0 or 1. A system conjugated by a signed permutation T,
    z -> T A T^-1 z + T t, has the attractor T(attractor): flipping the image costs nothing per point.
    """
    a, b, c, d, e, f = maps.unbind(-1)
    swap = flips[:, 0].view(-1, 1) > 0.5
    a, b, c, d, e, f = (torch.where(swap, d, a), torch.where(swap, c, b), torch.where(swap, b, c),
                        torch.where(swap, a, d), torch.where(swap, f, e), torch.where(swap, e, f))
    sx = (1.0 - 2.0 * flips[:, 1]).view(-1, 1)
    sy = (1.0 - 2.0 * flips[:, 2]).view(-1, 1)
    return torch.stack([a, b * sx * sy, c * sx * sy, d, e * sx, f * sy], -1)


def fit_boxes(xs: torch.Tensor, ys: torch.Tensor, quantile: float = 0.0) -> torch.Tensor:
    """Per-image bounding boxes [B, 4] = (x_lo, x_hi, y_lo, y_hi) of points [T, B, K]: min/max over all points
    (quantile 0) or the quantile box of the last 4 steps' points. Non-finite points are ignored by the quantile box
    and saturate the min/max box."""
    if quantile <= 0:
        box = torch.stack([xs.amin((0, 2)), xs.amax((0, 2)), ys.amin((0, 2)), ys.amax((0, 2))], 1)
        return box.nan_to_num_(nan=0.0, posinf=3e38, neginf=-3e38)
    boxes = []
    for v in (xs, ys):
        sample = v[-4:].permute(1, 0, 2).reshape(v.shape[1], -1)
        sample = torch.nan_to_num(sample, nan=0.0, posinf=1e30, neginf=-1e30)
        k = int(quantile * sample.shape[1]) + 1
        boxes += [torch.topk(sample, k, 1, largest=False).values[:, -1], torch.topk(sample, k, 1).values[:, -1]]
    return torch.stack(boxes, 1)


def grid_cells(u: torch.Tensor, v: torch.Tensor, rows: tuple[torch.Tensor, torch.Tensor],
               cols: tuple[torch.Tensor, torch.Tensor], grid: int, guard: bool = False) -> torch.Tensor:
    """Flat cell index, Tensor[B, T * K] int64 into a [B, grid, grid] canvas, of points u (row axis) and v (column
    axis), each [T, B, K].

    Row = floor(u * rows[0] + rows[1]) with per-image scale and shift [B], likewise the column; both are clamped
    into [0, grid - 1], so points off the canvas land on its outer ring (cut off or zeroed by the caller). `guard`
    maps non-finite coordinates onto the ring too (needed where the maps need not be contractive).
    """
    b = u.shape[1]
    index = None
    for coord, (scale, shift) in ((v, cols), (u, rows)):  # image-major, so each image's hits are counted in cache
        p = torch.empty(b, coord.shape[0], coord.shape[2], device=coord.device)
        torch.addcmul(shift.view(b, 1, 1), coord.permute(1, 0, 2), scale.view(b, 1, 1), out=p)
        if guard:
            torch.nan_to_num_(p, nan=0.0, posinf=grid - 1.0, neginf=0.0)
        i = p.clamp_(0.0, grid - 1.0).to(torch.int32)
        index = i if index is None else i.mul_(grid).add_(index)
    index += (torch.arange(b, device=u.device, dtype=torch.int32) * (grid * grid)).view(b, 1, 1)
    return index.view(b, -1)


def hit_counts(xs: torch.Tensor, ys: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor, size: int,
               margin: float, guard: bool) -> torch.Tensor:
    """Hits per pixel, Tensor[B, size, size] int64, of points [T, B, K] fitted into the canvas with their aspect
    ratio kept and a free border of `margin` (fraction of the side); x along the columns, y along the rows.

    flips [B, 2] (+-1) mirror x and y. Points outside land on a one-pixel ring around the canvas, cut off here.
    """
    b, side = xs.shape[1], size + 2
    extent = torch.maximum(boxes[:, 1] - boxes[:, 0], boxes[:, 3] - boxes[:, 2]).clamp_min(1e-12)
    scale = (1.0 - 2.0 * margin) * size / extent
    axes = []
    for axis in range(2):
        s = scale * flips[:, axis]
        centre = 0.5 * (boxes[:, 2 * axis] + boxes[:, 2 * axis + 1])
        axes.append((s, (0.5 * size + 1.0) - centre * s))
    cells = grid_cells(ys, xs, rows=axes[1], cols=axes[0], grid=side, guard=guard)
    counts = torch.bincount(cells.view(-1), minlength=b * side * side).view(b, side, side)
    return counts[:, 1:-1, 1:-1]
