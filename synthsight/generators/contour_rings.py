"""Smooth contour rings: the `rings` and `wavy_rings` variants of the contours family (its defaults before version 2).

Centred bundles of evenly spaced, smooth closed contours in one colour per image over a dark background: RCDB's
category ranges (Kataoka et al., CVPR 2022) read as radial steps, with smooth (Perlin) displacements summed line by
line, and for `wavy_rings` Visual Atoms' two sinusoids (Takashima et al., CVPR 2023) as a fixed relative ripple.
They are not what the papers' reference code draws (see contours.py for that); kept as a colourful, smooth variant.

Per category (each category is one set of contour parameters; the class in params["label"]):
    rings         vertices ~ Exp(mean 100) clipped to 3..200, lines 1..200, Perlin coefficient
                  c ~ U(0, 4), width U(0, 0.1), start radius U(0, 100) / 512 of the side, Perlin cells around the
                  contour 2..12. Line l is the polygon at radius start + l * width (width read as the radial step
                  between lines, in fractions of the side; lines that would start beyond 0.75 of the side are not
                  drawn), whose vertices each line moves further radially by Perlin noise: line l's displacement is
                  the sum of the noise increments of lines 0..l, so the bundle grows wavier outwards.
    wavy_rings    as rings, plus two sinusoids of integer frequencies n1, n2 in 0..20 (amplitude U(0.03, 0.15) of
                  the radius) in the radial displacement; vertices 200..1000, orbits (lines) 1..200.

A category's parameters are a pure function of (variant, `category_seed`, label), cached; the label and the
instance variation (the noise itself, rotation, centre, a scale of 0.85-1.15, sinusoid phases, colours, opacity)
come from the image's own generator. Displacements are relative: the radius at a vertex is
rho_l (1 + sinusoids + noise), with the noise at most noise_scale * c / 2 <= 0.4 in size, so radii stay positive.

Our own 1-D gradient (Perlin) noise, periodic around the contour: `cells` lattice points with gradients g_i, and at
position u in cell i with fraction f, n(u) = g_i f (1 - fade(f)) + g_{i+1} (f - 1) fade(f), fade(f) = 6f^5 - 15f^4
+ 10f^3 (|n| <= 1/2 for |g| <= 1). Gradients are drawn for a lattice row every 16 lines and interpolated (with the
same fade) between rows, so the increments change smoothly from line to line; since the noise is linear in its
gradients, the summed noise of lines 0..l is the noise of the summed gradients: one cumulative sum over a
[lines, cells] table, divided by the number of lines.

Renderer: vertex terms (angle, sinusoid, Perlin cell and weights) are computed once per image for its V vertices,
vertex positions for all L lines at once as [L, V] tensors (two gathers of the cumulative gradients per vertex),
then S points per edge by linear interpolation ([L, V, S], S from an estimate of the outer line's length so that
points are ~0.75 px apart). Each point carries the length of polyline it stands for, and one weighted `bincount`
per image sums them per pixel: a pixel's opacity is the length of line inside it (times a gain), which anti-aliases
the 1-pixel lines. Points outside the canvas land on a ring around it that is cut off. Line colour over a dark
background. On CPU each image is done on its own (no padding); on other devices the batch at once, padded, with
samples gathered by flat index.

Example:
    >>> gen = GENERATORS.create("contours", variant="rings", size=128)
    >>> images, labels = gen.generate_with_labels(range(16), seed=0)   # [16, 3, 128, 128], [16]
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Sequence

import torch

from synthsight.generators.base import image_rng

MAX_LINES = 200
MAX_CELLS = 12
LINE_CELL = 16  # lines between two rows of the noise lattice
SPACING = 0.75  # target distance between splatted points, in pixels
REACH = 0.75  # lines with a larger radius (fraction of the side) are not drawn


@lru_cache(maxsize=None)
def _category(variant: str, category_seed: int, label: int) -> tuple[float, ...]:
    """(vertices, lines, noise, width, start radius, cells, n1, n2, sinusoid amplitude) of one category."""
    rng = image_rng(category_seed, label, f"contours/{variant}/category")
    u = torch.rand(9, generator=rng, dtype=torch.float64).tolist()
    if variant == "rings":
        vertices = min(max(round(-100.0 * math.log1p(-u[0])), 3), 200)  # Exp(mean 100), clipped
        n1 = n2 = 0
        amplitude = 0.0
    else:
        vertices = 200 + min(int(u[0] * 801), 800)
        n1, n2 = min(int(u[6] * 21), 20), min(int(u[7] * 21), 20)
        amplitude = 0.03 + 0.12 * u[8]
    lines = 1 + min(int(u[1] * 200), 199)
    cells = 2 + min(int(u[5] * 11), 10)
    return (vertices, lines, 4.0 * u[2], 0.1 * u[3], 100.0 / 512.0 * u[4], cells, n1, n2, amplitude)


def _fade(f: torch.Tensor) -> torch.Tensor:
    return f * f * f * (f * (f * 6.0 - 15.0) + 10.0)


class SmoothRings:
    """The renderer of the `rings` and `wavy_rings` variants (see the module docstring); the `Contours` generator
    holds one and hands it these variants' parameters and batches.

    Args:
        variant: "rings" or "wavy_rings".
        size: image side in pixels.
        num_classes: categories (contour parameter sets); labels are uniform in [0, num_classes).
        category_seed: which set of categories; the images' seed does not change them.
        noise_scale: relative radial displacement per unit of the Perlin coefficient, at most (0.2: the largest
            coefficient, 4, moves the outermost line by up to 40% of its radius).
    """

    variants = ("rings", "wavy_rings")

    def __init__(self, variant: str, size: int, num_classes: int, category_seed: int, noise_scale: float) -> None:
        if not 0.0 <= noise_scale <= 0.2:
            raise ValueError(f"noise_scale must be in [0, 0.2] (radii must stay positive), got {noise_scale}")
        self.variant, self.size = variant, size
        self.num_classes, self.category_seed, self.noise_scale = num_classes, category_seed, float(noise_scale)

    def category(self, label: int) -> dict[str, float]:
        """The parameters that define category `label` (a pure function of variant, category_seed, label)."""
        keys = ("vertices", "lines", "noise", "width", "start_radius", "cells", "n1", "n2", "amplitude")
        return dict(zip(keys, _category(self.variant, self.category_seed, int(label))))

    # ------------------------------------------------------------------------------------------ parameters
    def sample_params(self, rng: torch.Generator) -> dict[str, torch.Tensor]:
        """label, vertices, lines (drawn), cells, subdivisions (points per edge) [] int64; geometry [11] = (start
        radius, radial step, noise amplitude, sinusoid amplitude, n1, n2, phase 1, phase 2, rotation, centre x,
        centre y) in fractions of the side / radians; knots [14, 12] (Perlin gradients of the lattice rows, one
        every 16 lines; zero past the rows and cells used); colours [2, 3] (line, background); gain [] (opacity
        per pixel of line length)."""
        label = int(torch.randint(self.num_classes, (1,), generator=rng))
        vertices, lines, noise, width, start, cells, n1, n2, amplitude = _category(
            self.variant, self.category_seed, label)
        u = torch.rand(14, generator=rng).tolist()
        scale = 0.85 + 0.3 * u[0]
        start, step = max(start, 0.015) * scale, width * scale  # the innermost line at least a pixel around
        # lines whose radius would start beyond REACH of the side cannot reach the canvas: not drawn
        lines = max(1, min(lines, 1 + int((REACH - start) / max(step, 1e-9))))
        amp = noise * self.noise_scale
        knots = torch.zeros(MAX_LINES // LINE_CELL + 2, MAX_CELLS)
        knots[: lines // LINE_CELL + 2, :cells] = torch.rand(lines // LINE_CELL + 2, cells, generator=rng) * 2 - 1
        # points per edge: the outer line's length / spacing. Its radius varies by rho (amplitude (n1 cos + n2 cos)
        # / 2 + noise') per radian, noise' <= amp * cells * 0.3; about half of that on average along the line.
        outer = start + (lines - 1) * step
        ripple = math.hypot(1.0, 0.5 * (amplitude * max(n1, n2) + 0.3 * amp * cells))
        length = 2.0 * math.pi * max(outer, 0.01) * (1.0 + amplitude + 0.5 * amp) * ripple * self.size
        subdivisions = max(1, math.ceil(length / SPACING / vertices))
        colour = torch.tensor(u[5:8]) + 0.05
        colour = colour / colour.max() * (0.75 + 0.25 * u[8])
        back = torch.tensor(u[9:12]) * 0.12
        geometry = [start, step, amp, amplitude, float(n1), float(n2), 2 * math.pi * u[1], 2 * math.pi * u[2],
                    2 * math.pi * u[3], 0.5 + 0.08 * (u[4] - 0.5), 0.5 + 0.08 * (u[13] - 0.5)]
        return {
            "label": torch.tensor(label, dtype=torch.int64),
            "vertices": torch.tensor(vertices, dtype=torch.int64),
            "lines": torch.tensor(lines, dtype=torch.int64),
            "cells": torch.tensor(cells, dtype=torch.int64),
            "subdivisions": torch.tensor(subdivisions, dtype=torch.int64),
            "geometry": torch.tensor(geometry, dtype=torch.float32),
            "knots": knots,
            "colours": torch.stack([colour, back]),
            "gain": torch.tensor(0.6 + 0.6 * u[12]),
        }

    # ------------------------------------------------------------------------------------------ rendering
    def render(self, params: Sequence[dict[str, torch.Tensor]], device: torch.device) -> torch.Tensor:
        """Tensor[B, 3, S, S] in [0, 1]. On CPU the points of each image are made and splatted separately (no
        padding to the batch's largest image); elsewhere the whole batch at once."""
        device = torch.device(device)
        return self._render(params, device, per_image=device.type == "cpu")

    def _render(self, params: Sequence[dict[str, torch.Tensor]], device: torch.device, per_image: bool) -> torch.Tensor:
        def stack(key: str) -> torch.Tensor:
            return torch.stack([p[key] for p in params]).to(device)

        b, size = len(params), self.size
        side = size + 2  # the canvas plus a ring that collects the points outside
        lines, vertices, subdiv, cells = stack("lines"), stack("vertices"), stack("subdivisions"), stack("cells")
        geometry = stack("geometry")
        rows = 1 + int(cells.max())
        radial, cos, sin, following = self._vertex_terms(geometry, cells, vertices, int(vertices.max()), rows)
        coef = self._coefficients(geometry, stack("knots"), lines)[..., :rows]  # [B, 200, rows]
        centre = geometry[:, 9:11] * float(size) + 1.0  # pixels, past the ring
        coverage = torch.empty(b, side * side, device=device)
        if per_image:
            for i, (n, v, s, c) in enumerate(zip(lines.tolist(), vertices.tolist(), subdiv.tolist(),
                                                 cells.tolist())):
                # fresh (aligned, contiguous) operands of the image's own shapes: the same matrix product
                # whatever the batch
                radius = coef[i, :n, : c + 1].clone() @ radial[i, : c + 1, :v].contiguous()  # [L, V]
                x = torch.addcmul(centre[i, 0], radius, cos[i, :v])
                y = torch.addcmul(centre[i, 1], radius, sin[i, :v])
                dx = x.index_select(1, following[i, :v]).sub_(x)  # edge to the next vertex
                dy = y.index_select(1, following[i, :v]).sub_(y)
                weight = torch.hypot(dx, dy).div_(s)  # each point stands for 1/S of its edge
                if s > 1:  # S points per edge, [L, S, V] (with one, x + 0 dx = x)
                    t = (torch.arange(s, device=device, dtype=torch.float32) / s).view(1, s, 1)
                    x = torch.addcmul(x.unsqueeze(1), dx.unsqueeze(1), t)
                    y = torch.addcmul(y.unsqueeze(1), dy.unsqueeze(1), t)
                    weight = weight.unsqueeze(1).expand(-1, s, -1)
                coverage[i] = self._splat(x, y, weight, side)
        else:  # the batch at once, padded to its largest image, in slices of at most ~16M points
            step = max(1, (1 << 24) // (MAX_LINES * int((vertices * subdiv).max())))
            for first in range(0, b, step):
                part = slice(first, first + step)
                coverage[part] = self._coverage(coef[part], radial[part], cos[part], sin[part], following[part],
                                                centre[part], lines[part], vertices[part], subdiv[part], side)
        return self._shade(coverage.view(b, side, side), stack("colours"), stack("gain"))

    def _coverage(self, coef: torch.Tensor, radial: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                  following: torch.Tensor, centre: torch.Tensor, lines: torch.Tensor, vertices: torch.Tensor,
                  subdiv: torch.Tensor, side: int) -> torch.Tensor:
        """The whole-batch path: splatted line length per pixel of the canvas with its ring, [B, side^2]. The
        samples of an image are gathered by flat index m = s V + k (point s of edge k), padded to the batch's
        largest image and masked, in the per-image path's order."""
        b, device = coef.shape[0], coef.device
        lmax, mmax = int(lines.max()), int((vertices * subdiv).max())
        radius = torch.bmm(coef[:, :lmax], radial)  # [B, Lmax, Vmax]
        x = torch.addcmul(centre[:, 0].view(b, 1, 1), radius, cos.unsqueeze(1))
        y = torch.addcmul(centre[:, 1].view(b, 1, 1), radius, sin.unsqueeze(1))
        nxt = following.unsqueeze(1).expand(b, lmax, -1)
        dx, dy = x.gather(2, nxt).sub_(x), y.gather(2, nxt).sub_(y)
        weight = torch.hypot(dx, dy).div_(subdiv.view(b, 1, 1).float())
        m = torch.arange(mmax, device=device).view(1, -1)
        v = vertices.view(b, 1)
        t = torch.div(m, v, rounding_mode="floor").float() / subdiv.view(b, 1).float()
        edge = torch.remainder(m, v).unsqueeze(1).expand(b, lmax, mmax)
        px = torch.addcmul(x.gather(2, edge), dx.gather(2, edge), t.unsqueeze(1))
        py = torch.addcmul(y.gather(2, edge), dy.gather(2, edge), t.unsqueeze(1))
        valid = (torch.arange(lmax, device=device).view(1, -1, 1) < lines.view(b, 1, 1)) & (
            m < v * subdiv.view(b, 1)).unsqueeze(1)
        return self._splat(px, py, weight.gather(2, edge) * valid, side, b).view(b, -1)

    def _coefficients(self, geometry: torch.Tensor, knots: torch.Tensor, lines: torch.Tensor) -> torch.Tensor:
        """Per line, the coefficients of its vertex radii in the basis of `_vertex_terms`, [B, 200, 13], in pixels:
        (rho_l, rho_l * noise amplitude * G_l), rho_l = start + l * step, G_l = (sum over lines l' <= l of the
        Perlin gradients of line l', faded between the knot rows around it) / lines."""
        dev = geometry.device
        steps = torch.arange(MAX_LINES, device=dev, dtype=torch.float32)
        rho = torch.addcmul(geometry[:, :1], geometry[:, 1:2], steps) * float(self.size)  # [B, 200]
        pos = steps / LINE_CELL
        row = pos.floor().long()
        f = _fade(pos - row.float()).view(1, -1, 1)
        below, above = knots.index_select(1, row), knots.index_select(1, row + 1)
        gradients = torch.cumsum(torch.addcmul(below, f, above - below), 1) / lines.view(-1, 1, 1).float()
        return torch.cat([rho.unsqueeze(-1), (rho * geometry[:, 2:3]).unsqueeze(-1) * gradients], -1)

    def _vertex_terms(self, geometry: torch.Tensor, cells: torch.Tensor, vertices: torch.Tensor, vmax: int,
                      rows: int) -> tuple[torch.Tensor, ...]:
        """For vertex k of each image: the radial basis [B, rows, Vmax] (row 0: 1 + sinusoids; rows 1..cells: the
        Perlin weights of the vertex's two lattice cells, zero elsewhere), cos and sin of its angle [B, Vmax] and
        the index of the next vertex [B, Vmax]. Vertices past an image's count repeat its last one."""
        b, dev = geometry.shape[0], geometry.device
        v = vertices.view(b, 1)
        k = torch.minimum(torch.arange(vmax, device=dev).view(1, -1), v - 1)
        frac = k.float() / v.float()  # position around the contour, [0, 1)
        alpha = 2.0 * math.pi * frac
        amplitude, n1, n2, ph1, ph2, rot = (geometry[:, i].view(b, 1) for i in range(3, 9))
        wave = 0.5 * (torch.sin(n1 * alpha + ph1) + torch.sin(n2 * alpha + ph2))
        theta = alpha + rot
        c = cells.view(b, 1)
        u = frac * c.float()
        cell = torch.minimum(u.floor().long(), c - 1)
        f = u - cell.float()
        fade = _fade(f)
        radial = torch.zeros(b, rows, vmax, device=dev)
        radial[:, 0] = torch.addcmul(torch.ones_like(wave), wave, amplitude)
        radial[:, 1:].scatter_(1, cell.unsqueeze(1), (f * (1.0 - fade)).unsqueeze(1))
        radial[:, 1:].scatter_add_(1, torch.remainder(cell + 1, c).unsqueeze(1), ((f - 1.0) * fade).unsqueeze(1))
        return radial, torch.cos(theta), torch.sin(theta), torch.remainder(k + 1, v)

    @staticmethod
    def _splat(px: torch.Tensor, py: torch.Tensor, weight: torch.Tensor, side: int, images: int = 1) -> torch.Tensor:
        """Summed weights of points px, py (pixels; [images, ...] when images > 1) on the canvas with its ring,
        [images * side^2], by one `bincount`; points outside land on the ring."""
        index = py.clamp_(0.0, side - 1.0).to(torch.int32).mul_(side)
        index += px.clamp_(0.0, side - 1.0).to(torch.int32)
        if images > 1:
            index += (torch.arange(images, device=index.device, dtype=torch.int32) * (side * side)).view(
                (images,) + (1,) * (index.dim() - 1))
        return torch.bincount(index.view(-1), weight.reshape(-1), minlength=images * side * side)

    def _shade(self, coverage: torch.Tensor, colours: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, S, S]: line colour over the background with opacity = length of line in the pixel x gain
        (a pixel that a line only clips is partly covered: anti-aliasing)."""
        b, size = coverage.shape[0], self.size
        alpha = (coverage[:, 1:-1, 1:-1] * gain.view(b, 1, 1)).clamp_(0.0, 1.0).unsqueeze(1)
        line, back = colours[:, 0].view(b, 3, 1, 1), colours[:, 1].view(b, 3, 1, 1)
        return torch.addcmul(back, alpha, line - back).clamp_(0.0, 1.0)
