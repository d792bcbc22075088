"""The contours renderer's CPU path: one compiled loop per image (numba) doing what `Contours._splat` and
`Contours._draw` do with tensor operations (see contours.py for the geometry and the ink model).

Per line it moves the vertices (start oval + (l+1) mean steps + amp x the noise bytes summed so far), then walks
every edge the canvas can see with one point per pixel step along its major axis, each point carrying the edge's
Chebyshev length / n into its pixel: line length in the real part, length x (grey - background) in the imaginary
part. Same points, same pixels as the tensor path, up to float rounding (a point within ~1e-5 pixel of a pixel
border can land in the neighbour); tests/test_contours.py holds the two paths together. The tensor path spends
most of its time on the ~130 small tensor operations per image and on gathering per-point edge data; this loop
needs neither, and runs 3-5x faster on one thread (benchmarks/generators.py).

The function compiles on first use (~2 s; cached on disk afterwards, so later processes load it in ~0.1 s).
"""

from __future__ import annotations

import math

import numpy as np
import torch

_KERNEL = None


def _compile():
    import numba  # deferred: importing numba costs ~0.3 s, and only CPU contour rendering needs it

    @numba.njit(cache=True, nogil=True, fastmath=False)
    def splat(out, trig, noise, grey, start, mean, amp, size, white):  # pragma: no cover - compiled
        side = size + 2
        half = size / 2.0
        lines, vertices = noise.shape[1], noise.shape[2]
        run_x = np.zeros(vertices, np.int32)
        run_y = np.zeros(vertices, np.int32)
        px = np.empty(vertices + 1, np.float32)
        py = np.empty(vertices + 1, np.float32)
        reach = np.empty(vertices + 1, np.float32)
        for line in range(lines):
            count = np.float32(line + 1)
            for v in range(vertices):
                run_x[v] += noise[0, line, v]
                run_y[v] += noise[1, line, v]
                x = start[0, v] + count * mean[0, v] + np.float32(run_x[v]) * (trig[0, v] * amp)
                y = start[1, v] + count * mean[1, v] + np.float32(run_y[v]) * (trig[1, v] * amp)
                px[v] = x
                py[v] = y
                reach[v] = max(abs(x), abs(y))
            px[vertices] = px[0]
            py[vertices] = py[0]
            reach[vertices] = reach[0]
            shade = np.float32(grey[line]) / np.float32(255.0) - np.float32(white)
            for v in range(vertices):
                sx = px[v + 1] - px[v]
                sy = py[v + 1] - py[v]
                length = max(abs(sx), abs(sy))
                if length - reach[v + 1] - reach[v] + size <= 0.0:  # all of the edge outside the canvas
                    continue
                n = math.ceil(length)
                if n == 0:
                    continue
                inv = np.float32(1.0) / np.float32(n)
                sx *= inv
                sy *= inv
                ink = length * inv
                ink_shade = ink * shade
                x0 = px[v] + np.float32(0.5) * sx + np.float32(half + 1.0)
                y0 = py[v] + np.float32(0.5) * sy + np.float32(half + 1.0)
                for i in range(n):
                    x = min(max(x0 + np.float32(i) * sx, np.float32(0.0)), np.float32(side - 1))
                    y = min(max(y0 + np.float32(i) * sy, np.float32(0.0)), np.float32(side - 1))
                    pixel = int(y) * side + int(x)
                    out[pixel, 0] += ink
                    out[pixel, 1] += ink_shade

    return splat


def splat_cpu(canvas: torch.Tensor, trig: torch.Tensor, noise: torch.Tensor, grey: torch.Tensor, start: torch.Tensor,
              mean: torch.Tensor, amp: float, size: int, white: bool) -> None:
    """Add one image's lines to `canvas` (complex64 [(size+2)^2] on the CPU, contiguous).

    trig: [2, V] cos, sin of the vertex angles; noise: int8 [2, L, V]; grey: uint8 [L]; start, mean: [2, V]
    (pixels from the canvas centre: the start oval, the mean step per line, all float32 and contiguous); amp:
    pixels per noise byte along the vertex direction; white: the background is white (grey is stored minus it)."""
    global _KERNEL
    if _KERNEL is None:
        _KERNEL = _compile()
    out = torch.view_as_real(canvas).numpy()
    _KERNEL(out, trig.numpy(), noise.numpy(), grey.numpy(), start.numpy(), mean.numpy(), np.float32(amp),
            int(size), bool(white))
