"""Contours: bundles of thin closed contours drawn line by line, after RCDB (Kataoka et al., CVPR 2022) and Visual
Atoms (Takashima et al., CVPR 2023), as their reference renderers draw them.

Both papers' renderers work on a 512-pixel canvas in absolute pixels. A category is one parameter set; each image
starts from an oval of V vertices at angles theta_k = 2 pi k / V, semi-axes (r0 ox, r0 oy), around a centre, and
draws L lines; before drawing line l every vertex moves outwards, along x by cos(theta_k) s and along y by
sin(theta_k) s', with fresh steps s, s' per line, per vertex and per axis:
    rcdb          s = c + w - 2 c p,  on a white canvas; per category: vertices ~ Exp(mean 100) kept in 3..200,
                  lines 1..200, noise coefficient c ~ U(0, 4), width w ~ U(0, 0.1); per image: start radius
                  r0 in 0..100, oval rates ox, oy ~ U(1, 2), centre 256 + U{-200, ..., 200} px on each axis.
    visual_atoms  s = c + w - c p + (sin(n1 theta_k) + sin(n2 theta_k)) / 2,  on a black canvas; per category:
                  vertices 200..1000, lines (orbits) 1..200, c ~ U(0, 4), w ~ U(0, 0.1), r0 in 10..60, ox, oy ~
                  U(1, 2), frequencies n1, n2 in 0..20 (n2 != n1 unless n1 = 0) (the published VisualAtom-1k
                  settings); per image: centre 256 + U{-256, ..., 256} px on each axis.
p is the reference's 1-D gradient noise read at an independent random point for every vertex, line and axis, i.e.
white noise (mean 0, std 0.32); we draw it as a uniform signed byte scaled to the same mean and spread (the steps
add up over the lines, so past the first few lines only the spread shows). So each vertex random-walks outwards
(rcdb: jagged lines whose bundle frays), and in visual_atoms the sinusoid accumulates line by line into petals and
flowers. Each line is drawn 1 canvas pixel wide in its own grey (uniform 0..255): rcdb dark to grey lines on
white, visual_atoms grey on black, so the images are grey (R = G = B).

An image of `size` pixels shows the 512-pixel canvas scaled by k = size / 512 (at 128 px, what the reference's
images give when box-averaged 4x4): lines k pixels wide, coordinates (x + 0.5) k. Above 512 px the lines stay
one pixel wide. The renderer, per image: vertex positions of a group of lines at once as [2, l, V+1] tensors
(the noise bytes summed over the lines once per image); every edge the canvas can see gets n = ceil(its
Chebyshev length) points, one per pixel step along its major axis (as a line-drawing algorithm lights one pixel
per column or row), each carrying edge length / n; one complex `index_add` sums per pixel the length of line
and length x (grey - background). A pixel holding D = k x length pixels' worth of line is covered
1 - (1 - D/m)^m (m = OVERLAP: lines partly fall on each other, as the reference's later lines paint over earlier
ones) in the lines' mean grey. Points outside the canvas land on a ring around it that is cut off. That tensor
code runs on GPUs; on the CPU the same points are drawn by one compiled call per batch (contour_raster.py, ~5x
faster: no per-operation overhead, no gathers, two threads), equal to the tensor path up to float rounding. (One
point per pixel step drops the sub-pixel spread of a 1-pixel line on the 4x finer canvas: the spectrum slope comes
out 0.04-0.09 below the reference rasteriser's on the same parameters.)

Variants `rings` and `wavy_rings` keep this family's look before version 2 (smooth coloured rings, centred; see
contour_rings.py).

Example:
    >>> gen = GENERATORS.create("contours", variant="rcdb", size=128)
    >>> images, labels = gen.generate_with_labels(range(16), seed=0)   # [16, 3, 128, 128], [16]
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Sequence

import torch

from synthsight.generators.base import Generator, image_rng
from synthsight.generators.contour_raster import splat_batch_cpu
from synthsight.generators.contour_rings import SmoothRings
from synthsight.registry import GENERATORS

CANVAS = 512  # side of the references' canvas, in whose pixels the geometry is defined
# The reference's noise sample p has std 0.32 (measured on 2M samples); p = NOISE_STEP (b + 1/2) for a uniform
# signed byte b has the same std (uniform on +-0.55).
NOISE_STEP = 0.3197 / math.sqrt((256**2 - 1) / 12)
# A pixel holding D pixels' worth of line shows coverage 1 - (1 - D/m)^m (D <= m): m = 1 lines never overlap
# (coverage min(D, 1)), m -> infinity lines fall at random (1 - exp(-D)). With m = 2.5 the mean and std of 64
# images per variant are within 0.007 of the reference's rasteriser (1-pixel lines on the 512 canvas, later ones
# drawn over earlier ones, box-averaged) on the same parameters (tests/test_contours.py draws it with PIL).
OVERLAP = 2.5  # (render computes the power as x^2 sqrt(x))
CHUNK = 32768  # edges drawn at a time (bounds the temporaries; 16k-128k all render at about the same speed)


@lru_cache(maxsize=None)
def _category(variant: str, category_seed: int, label: int) -> tuple[float, ...]:
    """(vertices, lines, noise c, width w, start radius, oval x, oval y, n1, n2) of one category; the last five
    are used by visual_atoms only (rcdb draws its start radius and oval per image)."""
    rng = image_rng(category_seed, label, f"contours/{variant}/category")
    u = torch.rand(10, generator=rng, dtype=torch.float64).tolist()
    lines = 1 + min(int(u[1] * 200), 199)
    noise, width = 4.0 * u[2], 0.1 * u[3]
    if variant == "rcdb":  # int(Exp(mean 100)) redrawn until it is in 3..200: Exp truncated to [3, 201)
        lo, hi = math.exp(-3 / 100), math.exp(-201 / 100)
        vertices = min(int(-100.0 * math.log(lo - u[0] * (lo - hi))), 200)
        return (vertices, lines, noise, width, 0, 1.0, 1.0, 0, 0)
    vertices = 200 + min(int(u[0] * 801), 800)
    n1 = min(int(u[4] * 21), 20)
    n2 = min(int(u[5] * 21), 20) if n1 == 0 else min(int(u[5] * 20), 19)
    n2 += int(n1 != 0 and n2 >= n1)  # any of 0..20 but n1
    return (vertices, lines, noise, width, 10 + min(int(u[6] * 51), 50), 1.0 + u[7], 1.0 + u[8], n1, n2)


@lru_cache(maxsize=1024)  # <= 12 kB each; a stream of 1000 categories keeps them all
def _vertex_terms(vertices: int, n1: int, n2: int) -> torch.Tensor:
    """cos theta, sin theta and (sin(n1 theta) + sin(n2 theta)) / 2 at the V vertices and again at vertex 0 (the
    polygon closed), [3, V+1] float32 on the CPU."""
    theta = torch.arange(vertices + 1, dtype=torch.float64) * (2.0 * math.pi / vertices)
    theta[-1] = 0.0
    wave = 0.5 * (torch.sin(n1 * theta) + torch.sin(n2 * theta))
    return torch.stack([torch.cos(theta), torch.sin(theta), wave]).float()


_COUNTING: dict[torch.device, torch.Tensor] = {}


def _counting(n: int, device: torch.device) -> torch.Tensor:
    """0, 1, ..., n-1 as float32 on `device` (exact below 2^24): a slice of one kept, grown as needed (making a
    fresh range every group of lines costs several percent of the rendering)."""
    have = _COUNTING.get(device)
    if have is None or have.numel() < n:
        size = max(n, 2 * (0 if have is None else have.numel()))
        have = _COUNTING[device] = torch.arange(size, device=device, dtype=torch.float32)
    return have[:n]


@GENERATORS.register("contours")
class Contours(Generator):
    """Contour bundles as RCDB and Visual Atoms draw them; see the module docstring.

    Args:
        variant: "rcdb" (default), "visual_atoms", or the smooth coloured rings of version 1: "rings",
            "wavy_rings".
        size: image side in pixels (the references' 512-pixel canvas scaled to it).
        num_classes: categories (contour parameter sets); labels are uniform in [0, num_classes).
        category_seed: which set of categories; the images' seed does not change them.
        noise_scale: rings and wavy_rings only: their relative radial displacement per unit of noise coefficient.
    """

    family = "contours"
    version = "2"  # 2: rcdb and visual_atoms draw as the reference code does; 1's look kept as rings, wavy_rings
    variants = ("rcdb", "visual_atoms", "rings", "wavy_rings")
    compiled_cpu = True  # on the CPU draw with contour_raster's compiled loop (False: the tensor path, as on GPUs)

    def __init__(
        self,
        variant: str | None = None,
        size: int = 128,
        num_classes: int = 1000,
        category_seed: int = 0,
        noise_scale: float = 0.2,
    ) -> None:
        super().__init__(variant, size)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an integer >= 1 (the number of categories), got {num_classes!r}")
        self.num_classes = num_classes
        self.category_seed = int(category_seed)
        self.noise_scale = float(noise_scale)
        self._rings = (SmoothRings(self.variant, size, num_classes, self.category_seed, noise_scale)
                       if self.variant in SmoothRings.variants else None)
        if self._rings is None and noise_scale != 0.2:
            raise ValueError(f"noise_scale applies to the rings and wavy_rings variants only; {self.variant} "
                             "draws its noise as the reference does: leave noise_scale at 0.2")

    def config(self) -> dict[str, Any]:
        return {**super().config(), "num_classes": self.num_classes, "category_seed": self.category_seed,
                "noise_scale": self.noise_scale}

    def category(self, label: int) -> dict[str, float]:
        """The parameters that define category `label` (a pure function of variant, category_seed, label)."""
        if not 0 <= label < self.num_classes:
            raise ValueError(f"label must be in [0, {self.num_classes}), got {label}")
        if self._rings is not None:
            return self._rings.category(label)
        keys = ("vertices", "lines", "noise", "width", "start_radius", "oval_x", "oval_y", "n1", "n2")
        values = _category(self.variant, self.category_seed, int(label))
        if self.variant == "rcdb":
            return dict(zip(keys[:4], values[:4]))
        return dict(zip(keys, values))

    # ------------------------------------------------------------------------------------------ parameters
    def sample_params(self, rng: torch.Generator) -> dict[str, torch.Tensor]:
        """label, vertices V, lines L [] int64; shape [7] float32 = (noise c, width w, start radius, oval x, oval y,
        centre x, centre y) in canvas pixels; waves [2] int64 = (n1, n2); grey [L] uint8 (one per line); noise
        [2, L, V] int8 (x and y: uniform signed bytes b, the noise p = NOISE_STEP (b + 1/2))."""
        if self._rings is not None:
            return self._rings.sample_params(rng)
        label = int(torch.randint(self.num_classes, (1,), generator=rng))
        vertices, lines, noise, width, r0, ox, oy, n1, n2 = _category(self.variant, self.category_seed, label)
        u = torch.rand(5, generator=rng, dtype=torch.float64).tolist()
        if self.variant == "rcdb":
            r0, ox, oy, spread = min(int(u[2] * 101), 100), 1.0 + u[3], 1.0 + u[4], 400
        else:
            spread = 512
        centre = [(CANVAS + min(int(v * (2 * spread + 1)), 2 * spread) - spread) / 2 for v in u[:2]]
        grey = torch.randint(256, (lines,), generator=rng, dtype=torch.uint8)
        count = 2 * lines * vertices  # a byte for x and one for y per line and vertex, 8 per random word
        words = torch.randint(-(1 << 63), (1 << 63) - 1, ((count + 7) // 8,), generator=rng, dtype=torch.int64)
        return {
            "label": torch.tensor(label, dtype=torch.int64),
            "vertices": torch.tensor(vertices, dtype=torch.int64),
            "lines": torch.tensor(lines, dtype=torch.int64),
            "shape": torch.tensor([noise, width, r0, ox, oy, *centre], dtype=torch.float32),
            "waves": torch.tensor([n1, n2], dtype=torch.int64),
            "grey": grey,
            "noise": words.view(torch.int8)[:count].view(2, lines, vertices),
        }

    # ------------------------------------------------------------------------------------------ rendering
    def render(self, params: Sequence[dict[str, torch.Tensor]], device: torch.device) -> torch.Tensor:
        """Tensor[B, 3, S, S] in [0, 1] (grey: the three channels equal), each image drawn on its own."""
        device = torch.device(device)
        if self._rings is not None:
            return self._rings.render(params, device)
        side, k = self.size + 2, self.size / CANVAS  # side: the canvas and a ring around it
        white = self.variant == "rcdb"
        sums = torch.zeros(len(params), side * side, dtype=torch.complex64, device=device)
        if device.type == "cpu" and self.compiled_cpu:
            counts = torch.stack([torch.stack([p["vertices"], p["lines"]]) for p in params])
            terms = [_vertex_terms(int(p["vertices"]), *p["waves"].tolist()) for p in params]
            splat_batch_cpu(sums, terms, [p["noise"] for p in params], [p["grey"] for p in params], counts,
                            torch.stack([p["shape"] for p in params]), k, NOISE_STEP, self.size, white)
        else:
            for p, image in zip(params, sums):
                self._splat(p, white, image)
        # line length per pixel, in pixels, -> pixels' worth of line (width k), and the mean of the lines'
        # grey - background; the part of the pixel they cover (see OVERLAP) takes that grey
        length, shade = torch.view_as_real(sums).view(-1, side, side, 2)[:, 1:-1, 1:-1].permute(3, 0, 1, 2).contiguous()
        mean = shade.div_(length.clamp(min=1e-6))
        free = length.mul_(-k / OVERLAP).add_(1.0).clamp_(min=0.0)  # (1 - D/m)^m = free^2 sqrt(free), m = 2.5
        grey = torch.addcmul(mean, mean, free.sqrt().mul_(free).mul_(free), value=-1.0).add_(float(white))
        grey = grey.clamp_(0.0, 1.0)
        return grey.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()

    def _render(self, params: Sequence[dict[str, torch.Tensor]], device: torch.device, per_image: bool) -> torch.Tensor:
        """The rings' two rendering paths (per image on CPU, the whole batch elsewhere); rcdb and visual_atoms have
        one path."""
        if self._rings is not None:
            return self._rings._render(params, torch.device(device), per_image)
        return self.render(params, device)

    def _splat(self, p: dict[str, torch.Tensor], white: bool, canvas: torch.Tensor) -> None:
        """Add one image's line length per pixel + i x length x (grey - background) per pixel to `canvas` (complex
        [(S+2)^2]: the canvas with its ring). Lines are drawn a group at a time (CHUNK edges)."""
        size, k, half, device = self.size, self.size / CANVAS, self.size / 2.0, canvas.device
        lines, vertices = int(p["lines"]), int(p["vertices"])
        c, w, r0, ox, oy, cx, cy = p["shape"].tolist()
        n1, n2 = p["waves"].tolist()
        terms = _vertex_terms(vertices, n1, n2).to(device)
        trig, wave = terms[:2].unsqueeze(1), terms[2]  # [2 (cos, sin), 1, V+1], [V+1]
        # vertex positions in pixels from the canvas centre, [2 (x, y), L, V+1] (vertex V closes the polygon): the
        # start oval, plus l+1 mean steps, plus amp x the noise bytes summed over lines 0..l
        amp = -(2.0 if white else 1.0) * c * k * NOISE_STEP
        centre = torch.tensor([(cx + 0.5) * k - half, (cy + 0.5) * k - half], device=device).view(2, 1, 1)
        start = torch.addcmul(centre, trig, torch.tensor([r0 * ox * k, r0 * oy * k], device=device).view(2, 1, 1))
        mean = trig * wave.mul(k).add_((c + w) * k + 0.5 * amp)  # the bytes' mean, -1/2, moved into the mean step
        noise = trig[..., :vertices] * amp
        summed = p["noise"].to(device).cumsum(1, dtype=torch.int16)  # [2, L, V]; |sum| <= 200 x 128
        count = torch.arange(1, lines + 1, device=device, dtype=torch.float32).view(1, -1, 1)
        grey = p["grey"].to(device).float().div_(255.0).sub_(float(white))
        group = max(1, CHUNK // vertices)
        for first in range(0, lines, group):
            part = slice(first, first + group)
            pos = torch.addcmul(start, count[:, part], mean)
            pos[..., :vertices].addcmul_(summed[:, part], noise)
            pos[..., vertices] = pos[..., 0]
            self._draw(canvas, pos, grey[part])

    def _draw(self, canvas: torch.Tensor, pos: torch.Tensor, grey: torch.Tensor) -> None:
        """Add to `canvas` the lines through vertices `pos` ([2 (x, y), l, V+1], pixels from the canvas centre;
        vertex V closes each polygon) in their greys minus the background ([l])."""
        size, side, half = self.size, self.size + 2, self.size / 2.0
        lines, vertices, device = pos.shape[1], pos.shape[2] - 1, pos.device
        step = pos[..., 1:] - pos[..., :-1]  # [2, l, V] edges
        length = torch.maximum(step[0].abs(), step[1].abs())  # Chebyshev length: pixel steps along the major axis
        # Edges the canvas cannot see get length 0. A point t of the way along an edge is within t length of its
        # start and (1 - t) length of its end (Chebyshev), so its distance from the canvas centre is at least
        # (r0 + r1 - length) / 2 for end distances r0, r1: past half a side, the edge is all outside. Done by
        # arithmetic (masking is slow on CPU): times 1 where the margin is > 0, else 0.
        reach = torch.maximum(pos[0].abs(), pos[1].abs())
        margin = torch.sub(length, reach[:, 1:]).sub_(reach[:, :-1]).add_(float(size))
        length.mul_(margin.sign_().clamp_(min=0.0))
        n = length.ceil()  # points per edge, one per pixel step (0: not drawn)
        ends = n.view(-1).cumsum(0)  # float sums of integers: exact below 2^24
        total = int(ends[-1])
        if total == 0:
            return
        inv = n.clamp(min=1.0).reciprocal_()
        # point j of the group (of edge e, starting at point ends_e - n_e) sits at a + j s, half a step into its
        # pixel step: a = vertex + s (1/2 - ends_e + n_e) + the canvas corner (1, 1); s = edge / n
        rows = torch.empty(2, 2, lines, vertices, device=device)  # (a, s) x (x, y)
        torch.mul(step, inv, out=rows[1])
        offset = torch.sub(n, ends.view(lines, vertices)).add_(0.5)
        torch.addcmul(pos[..., :-1], rows[1], offset, out=rows[0]).add_(half + 1.0)
        # per point: its length of line, and length x (grey - background), as one complex number
        ink = torch.empty(lines, vertices, 2, device=device)
        torch.mul(length, inv, out=ink[..., 0])
        torch.mul(ink[..., 0], grey.view(-1, 1), out=ink[..., 1])
        # the edge of each point: the number of edge ends at or before it
        marks = torch.zeros(total + 1, dtype=torch.int32, device=device)
        ends = ends.to(torch.int32)
        marks.index_add_(0, ends, torch.ones_like(ends))
        owner = marks[:total].cumsum(0, dtype=torch.int32)
        a, s = rows.view(4, -1).index_select(1, owner).view(2, 2, total)  # (index_select is slow on dim 2)
        j = _counting(total, device)
        xy = torch.addcmul(a, s, j).clamp_(0.0, side - 1.0).to(torch.int32)  # [2, points] pixel columns, rows
        canvas.index_add_(0, xy[1].mul_(side).add_(xy[0]), torch.view_as_complex(ink).view(-1).index_select(0, owner))
