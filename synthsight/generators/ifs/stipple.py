"""FractalDB's grey patch stipple (Kataoka et al., ACCV 2020; 1p-frac draws the same way): mid-grey dots on black.

FractalDB ("patch_gray") fits the points, together with the chaos game's start at the origin, into a 362 px canvas
with a 6 px border, each axis stretched on its own, and pastes at every point a 3 x 3 patch of grey 127 whose
cells are each on or off at random (a fresh pattern per point; a later patch overwrites an earlier one), then
mirrors the image at random; we compare at 128 px, resized. Here the canvas is drawn at 3x the image size, a pixel
is on when some point's 3 x 3 neighbourhood covers it and a random bit says so (the last patch over a pixel decides
it with probability 256/511 ~ 1/2, whatever patches came before), and every 3 x 3 block is averaged into one image
pixel. The random bits come from a fixed bank at a per-image offset. Mirroring is done on the system (see
points.conjugate), so this painter has none.

Example:
    >>> paint(xs, ys, {"offset": offsets}, out)   # out [B, 3, S, S]: grey levels k * 127 / 255 / 9, k = 0..9 cells on
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from synthsight.generators.ifs.points import fit_boxes, grid_cells

NATIVE = 3  # canvas = 3x the image side (FractalDB draws 362 px, 2.8x our 128), block-averaged down
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
    return max(_BIT_BANK, 2 * (NATIVE * size) ** 2)


def sample(rng: torch.Generator, size: int) -> dict[str, torch.Tensor]:
    """One image's rendering parameters: flips [3] (transpose 0, mirror x, mirror y: FractalDB's four flips) and
    offset [] int64 into the bit bank."""
    u = torch.rand(2, generator=rng).tolist()
    n = (NATIVE * size) ** 2
    return {
        "flips": torch.tensor([0.0, float(u[0] < 0.5), float(u[1] < 0.5)]),
        "offset": torch.randint(0, bank_length(size) - n + 1, (), generator=rng),
    }


def paint(xs: torch.Tensor, ys: torch.Tensor, p: dict[str, torch.Tensor], out: torch.Tensor) -> None:
    """Write images out [B, 3, S, S] from the points xs, ys [T, B, K] of their systems (p: stacked `sample`
    parameters). x runs along the columns, y along the rows, as in FractalDB."""
    b, size, device = out.shape[0], out.shape[-1], out.device
    n = NATIVE * size
    g = n + 2  # a one-cell ring around the canvas takes non-finite points
    box = fit_boxes(xs, ys)
    axes = []
    for axis in range(2):
        lo = torch.clamp(box[:, 2 * axis], max=0.0)  # the start point (0, 0) is in FractalDB's box
        span = torch.clamp(box[:, 2 * axis + 1], min=0.0) - lo
        span = torch.where(span > 0, span, torch.ones_like(span))
        scale = n * (1.0 - 2.0 * PAD) / span
        axes.append((scale, (1.0 + n * PAD) - lo * scale))
    cells = grid_cells(ys, xs, rows=axes[1], cols=axes[0], grid=g, guard=True)
    hits = torch.zeros(b, g, g, dtype=torch.bool, device=device)
    hits.view(-1)[cells.view(-1)] = True
    hits[:, 0], hits[:, -1], hits[:, :, 0], hits[:, :, -1] = False, False, False, False
    across = hits[:, :, :-2] | hits[:, :, 1:-1] | hits[:, :, 2:]  # [B, n + 2, n]
    covered = across[:, :-2] | across[:, 1:-1] | across[:, 2:]  # [B, n, n]: some point's 3 x 3 patch is here
    bank = _bit_bank(bank_length(size), device)
    bits = torch.stack([bank[o : o + n * n] for o in p["offset"].tolist()]).view(b, n, n)
    on = (covered & bits).unsqueeze(1).float()  # [B, 1, n, n]
    # resize by a bilinear (triangle) filter, as an antialiased resize does: weights 1 2 3 2 1 over the native
    # cells around each pixel's centre cell 3 i + 1, per axis (a strided convolution; exact: integer weights)
    c = (NATIVE - 1) // 2
    down = F.conv2d(on[..., c:, c:], _triangle(device), stride=NATIVE, padding=NATIVE - 1)  # [B, 1, S, S]: 0..81
    out.copy_(down.mul_(GREY / NATIVE**4).expand(b, 3, size, size))


@lru_cache(maxsize=8)
def _triangle(device: torch.device) -> torch.Tensor:
    """The (2 NATIVE - 1)^2 triangle kernel, weights 1..NATIVE..1 per axis, Tensor[1, 1, k, k] (integers)."""
    w = NATIVE - (torch.arange(2 * NATIVE - 1) - (NATIVE - 1)).abs().float()
    return torch.outer(w, w).view(1, 1, 2 * NATIVE - 1, 2 * NATIVE - 1).to(device)
