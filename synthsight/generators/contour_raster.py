"""The contours renderer's CPU path: one compiled loop (numba) over a batch of images doing what `Contours._splat`
and `Contours._draw` do with tensor operations (see contours.py for the geometry and the ink model).

Per image it places the start oval and the mean step per line (the same float32 arithmetic as the tensor path);
per line it moves the vertices (start oval + (l+1) mean steps + amp x the noise bytes summed so far), then walks
every edge the canvas can see with one point per pixel step along its major axis, each point carrying the edge's
Chebyshev length / n into its pixel: line length in the real part, length x (grey - background) in the imaginary
part. Same points, same pixels as the tensor path, up to float rounding (a point within ~1e-5 pixel of a pixel
border can land in the neighbour); tests/test_contours.py holds the two paths together. The tensor path spends
most of its time on the ~130 small tensor operations per image and on gathering per-point edge data; this loop
needs neither. A batch is one call (no Python work per image), split over threads when torch has more than one
(the loop releases the GIL).

The function compiles on first use (~2 s; cached on disk afterwards, so later processes load it in ~0.1 s).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

_KERNEL = None
_POOL: ThreadPoolExecutor | None = None  # the second thread's; a forked child (a data-loader worker) makes its own


def _forget_pool() -> None:
    global _POOL
    _POOL = None


os.register_at_fork(after_in_child=_forget_pool)


def _compile():
    import numba  # deferred: importing numba costs ~0.3 s, and only CPU contour rendering needs it

    @numba.njit(cache=True, nogil=True, fastmath=False)
    def splat(out, trig, noise, grey, start, mean, amp, size, white):  # pragma: no cover - compiled
        """One image: out [(size+2)^2, 2] float32, trig [2, V+1], noise int8 [2, L, V], grey uint8 [L], start and
        mean [2, V+1] (only the first V used), amp float32."""
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

    @numba.njit(cache=True, nogil=True, fastmath=False)
    def splat_batch(out, first, every, terms, term_at, noise, noise_at, grey, grey_at, counts, shape, k, noise_step,
                    size, white):  # pragma: no cover - compiled
        """Images first, first + every, ... of a batch into out [B, (size+2)^2, 2]: per image its vertex terms (cos,
        sin, wave; [3, V+1] flat at term_at), noise bytes [2, L, V] at noise_at, greys [L] at grey_at, counts [B, 2] =
        (V, L) and shape [B, 7] = (c, w, r0, ox, oy, cx, cy) in canvas pixels."""
        half = size / 2.0
        for b in range(first, out.shape[0], every):
            vertices, lines = counts[b, 0], counts[b, 1]
            c, w, r0, ox, oy = (np.float64(shape[b, 0]), np.float64(shape[b, 1]), np.float64(shape[b, 2]),
                                np.float64(shape[b, 3]), np.float64(shape[b, 4]))
            cx, cy = np.float64(shape[b, 5]), np.float64(shape[b, 6])
            t = terms[term_at[b]: term_at[b] + 3 * (vertices + 1)].reshape(3, vertices + 1)
            # as the tensor path: amp in float64; the start oval and mean step in float32
            amp = -(2.0 if white else 1.0) * c * k * noise_step
            centre_x, centre_y = np.float32((cx + 0.5) * k - half), np.float32((cy + 0.5) * k - half)
            rx, ry = np.float32(r0 * ox * k), np.float32(r0 * oy * k)
            step = np.float32((c + w) * k + 0.5 * amp)
            kf = np.float32(k)
            start = np.empty((2, vertices + 1), np.float32)
            mean = np.empty((2, vertices + 1), np.float32)
            for v in range(vertices + 1):  # a fused multiply-add, as torch.addcmul computes it on the CPU
                start[0, v] = np.float32(np.float64(centre_x) + np.float64(t[0, v]) * np.float64(rx))
                start[1, v] = np.float32(np.float64(centre_y) + np.float64(t[1, v]) * np.float64(ry))
                m = t[2, v] * kf + step
                mean[0, v] = t[0, v] * m
                mean[1, v] = t[1, v] * m
            bytes_ = noise[noise_at[b]: noise_at[b] + 2 * lines * vertices].reshape(2, lines, vertices)
            splat(out[b], t[:2], bytes_, grey[grey_at[b]: grey_at[b] + lines], start, mean, np.float32(amp), size,
                  white)

    return splat_batch


def splat_batch_cpu(canvas: torch.Tensor, terms: list[torch.Tensor], noise: list[torch.Tensor],
                    grey: list[torch.Tensor], counts: torch.Tensor, shape: torch.Tensor, k: float, noise_step: float,
                    size: int, white: bool) -> None:
    """Add a batch's lines to `canvas` (complex64 [B, (size+2)^2] on the CPU, contiguous, zeroed).

    terms: per image float32 [3, V+1] (cos, sin of the vertex angles and the wave term, vertex 0 repeated at the
    end); noise: int8 [2, L, V]; grey: uint8 [L]; counts: int64 [B, 2] = (V, L); shape: float32 [B, 7] (see
    Contours.sample_params); k: image pixels per canvas pixel; white: the background is white."""
    global _KERNEL, _POOL
    if _KERNEL is None:
        _KERNEL = _compile()

    def flat(parts: list[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:  # numpy: no torch threads woken
        arrays = [p.numpy().reshape(-1) for p in parts]
        sizes = np.fromiter((a.size for a in arrays), np.int64, len(arrays))
        return np.concatenate(arrays), np.concatenate(([0], np.cumsum(sizes)[:-1]))

    args = (*flat(terms), *flat(noise), *flat(grey), counts.numpy(), shape.numpy(), float(k), float(noise_step),
            int(size), bool(white))
    out = torch.view_as_real(canvas).numpy()
    if min(torch.get_num_threads(), 2) < 2 or canvas.shape[0] < 8:
        _KERNEL(out, 0, 1, *args)
        return
    if _POOL is None:  # two threads, each drawing every other image (the images are independent)
        _POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="contours")
    other = _POOL.submit(_KERNEL, out, 1, 2, *args)
    _KERNEL(out, 0, 2, *args)
    other.result()
