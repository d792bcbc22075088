"""A soft colour look for fractal_ifs (the family's renderer before version 2): density-coloured fractals over a
black, smooth or textured background.

A per-image look-up table maps the hit count to (colour x alpha + (1 - alpha) x background colour A, 1 - alpha),
the hue moving with the log density; the background runs from A to B with a noise bilinearly upsampled from a
4 x 4 (smooth) or 4 x 4 + 16 x 16 (textured) grid, so a pixel is one table look-up plus (1 - alpha) x noise x
(B - A). The points are fitted with their aspect ratio kept (min/max box; for systems that are only contractive on
average, which fling rare points far out, the 0.5%-99.5% quantile box of the last 4 steps' points).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from synthsight.generators.ifs.points import fit_boxes, hit_counts

BACKGROUNDS = ("black", "smooth", "textured")
_LUT = 64  # hit counts >= _LUT - 1 share the last colour
_GRID = 16  # background noise grid
_MARGIN = 0.04  # free border around the attractor, fraction of the side


def sample(rng: torch.Generator, background: str) -> dict[str, torch.Tensor]:
    """One image's parameters: flips [2] (+-1); palette [5] (hue, hue span, saturation, value floor, alpha gain);
    colours [2, 3] (background ends); noise_coarse [1, 4, 4] and noise_fine [1, 16, 16] with texture [] (weight of
    the fine noise). background: one of BACKGROUNDS or "mixed" (each image picks one)."""
    u = torch.rand(16, generator=rng).tolist()
    span = (0.15 + 0.5 * u[3]) * (1.0 if u[4] < 0.5 else -1.0)
    kind = BACKGROUNDS[min(int(u[8] * 3), 2)] if background == "mixed" else background
    dark = 0.0 if kind == "black" else 0.15 + 0.35 * u[9]
    return {
        "flips": torch.tensor([1.0 if u[0] < 0.5 else -1.0, 1.0 if u[1] < 0.5 else -1.0]),
        "palette": torch.tensor([u[2], span, 0.45 + 0.55 * u[5], 0.35 + 0.35 * u[6], 0.4 + 0.6 * u[7]]),
        "colours": torch.tensor(u[10:16]).view(2, 3) * dark,
        "texture": torch.tensor(0.6 if kind == "textured" else 0.0),
        "noise_coarse": torch.rand(1, 4, 4, generator=rng),
        "noise_fine": torch.rand(1, _GRID, _GRID, generator=rng),
    }


def paint(xs: torch.Tensor, ys: torch.Tensor, p: dict[str, torch.Tensor], out: torch.Tensor,
          contractive: bool) -> None:
    """Write images out [B, 3, S, S] from their chaos-game points xs, ys [T, B, K] (p: stacked `sample`
    parameters). `contractive`: every map is a contraction (no far-flung or non-finite points)."""
    b, size = out.shape[0], out.shape[-1]
    boxes = fit_boxes(xs, ys, 0.0 if contractive else 0.005)
    counts = hit_counts(xs, ys, boxes, p["flips"], size, _MARGIN, guard=not contractive)
    palette = _palette_colours(p["palette"])  # [B, _LUT, 3]
    colours = p["colours"]
    lut = _colour_lut(counts, palette, p["palette"][:, 4], colours[:, 0])  # [4, B * _LUT]
    index = counts.clamp(max=_LUT - 1)
    index += (torch.arange(b, device=out.device) * _LUT).view(b, 1, 1)
    fg = lut.index_select(1, index.view(-1)).view(4, b, 1, size, size)
    base = fg[:3].squeeze(2).permute(1, 0, 2, 3)  # [B, 3, S, S]: colour x alpha + (1 - alpha) x background end
    # the rest of the background, (1 - alpha) x noise x (other end - first end)
    rest = fg[3].view(b, 1, size, size).mul_(_noise(p, size))
    torch.addcmul(base, rest, (colours[:, 1] - colours[:, 0]).view(b, 3, 1, 1), out=out).clamp_(0.0, 1.0)


def _colour_lut(counts: torch.Tensor, palette: torch.Tensor, gain: torch.Tensor, back: torch.Tensor) -> torch.Tensor:
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


def _noise(p: dict[str, torch.Tensor], size: int) -> torch.Tensor:
    """Background noise in [0, 1], Tensor[B, 1, S, S]: a 4 x 4 grid (plus the 16 x 16 grid, weighted by
    'texture'), bilinearly upsampled."""
    grid = F.interpolate(p["noise_coarse"], size=(_GRID, _GRID), mode="bilinear", align_corners=False)
    grid = torch.lerp(grid, p["noise_fine"], p["texture"].view(-1, 1, 1, 1))
    return F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=False)


def _palette_colours(palette: torch.Tensor) -> torch.Tensor:
    """Colours [B, _LUT, 3] at densities v = 0.._LUT-1 / (_LUT - 1) of palettes [B, 5] = (hue, hue span,
    saturation, value floor, -): the hue moves by span * v, the value rises from the floor to 1."""
    b = palette.shape[0]
    v = torch.linspace(0.0, 1.0, _LUT, device=palette.device).view(1, -1)
    hue, span, sat, floor = (palette[:, i].view(b, 1) for i in range(4))
    h = torch.remainder(torch.addcmul(hue, span, v), 1.0)
    return hsv_to_rgb(h, sat.expand_as(h), torch.addcmul(floor, 1.0 - floor, v))


def hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """HSV in [0, 1] (any equal shapes) to RGB, Tensor[..., 3]."""
    k = torch.tensor([5.0, 3.0, 1.0], device=h.device)
    t = torch.remainder(k + 6.0 * h.unsqueeze(-1), 6.0)
    ramp = torch.clamp(torch.minimum(t, 4.0 - t), 0.0, 1.0)
    return v.unsqueeze(-1) * (1.0 - s.unsqueeze(-1) * ramp)
