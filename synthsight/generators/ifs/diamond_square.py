"""Diamond-square fractal noise, batched: the backgrounds of Anderson & Farrell's fractal images.

Fournier, Fussell & Carpenter (1982), as in Anderson & Farrell's generator: a (2^n + 1)^2 grid starts from four
random corners; level k = 1..n sets each square's centre to the mean of its 4 corners (diamond step), then each
edge midpoint to the mean of its 4 neighbours, wrapping around the grid (square step), each plus uniform noise
U(-m_k, m_k) with m_k = 0.5 exp(decay (1 - k)). No point of a step reads another point of the same step, so each
level works on four contiguous planes -- the old grid (even rows, even columns), the centres (odd, odd), the
midpoints on even rows (even, odd) and on odd rows (odd, even) -- which are then interleaved into the next grid.

Example:
    >>> grid = diamond_square(torch.rand(8, 4), torch.full((8,), 0.6), [torch.rand(8, noise_length(129)) * 2 - 1], 129)
    >>> grid.shape   # [8, 129, 129], values around [0, 1] (corners) plus the accumulated noise
"""

from __future__ import annotations

from typing import Sequence

import torch


def noise_length(side: int, levels: int | None = None) -> int:
    """Noise numbers used by the first `levels` levels (default all) of a side x side grid: one per new point."""
    n = (side - 1).bit_length() - 1
    m = 1 << (n if levels is None else min(levels, n))
    return (m + 1) ** 2 - 4


def diamond_square(corners: torch.Tensor, decay: torch.Tensor, noise: Sequence[torch.Tensor], side: int,
                   gain: float = 1.0) -> torch.Tensor:
    """Diamond-square grids [B, side, side], side = 2^n + 1, with the noise amplitudes times `gain`.

    Args: corners [B, 4] (top-left, top-right, bottom-left, bottom-right), decay [B] (roughness: larger is
        smoother), noise: tensors [B, *] in [-1, 1] whose lengths add up to noise_length(side), read as one sequence
        level by level: the centres, then the midpoints on the old grid's rows, then those between them, each plane
        row by row. So an affine map of every value, a x + c, is diamond_square(a corners + c, decay, noise, side,
        a gain).
    """
    b, n = corners.shape[0], (side - 1).bit_length() - 1
    if side != (1 << n) + 1 or sum(x.shape[-1] for x in noise) != noise_length(side):
        raise ValueError(f"diamond_square needs side = 2^n + 1 and noise_length(side) noise numbers per grid, got "
                         f"side {side} and {sum(x.shape[-1] for x in noise)} numbers")
    grid = corners.view(b, 2, 2)
    source, used = 0, 0
    for k in range(1, n + 1):
        m = 1 << (k - 1)  # squares per side before this level
        amp = (0.5 * gain * torch.exp(decay * (1.0 - k))).view(b, 1, 1)

        def take(rows: int, cols: int) -> torch.Tensor:
            nonlocal source, used
            if used + rows * cols > noise[source].shape[-1]:  # a level never straddles two tensors
                source, used = source + 1, 0
            part = noise[source][:, used : used + rows * cols].view(b, rows, cols)
            used += rows * cols
            return part

        # diamond: the squares' centres, mean of their 4 corners
        centre = grid[:, :-1, :-1] + grid[:, :-1, 1:]
        centre += grid[:, 1:, :-1]
        centre += grid[:, 1:, 1:]
        centre = torch.addcmul(centre.mul_(0.25), amp, take(m, m))
        # square, on the old rows: left/right old points, up/down centres (wrapping round the grid)
        vert = torch.empty(b, m + 1, m, device=grid.device, dtype=grid.dtype)
        torch.add(centre[:, :-1], centre[:, 1:], out=vert[:, 1:m])
        torch.add(centre[:, -1], centre[:, 0], out=vert[:, 0])
        vert[:, m] = vert[:, 0]
        across = vert.add_(grid[:, :, :-1]).add_(grid[:, :, 1:])
        across = torch.addcmul(across.mul_(0.25), amp, take(m + 1, m))
        # square, between the old rows: up/down old points, left/right centres (wrapping)
        horiz = torch.empty(b, m, m + 1, device=grid.device, dtype=grid.dtype)
        torch.add(centre[:, :, :-1], centre[:, :, 1:], out=horiz[:, :, 1:m])
        torch.add(centre[:, :, -1], centre[:, :, 0], out=horiz[:, :, 0])
        horiz[:, :, m] = horiz[:, :, 0]
        down = horiz.add_(grid[:, :-1]).add_(grid[:, 1:])
        down = torch.addcmul(down.mul_(0.25), amp, take(m, m + 1))
        new = torch.empty(b, 2 * m + 1, 2 * m + 1, device=grid.device, dtype=grid.dtype)
        new[:, ::2, ::2] = grid
        new[:, 1::2, 1::2] = centre
        new[:, ::2, 1::2] = across
        new[:, 1::2, ::2] = down
        grid = new
    return grid
