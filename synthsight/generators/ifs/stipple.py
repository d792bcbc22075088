"""FractalDB's grey patch stipple (Kataoka et al., ACCV 2020; 1p-frac draws the same way): mid-grey dots on black.

FractalDB ("patch_gray") fits the points, together with the chaos game's start at the origin, into a 362 px canvas
with a 6 px border, each axis stretched on its own, and pastes at every point a 3 x 3 patch of grey 127 whose
cells are each on or off at random (a fresh pattern per point; a later patch overwrites an earlier one), then
mirrors the image at random; we compare at 128 px, resized. Here the canvas is drawn at 3x the image size, a pixel
is on when some point's 3 x 3 neighbourhood covers it and a random bit says so (the last patch over a pixel decides
it with probability 256/511 ~ 1/2, whatever patches came before), and the canvas is resized by a bilinear
(triangle) filter, as an antialiased resize does: weights 1 2 3 2 1 per axis around each pixel's centre cell, all
in uint8 running sums. The random bits come from a fixed bank at a per-image offset. Mirroring is done on the
system (see points.conjugate), so this painter has none. Measured at 128 px (synthsight stats --reference) this
matches FractalDB's own images resized from 362 px: slope 1.74, std 0.10, mean 0.07 against 1.74, 0.10, 0.06.

Example:
    >>> paint(xs, ys, {"offset": offsets}, out)   # out [B, 3, S, S]: grey k * (127 / 255) / 81, k = 0..81
"""

from __future__ import annotations

from functools import lru_cache

import torch

from synthsight.generators.ifs.points import fit_boxes, grid_cells

NATIVE = 3  # canvas = 3x the image side (FractalDB draws 362 px, 2.8x our 128), filtered down (odd)
PAD = 6 / 362  # FractalDB's border, fraction of the side
GREY = 127 / 255  # FractalDB's patch grey
BIT_P = 256 / 511  # a cell of a random non-empty 3 x 3 pattern is on with this probability
_BIT_BANK = 1 << 22


@lru_cache(maxsize=8)
def _bit_bank(length: int, device: torch.device) -> torch.Tensor:
    """Fixed random bits, P(on) = BIT_P, Tensor[length] bool (part of the algorithm)."""
    g = torch.Generator().manual_seed(0xB17)
    return (torch.rand(length, generator=g) < BIT_P).to(device)


def bank_length(size: int) -> int:
    """Length of the bit bank for images of `size` pixels (at least twice the native canvas)."""
    return max(_BIT_BANK, 2 * (NATIVE * size + 2) ** 2)


def sample(rng: torch.Generator, size: int) -> dict[str, torch.Tensor]:
    """One image's rendering parameters: flips [3] (transpose 0, mirror x, mirror y: FractalDB's four flips) and
    offset [] int64 into the bit bank."""
    u = torch.rand(2, generator=rng).tolist()
    n = (NATIVE * size + 2) ** 2
    return {
        "flips": torch.tensor([0.0, float(u[0] < 0.5), float(u[1] < 0.5)]),
        "offset": torch.randint(0, bank_length(size) - n + 1, (), generator=rng),  # n: canvas + ring
    }


def paint(xs: torch.Tensor, ys: torch.Tensor, p: dict[str, torch.Tensor], out: torch.Tensor) -> None:
    """Write images out [B, 3, S, S] from the points xs, ys [T, B, K] of their systems (p: stacked `sample`
    parameters). x runs along the columns, y along the rows, as in FractalDB."""
    b, size, device = out.shape[0], out.shape[-1], out.device
    n = NATIVE * size
    g = n + 4  # the canvas, a ring of empty cells (the resize filter's border) and an outer ring for stray points
    box = fit_boxes(xs, ys).view(b, 2, 2)  # [B, axis, (lo, hi)]
    lo = box[..., 0].clamp(max=0.0)  # the start point (0, 0) is in FractalDB's box
    span = box[..., 1].clamp(min=0.0) - lo
    scale = n * (1.0 - 2.0 * PAD) / torch.where(span > 0, span, torch.ones_like(span))
    shift = (2.0 + n * PAD) - lo * scale
    cells = grid_cells(ys, xs, rows=(scale[:, 1], shift[:, 1]), cols=(scale[:, 0], shift[:, 0]), grid=g, guard=True)
    hits = torch.zeros(b, g, g, dtype=torch.bool, device=device)
    hits.view(-1)[cells.view(-1)] = True
    hits[:, 0], hits[:, -1], hits[:, :, 0], hits[:, :, -1] = False, False, False, False  # non-finite points
    # a cell is covered when some point's 3 x 3 patch reaches it; [B, n + 2, n + 2]: the canvas and an empty ring
    across = hits[:, :, :-2] | hits[:, :, 1:-1] | hits[:, :, 2:]
    covered = across[:, :-2] | across[:, 1:-1] | across[:, 2:]
    bank = _bit_bank(bank_length(size), device)
    for i, o in enumerate(p["offset"].tolist()):
        covered[i] &= bank[o : o + (n + 2) ** 2].view(n + 2, n + 2)
    on = covered.view(torch.uint8)
    # resize by a bilinear (triangle) filter, as an antialiased resize does: weights 1 2 3 2 1 over the native
    # cells around each pixel's centre cell 3 i + 1, per axis = a running sum of 3 summed over blocks of 3
    # (rows first: their slices are contiguous)
    run = on[:, :-2] + on[:, 1:-1] + on[:, 2:]  # [B, n, n + 2], 0..3
    rows = sum(run[:, k::NATIVE] for k in range(NATIVE))  # [B, S, n + 2]
    run = rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]  # [B, S, n]
    blocks = sum(run[..., k::NATIVE] for k in range(NATIVE))  # [B, S, S], 0..81 (uint8)
    torch.mul(blocks, GREY / NATIVE**4, out=out[:, 0])
    out[:, 1:] = out[:, :1]
