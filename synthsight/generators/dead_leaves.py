"""Dead leaves family: random shapes stacked until they cover the whole canvas.

After Baradad et al. 2021 ("Learning to See by Looking at Noise"): radius r in [rmin, rmax] x image size with
density proportional to r^-alpha (alpha = 3: equal area per octave of scale, as in natural images; sampled by
inverse CDF), centre uniform over the canvas, colour uniform in RGB. Shapes are drawn front to back from the image's
own generator: each pixel shows the first shape that covers it, and shapes are added until no pixel is left
uncovered -- the same picture as painting back to front until no background shows.

Variants:
    mixed             circle, square, oriented square, rectangle, triangle, quadrilateral (equally likely)
    squares           axis-aligned squares only
    oriented_squares  squares at a random rotation
    textured          the mixed shapes, each region filled with a coloured 1/f-noise texture (from a bank of
                      `textures` spectrum images per image, at a random offset) blended with the shape's colour

Every polygon is inscribed in the circle of radius r: squares and rectangles have their corners on it, triangles
and quadrilaterals have corners at uniform random angles on it (always convex). Rectangles are axis-aligned with a
corner half-angle phi ~ U(15, 75) degrees.

Rendering (no per-pixel test of every shape): each shape is cut into one horizontal span per pixel row it touches
(a circle by its chord, a convex polygon by intersecting four half-planes), and the span [x0, x1] is written as a
range-minimum update of its shape index into a per-row sparse table: two `scatter_reduce(amin)` writes at level
k = floor(log2(x1 - x0 + 1)), at x0 and x1 - 2^k + 1. Pushing the levels down (log2(S) elementwise minima) leaves
in every pixel the smallest, i.e. front-most, index covering it. Cost: O(shapes x rows + S^2 log S) per image; all
in int32 / float32 tensor ops, so it runs on any device, and an image is bit-identical whatever batch it is in.
Only the first block of shapes goes through the span tables; the few pixels it leaves uncovered are then tested
directly (point in circle, then in polygon) against further blocks of shapes until each has found its shape.

Example:
    >>> gen = GENERATORS.create("dead_leaves", variant="mixed", size=128)
    >>> images = gen.generate(range(16), seed=0)             # Tensor[16, 3, 128, 128] in [0, 1]
    >>> labels = gen.label_map([gen.sample_params(image_rng(0, 3, gen.salt))], "cpu")  # front-most shape per pixel
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Sequence

import torch

from synthsight.generators.base import Generator
from synthsight.generators.spectrum import Spectrum
from synthsight.registry import GENERATORS

KINDS = ("circle", "square", "oriented_square", "rectangle", "triangle", "quadrilateral")
_CIRCLE, _SQUARE, _ORIENTED, _RECTANGLE, _TRIANGLE, _QUAD = range(6)
_UNCOVERED = torch.iinfo(torch.int32).max
_MAX_BLOCKS = 10_000  # safety stop for the "add shapes until covered" loop


@lru_cache(maxsize=32)
def _span_tables(size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """For span lengths 0..size: the offset of its span-table level, floor(log2 length) * S^2, and 2**level.

    Length 0 (an empty span) maps to a spare level past the real ones, with 2**level = 0, so that empty spans
    are written where nothing reads them instead of being filtered out.
    """
    levels = size.bit_length()
    level = torch.tensor([levels] + [n.bit_length() - 1 for n in range(1, size + 1)])
    pow2 = torch.tensor([0] + [1 << (n.bit_length() - 1) for n in range(1, size + 1)])
    return (level * size * size).to(device), pow2.to(device)


@GENERATORS.register("dead_leaves")
class DeadLeaves(Generator):
    """Occluding random shapes that cover the canvas; see the module docstring.

    Args:
        variant: "mixed" (default), "squares", "oriented_squares" or "textured".
        size: image side in pixels.
        rmin, rmax: radius range as a fraction of the image side (0.03 and 1.0 in the paper).
        alpha: exponent of the radius density r^-alpha (3.0: scale invariant).
        first_block: shapes drawn in sample_params and rasterised with span tables (default 8 x size, within
            [256, 4096]). Covering the last pixel (often near a corner, which a quarter as many shapes reach as an
            inner pixel) takes ~0.9k shapes at the median and up to ~2k at rmin = 0.03 (the paper: 700-2300), so
            at 128 px the default 1024 leaves ~10 of 16k pixels uncovered on average.
        next_block: shapes per further round (default first_block), drawn in render from the image's own generator
            (continuing from "rng_state") and tested only against the pixels still uncovered, until none is left.
        Neither block size changes an image of the flat variants (the generator's stream is the same either way);
        they only trade sampling and rasterising work against rounds of hole tests.
        textures: spectrum textures per image for the "textured" variant.
        blend: range of the weight of the shape's flat colour against its texture ("textured" only).
    """

    family = "dead_leaves"
    variants = ("mixed", "squares", "oriented_squares", "textured")

    def __init__(
        self,
        variant: str | None = None,
        size: int = 128,
        rmin: float = 0.03,
        rmax: float = 1.0,
        alpha: float = 3.0,
        first_block: int | None = None,
        next_block: int | None = None,
        textures: int = 4,
        blend: tuple[float, float] = (0.2, 0.6),
    ) -> None:
        super().__init__(variant, size)
        if not 0.0 < rmin < rmax:
            raise ValueError(f"need 0 < rmin < rmax (fractions of the image size), got rmin={rmin}, rmax={rmax}")
        first_block = min(max(8 * size, 256), 4096) if first_block is None else first_block
        next_block = first_block if next_block is None else next_block
        if first_block < 1 or next_block < 1 or textures < 1:
            raise ValueError(f"first_block, next_block and textures must be >= 1, got {first_block}, "
                             f"{next_block}, {textures}")
        if not 0.0 <= blend[0] <= blend[1] <= 1.0:
            raise ValueError(f"blend must be a range within [0, 1], got {blend}")
        self.rmin, self.rmax, self.alpha = float(rmin), float(rmax), float(alpha)
        self.first_block, self.next_block = int(first_block), int(next_block)
        self.textures, self.blend = int(textures), (float(blend[0]), float(blend[1]))
        self._texture_gen = Spectrum("color", size) if self.variant == "textured" else None

    def config(self) -> dict[str, Any]:
        cfg = {
            **super().config(),
            "rmin": self.rmin,
            "rmax": self.rmax,
            "alpha": self.alpha,
            "first_block": self.first_block,
            "next_block": self.next_block,
        }
        if self._texture_gen is not None:
            cfg.update(textures=self.textures, blend=list(self.blend), texture_config=self._texture_gen.config())
        return cfg

    # ---------------------------------------------------------------- parameters
    def _draw_shapes(self, rng: torch.Generator, n: int) -> dict[str, torch.Tensor]:
        """n shapes from `rng`: one [n, 11] uniform draw ([n, 15] if textured), split into named CPU tensors.

        center [n, 2] and radius [n] are fractions of the image side; colour [n, 3] in [0, 1]; kind [n] int64
        indexes KINDS; angle_u [n, 4] uniforms that `render` turns into corner angles for the shape's kind;
        texture [n] (bank slot), offset [n, 2] (texture shift, fraction of the side), blend [n] (weight of the
        flat colour) are used by the textured variant only.
        """
        u = torch.rand(n, 15 if self.variant == "textured" else 11, generator=rng)
        if self.alpha == 1.0:  # log-uniform
            radius = self.rmin * torch.exp(u[:, 2] * math.log(self.rmax / self.rmin))
        else:  # inverse CDF of r^-alpha on [rmin, rmax]
            e = 1.0 - self.alpha
            lo, hi = self.rmin**e, self.rmax**e
            radius = (u[:, 2] * (hi - lo) + lo).pow_(1.0 / e)
        if self.variant in ("mixed", "textured"):
            kind = (u[:, 6] * len(KINDS)).long().clamp_(max=len(KINDS) - 1)
        else:
            kind = torch.full((n,), _SQUARE if self.variant == "squares" else _ORIENTED, dtype=torch.int64)
        shapes = {"center": u[:, 0:2], "radius": radius, "colour": u[:, 3:6], "kind": kind, "angle_u": u[:, 7:11]}
        if self.variant == "textured":
            shapes["texture"] = (u[:, 11] * self.textures).long().clamp_(max=self.textures - 1)
            shapes["offset"] = u[:, 12:14]
            shapes["blend"] = u[:, 14] * (self.blend[1] - self.blend[0]) + self.blend[0]
        return shapes

    def sample_params(self, rng: torch.Generator) -> dict[str, torch.Tensor]:
        """The first block of shapes (see `_draw_shapes`), texture parameters for "textured" (prefixed
        "texture_", one row per bank slot, see Spectrum.sample_params), and "rng_state": the generator's state
        afterwards, from which `render` draws further shapes while some pixel is still uncovered."""
        params = self._draw_shapes(rng, self.first_block)
        if self._texture_gen is not None:
            bank = [self._texture_gen.sample_params(rng) for _ in range(self.textures)]
            for key in bank[0]:
                params[f"texture_{key}"] = torch.stack([b[key] for b in bank])
        params["rng_state"] = rng.get_state()
        return params

    # ---------------------------------------------------------------- rendering
    def render(self, params: Sequence[dict[str, torch.Tensor]], device: torch.device) -> torch.Tensor:
        """Tensor[B, 3, S, S] in [0, 1]: each pixel the colour (or texture) of the front-most shape covering it."""
        device = torch.device(device)
        return self._render(params, device, grouped=device.type == "cpu")

    def _render(self, params: Sequence[dict[str, torch.Tensor]], device: torch.device, grouped: bool) -> torch.Tensor:
        size = self.size
        out = torch.empty(len(params), 3, size, size, device=device)
        group = self._cpu_group() if grouped else len(params)
        for start in range(0, len(params), group):
            chunk = params[start : start + group]
            labels, shapes = self._cover(chunk, device)
            offsets = torch.tensor([0] + [s["radius"].numel() for s in shapes[:-1]]).cumsum(0)
            flat = {k: torch.cat([s[k] for s in shapes]).to(device) for k in shapes[0]}
            index = (labels + offsets.to(device, torch.int32).view(-1, 1, 1)).view(-1).long()
            colour = flat["colour"].t().contiguous().index_select(1, index)  # [3, C*S*S]
            if self.variant == "textured":
                colour = self._texture_colour(chunk, flat, index, colour, device, grouped)
            out[start : start + len(chunk)] = colour.view(3, len(chunk), size, size).permute(1, 0, 2, 3)
        return out

    def label_map(self, params: Sequence[dict[str, torch.Tensor]], device: str | torch.device = "cpu") -> torch.Tensor:
        """The index of the front-most shape at each pixel, Tensor[B, S, S] int32 (all >= 0: the canvas is covered;
        indices >= first_block come from shapes added later)."""
        return self._cover(params, torch.device(device))[0]

    def _cpu_group(self) -> int:
        # a few images per group keeps the sparse tables (levels x S^2 int32 each) near the cache
        return max(1, (1 << 16) // (self.size * self.size))

    def _cover(
        self, params: Sequence[dict[str, torch.Tensor]], device: torch.device
    ) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
        """Label maps Tensor[B, S, S] int32 of fully covered canvases, and the shapes each image used.

        The first block is rasterised with span tables. The pixels still uncovered ("holes", typically a few dozen
        after the first block) are then tested directly against further blocks drawn from each image's generator,
        block after block, until every hole has its front-most shape.
        """
        size = self.size
        keys = [k for k in params[0] if not k.startswith("texture_") and k != "rng_state"]
        shapes = [{k: p[k] for k in keys} for p in params]
        labels = self._rasterise(shapes, device)
        flat_labels = labels.view(-1)
        hole = (flat_labels == _UNCOVERED).nonzero().flatten()
        if hole.numel() == 0:
            return labels, shapes
        hole_image = hole // (size * size)
        pixel = hole - hole_image * (size * size)
        hx = (pixel % size).float() + 0.5
        hy = torch.div(pixel, size, rounding_mode="floor").float() + 0.5
        rngs: dict[int, torch.Generator] = {}
        for _ in range(_MAX_BLOCKS):
            images = torch.unique(hole_image).tolist()  # sorted
            slot_of = torch.full((len(params),), -1, dtype=torch.int64)
            slot_of[images] = torch.arange(len(images))
            block = []
            for i in images:  # continue each image's own generator from where sample_params left it
                if i not in rngs:
                    rngs[i] = torch.Generator()
                    rngs[i].set_state(params[i]["rng_state"])
                block.append(self._draw_shapes(rngs[i], self.next_block))
            first = self._first_cover(hx, hy, slot_of.to(device)[hole_image], block, device)
            found = first != _UNCOVERED
            count = torch.tensor([s["radius"].numel() for s in shapes], device=device, dtype=torch.int32)
            flat_labels[hole[found]] = first[found] + count[hole_image[found]]
            for i, extra in zip(images, block):
                shapes[i] = {k: torch.cat([shapes[i][k], extra[k]]) for k in keys}
            left = ~found
            if not bool(left.any()):
                return labels, shapes
            hole, hole_image, hx, hy = hole[left], hole_image[left], hx[left], hy[left]
        raise RuntimeError(f"dead leaves: canvas still not covered after {_MAX_BLOCKS} blocks of shapes; "
                           f"rmin={self.rmin} may be too small for size {self.size}")

    def _geometry(self, shapes: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Pixel-space geometry of a flat list of shapes: cx, cy, r [M]; polygon corners vx, vy [M, 4]."""
        s = float(self.size)
        cx, cy, r = shapes["center"][:, 0] * s, shapes["center"][:, 1] * s, shapes["radius"] * s
        vx, vy = self._corners(cx, cy, r, shapes["kind"], shapes["angle_u"])
        return {"cx": cx, "cy": cy, "r": r, "vx": vx, "vy": vy}

    def _first_cover(
        self,
        hx: torch.Tensor,
        hy: torch.Tensor,
        slot: torch.Tensor,
        block: Sequence[dict[str, torch.Tensor]],
        device: torch.device,
    ) -> torch.Tensor:
        """For hole pixels (centres hx, hy [H]; slot [H] = which entry of `block` holds their image's shapes):
        the index within that block of the first shape covering each hole, Tensor[H] int32, or _UNCOVERED."""
        n = self.next_block
        flat = {k: torch.cat([b[k] for b in block]).to(device) for k in ("center", "radius", "kind", "angle_u")}
        geo = self._geometry(flat)
        # Candidates: inside the circumscribed circle (exact for circles, a superset for inscribed polygons).
        cx = geo["cx"].view(-1, n).index_select(0, slot)
        cy = geo["cy"].view(-1, n).index_select(0, slot)
        r2 = (geo["r"] * geo["r"]).view(-1, n).index_select(0, slot)
        dx = hx.unsqueeze(1) - cx
        dy = hy.unsqueeze(1) - cy
        cand = (dx * dx + dy * dy <= r2).nonzero()  # [Q, 2]: (hole, shape in block)
        h, j = cand[:, 0], cand[:, 1]
        shape = slot[h] * n + j
        vx, vy = geo["vx"].index_select(0, shape), geo["vy"].index_select(0, shape)
        ex = torch.roll(vx, -1, dims=1) - vx
        ey = torch.roll(vy, -1, dims=1) - vy
        px, py = hx[h].unsqueeze(1), hy[h].unsqueeze(1)
        # left of (or on) every edge of a convex polygon listed by increasing angle: inside
        inside = ((px - vx) * ey - (py - vy) * ex <= 0).all(1) | (flat["kind"][shape] == _CIRCLE)
        first = torch.full((hx.numel(),), _UNCOVERED, dtype=torch.int32, device=device)
        first.scatter_reduce_(0, h[inside], j[inside].to(torch.int32), reduce="amin")
        return first

    def _rasterise(self, shapes: Sequence[dict[str, torch.Tensor]], device: torch.device) -> torch.Tensor:
        """Front-most shape index per pixel, Tensor[B, S, S] int32, _UNCOVERED where no shape covers the pixel."""
        size, b = self.size, len(shapes)
        levels = size.bit_length()  # span-table levels 0..floor(log2 S); two more levels take empty spans
        plane = size * size
        counts = torch.tensor([s["radius"].numel() for s in shapes])
        flat = {k: torch.cat([s[k] for s in shapes]).to(device) for k in ("center", "radius", "kind", "angle_u")}
        image_base = torch.repeat_interleave(torch.arange(b) * ((levels + 2) * plane), counts).to(device)
        local = torch.arange(int(counts.sum())) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
        local = local.to(device, torch.int32)
        geo = self._geometry(flat)
        cx, cy, r, kind = geo["cx"], geo["cy"], geo["r"], flat["kind"]
        table = torch.full((b * (levels + 2) * plane,), _UNCOVERED, dtype=torch.int32, device=device)

        circle = (kind == _CIRCLE).nonzero().flatten()
        poly = (kind != _CIRCLE).nonzero().flatten()
        spans = []  # (shape index, row, left x, right x) per (shape, pixel row)
        if circle.numel():
            c_cx, c_cy, c_r = cx.index_select(0, circle), cy.index_select(0, circle), r.index_select(0, circle)
            sp, row = self._rows(c_cy - c_r, c_cy + c_r)
            dy = (row.float() + 0.5) - c_cy.index_select(0, sp)
            c_r = c_r.index_select(0, sp)
            half = torch.sqrt(torch.clamp(c_r * c_r - dy * dy, min=0.0))
            x_c = c_cx.index_select(0, sp)
            spans.append((circle.index_select(0, sp), row, x_c - half, x_c + half))
        if poly.numel():
            vx, vy = geo["vx"].index_select(0, poly), geo["vy"].index_select(0, poly)
            ex = torch.roll(vx, -1, dims=1) - vx
            ey = torch.roll(vy, -1, dims=1) - vy
            # Edge e crosses row y at x = a y + b. Inside lies left of each edge (corners by increasing angle):
            # x <= a y + b where the edge goes down (ey > 0), x >= a y + b where it goes up. Near-horizontal edges
            # only bound the polygon's first/last row, which the row range below already does.
            a = ex / ey
            bb = vx - a * vy
            flat_edge = ey.abs() <= 1e-5 * r.index_select(0, poly).unsqueeze(1)
            down, up = (ey > 0) & ~flat_edge, (ey < 0) & ~flat_edge
            zero = torch.zeros_like(a)
            bounds = torch.cat(
                [
                    torch.where(down, a, zero),
                    torch.where(down, bb, math.inf),
                    torch.where(up, a, zero),
                    torch.where(up, bb, -math.inf),
                ],
                dim=1,
            )
            sp, row = self._rows(vy.amin(1), vy.amax(1))
            yc = (row.float() + 0.5).unsqueeze(1)
            pb = bounds.index_select(0, sp)  # [P, 16]
            hi = (pb[:, 0:4] * yc + pb[:, 4:8]).amin(1)
            lo = (pb[:, 8:12] * yc + pb[:, 12:16]).amax(1)
            spans.append((poly.index_select(0, sp), row, lo, hi))

        level_off, pow2 = _span_tables(size, device)
        idx_parts, src_parts = [], []
        for shape, row, lo, hi in spans:
            # pixel columns whose centre lies in [lo, hi]; empty spans get length 0 and land in the spare levels
            x0 = torch.ceil(lo - 0.5).clamp_(0, size)
            length = (torch.floor(hi - 0.5).clamp_(-1, size - 1) - x0 + 1).clamp_(min=0).long()
            first = image_base.index_select(0, shape) + row * size + x0.long() + level_off.index_select(0, length)
            second = first + length - pow2.index_select(0, length)
            idx_parts += [first, second]
            src_parts += [local.index_select(0, shape)] * 2
        if idx_parts:
            table.scatter_reduce_(0, torch.cat(idx_parts), torch.cat(src_parts), reduce="amin")

        grid = table.view(b, levels + 2, size, size)
        for k in range(levels - 1, 0, -1):  # push level k (spans of 2^k) into its two halves at level k - 1
            n, h = size - (1 << k) + 1, 1 << (k - 1)
            upper, lower = grid[:, k, :, :n], grid[:, k - 1]
            torch.minimum(lower[..., :n], upper, out=lower[..., :n])
            torch.minimum(lower[..., h : h + n], upper, out=lower[..., h : h + n])
        return grid[:, 0].clone()

    def _rows(self, y_min: torch.Tensor, y_max: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(shape, row) pairs for every pixel row whose centre lies in [y_min, y_max]: (shape index, row)."""
        size = self.size
        y0 = torch.ceil(y_min - 0.5).clamp_(0, size).long()
        n = (torch.floor(y_max - 0.5).clamp_(-1, size - 1).long() - y0 + 1).clamp_(min=0)
        total = int(n.sum())
        shape = torch.repeat_interleave(torch.arange(n.numel(), device=n.device), n, output_size=total)
        start = torch.cumsum(n, 0) - n
        row = (y0 - start).index_select(0, shape) + torch.arange(total, device=n.device)
        return shape, row

    @staticmethod
    def _corners(
        cx: torch.Tensor, cy: torch.Tensor, r: torch.Tensor, kind: torch.Tensor, u: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Corners (x, y), each [M, 4], of the polygon inscribed in each shape's circle, by increasing angle (so
        convex, interior on the left of each edge); a triangle repeats its last corner (a zero-length edge).
        Circles get square corners, unused."""
        two_pi = 2.0 * math.pi
        quarter = torch.tensor([0.25, 0.75, 1.25, 1.75], device=u.device) * math.pi  # square corners
        theta = torch.where(kind == _ORIENTED, u[:, 0] * (math.pi / 2), 0.0).unsqueeze(1)
        angles = quarter + theta
        phi = (u[:, 0] * (math.pi / 3) + math.pi / 12).unsqueeze(1)
        rect = torch.cat([phi, math.pi - phi, math.pi + phi, two_pi - phi], dim=1)
        angles = torch.where((kind == _RECTANGLE).unsqueeze(1), rect, angles)
        random4 = torch.sort(u * two_pi, dim=1).values
        random3 = torch.sort(u[:, :3] * two_pi, dim=1).values
        tri = torch.cat([random3, random3[:, 2:]], dim=1)
        angles = torch.where((kind == _QUAD).unsqueeze(1), random4, angles)
        angles = torch.where((kind == _TRIANGLE).unsqueeze(1), tri, angles)
        r = r.unsqueeze(1)
        return cx.unsqueeze(1) + r * torch.cos(angles), cy.unsqueeze(1) + r * torch.sin(angles)

    # ---------------------------------------------------------------- textured variant
    def _texture_colour(
        self,
        params: Sequence[dict[str, torch.Tensor]],
        flat: dict[str, torch.Tensor],
        index: torch.Tensor,
        colour: torch.Tensor,
        device: torch.device,
        per_image: bool,
    ) -> torch.Tensor:
        """blend * flat colour + (1 - blend) * the shape's texture, shifted by its offset (textures wrap)."""
        assert self._texture_gen is not None
        size, m, b = self.size, self.textures, len(params)
        keys = [k[len("texture_"):] for k in params[0] if k.startswith("texture_")]
        bank = [{k: p[f"texture_{k}"][j] for k in keys} for p in params for j in range(m)]
        tex = self._texture_gen._render(bank, device, per_image).view(-1)  # [B*M*3*S*S]
        image = torch.arange(b, device=device).repeat_interleave(size * size)
        slot = image * m + flat["texture"].index_select(0, index)
        shift = (flat["offset"].index_select(0, index) * size).long()
        pix = torch.arange(size * size, device=device).repeat(b)
        ty = torch.remainder(pix // size + shift[:, 1], size)
        tx = torch.remainder(pix % size + shift[:, 0], size)
        base = (slot * 3 * size + ty) * size + tx
        plane = size * size
        texture = torch.stack([tex.index_select(0, base + c * plane) for c in range(3)])
        w = flat["blend"].index_select(0, index)
        return (colour * w + texture * (1.0 - w)).clamp_(0, 1)
