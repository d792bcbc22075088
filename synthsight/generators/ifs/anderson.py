"""Anderson & Farrell's fractal images (WACV 2022): density-coloured fractals over diamond-square backgrounds.

Per image, after their generator: the points' min/max box is zoomed by U(0.5, 2) per axis and its centre moved by
U(-0.2, 0.2) of the box per axis (so the fractal may fill, overflow or float in the frame, stretched to the square);
every point adds one to the cells of a random 3 x 3 patch around its pixel (each of the 9 cells on with
probability 1/2, one patch per image) and the counts are divided by their maximum, x in [0, 1]; a lit pixel gets
OpenCV 8-bit HSV (H = (floor(255 x) + h0) mod 256, S, V) with h0 ~ U{0..255}, S ~ U(0.3, 1), V ~ U(0.5, 1) per image
(so the hue cycles ~1.4 turns with the density), and the fractal is transposed / mirrored at random. Unlit pixels
show a diamond-square grid g (decay ~ U(0.4, 0.8)) coloured as H = g hs + h1, S = g ss + s1, V = g vs + v1 (hs ~
U(64, 255), ss ~ U(26, 77), s1 ~ U(102, 153), vs ~ U(77, 153), v1 ~ U(102, 153), 8-bit units). Half the images are
then blurred by a 3 x 3 Gaussian, sigma ~ U(0.5, 1).

Rendering: the hit counts on a (S + 4)^2 grid (cells just outside the canvas count: their patches reach in), the
patch as a grouped 3 x 3 convolution (exact: integer counts), then ONE table look-up per pixel into a per-image
colour table of 256 foreground hues and 1,024 background levels (the grid value quantised over its whole possible
range [-1.6, 2.6]), and a separable 3-tap blur on the blurred images only. The diamond-square noise comes from the
image's generator for the first 4 levels and from a fixed bank of random numbers at a per-image offset for the fine
ones.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from synthsight.generators.ifs.colour import hsv_to_rgb
from synthsight.generators.ifs.diamond_square import diamond_square, noise_length
from synthsight.generators.ifs.points import fit_boxes, grid_cells

ZOOM = (0.5, 2.0)  # the window is the box times U(0.5, 2) per axis
TRANSLATE = 0.2  # ... and its centre moves by U(-0.2, 0.2) box sides
BLUR_P, BLUR_SIGMA = 0.5, (0.5, 1.0)  # 3 x 3 Gaussian blur: probability and sigma range
_FG = 256  # foreground hues (8-bit HSV): table entries 0..255, the background's from 256
_LEVELS, _LO, _HI = 1024, -1.6, 2.6  # background table: levels over the grid's possible range
_COARSE = 4  # diamond-square levels drawn from the image's generator; finer ones from the bank
_NOISE_BANK = 1 << 20


def grid_side(size: int) -> int:
    """Side of the diamond-square grid for an image of `size` pixels: the next 2^n + 1."""
    return (1 << max(1, (size - 1).bit_length())) + 1


@lru_cache(maxsize=8)
def _noise_bank(length: int, device: torch.device) -> torch.Tensor:
    """Fixed U(-1, 1) numbers, Tensor[length] (part of the algorithm)."""
    g = torch.Generator().manual_seed(0xD5)
    return (torch.rand(length, generator=g) * 2.0 - 1.0).to(device)


def sample(rng: torch.Generator, size: int) -> dict[str, torch.Tensor]:
    """One image's rendering parameters: view [4] (zoom x, zoom y, shift x, shift y), flips [3] (transpose, mirror
    x, mirror y; 0/1), patch [9] (0/1), colour [3] (h0, S, V in 8-bit units), sigma [] (blur; 0 = none), ground [7]
    (decay, hs, h1, ss, s1, vs, v1), corners [4], coarse [c] (U(-1, 1): the noise of the first diamond-square
    levels), offset [] int64 (where the finer levels' noise starts in the bank)."""
    s = grid_side(size)
    coarse = noise_length(s, _COARSE)
    drawn = torch.rand(32 + coarse, generator=rng)
    u = drawn[:28].double().tolist()
    values = [ZOOM[0] + (ZOOM[1] - ZOOM[0]) * u[0], ZOOM[0] + (ZOOM[1] - ZOOM[0]) * u[1],  # view
              TRANSLATE * (2.0 * u[2] - 1.0), TRANSLATE * (2.0 * u[3] - 1.0)]
    values += [float(x < 0.5) for x in u[4:16]]  # flips [3], patch [9]
    values += [float(int(256 * u[16])), float(int(255 * (0.3 + 0.7 * u[17]))), float(int(255 * (0.5 + 0.5 * u[18])))]
    values.append(BLUR_SIGMA[0] + (BLUR_SIGMA[1] - BLUR_SIGMA[0]) * u[20] if u[19] < BLUR_P else 0.0)
    values += [0.4 + 0.4 * u[21], 255 * (0.25 + 0.75 * u[22]), 255 * u[23], 255 * (0.1 + 0.2 * u[24]),  # ground
               255 * (0.4 + 0.2 * u[25]), 255 * (0.3 + 0.3 * u[26]), 255 * (0.4 + 0.2 * u[27])]
    flat = torch.tensor(values, dtype=torch.float32)
    return {
        "view": flat[0:4], "flips": flat[4:7], "patch": flat[7:16], "colour": flat[16:19], "sigma": flat[19],
        "ground": flat[20:27],
        "corners": drawn[28:32],
        "coarse": drawn[32:].mul_(2.0).sub_(1.0),
        "offset": torch.randint(0, _NOISE_BANK - noise_length(s) + 1, (), generator=rng),
    }


def paint(xs: torch.Tensor, ys: torch.Tensor, p: dict[str, torch.Tensor], out: torch.Tensor,
          per_image: bool = False) -> None:
    """Write images out [B, 3, S, S] from the points xs, ys [T, B, K] of their (already flipped) systems and their
    stacked parameters p (see `sample`, each with a leading batch dimension, on out's device). per_image: blur one
    image at a time (CPU: its planes stay in the cache) rather than all blurred images at once."""
    b, size = out.shape[0], out.shape[-1]
    counts = patched_counts(xs, ys, p["view"], p["patch"], size)  # [B, S, S]
    peak = counts.flatten(1).amax(1).clamp_min(1.0)
    hue = torch.mul(counts, (255.0 / peak).view(b, 1, 1))  # 0..255 after truncation; the table adds h0
    unlit = counts.neg_().add_(1.0).clamp_(min=0.0)  # 1 where no point landed, else 0 (counts are integers)
    index = torch.addcmul(hue, unlit, _background_levels(p, size)).long()  # exact; truncation floors (all >= 0)
    # out[b, ch, pixel] = table[b, ch, index[b, pixel]], straight into the [B, 3, S, S] layout
    blurred = p["sigma"] > 0
    g = torch.where(blurred, torch.exp(-0.5 / p["sigma"].clamp_min(1e-3).square()), torch.zeros_like(p["sigma"]))
    table = _colour_table(p).mul_((1.0 + 2.0 * g).square().reciprocal().view(b, 1, 1))  # the blur's normalisation
    torch.gather(table, 2, index.view(b, 1, -1).expand(b, 3, -1), out=out.view(b, 3, -1))
    rows = blurred.nonzero().flatten()
    if per_image:
        for i in rows.tolist():
            blur3(out[i : i + 1], g[i : i + 1], out=out[i : i + 1])
    elif rows.numel():
        out.index_copy_(0, rows, blur3(out.index_select(0, rows), g[rows]))


def patched_counts(xs: torch.Tensor, ys: torch.Tensor, view: torch.Tensor, patch: torch.Tensor,
                    size: int) -> torch.Tensor:
    """Points per pixel spread by each image's 3 x 3 patch, Tensor[B, S, S] float (integer values). x runs along
    the rows, y along the columns; the window is the zoomed, shifted min/max box, each axis stretched to S - 1."""
    b, g = xs.shape[1], size + 4  # cells -2 .. S + 1; the outer ring (-2, S + 1) collects what is farther out
    box = fit_boxes(xs, ys).view(b, 2, 2)  # [B, axis, (lo, hi)]
    extent = box[..., 1] - box[..., 0]
    span = extent * view[:, :2]
    span = torch.where(span > 0, span, torch.ones_like(span))
    scale = (size - 1) / span
    shift = 2.0 - (box.mean(-1) + extent * view[:, 2:] - 0.5 * span) * scale  # window's low edge at cell 2
    axes = [(scale[:, 0], shift[:, 0]), (scale[:, 1], shift[:, 1])]
    cells = grid_cells(xs, ys, rows=axes[0], cols=axes[1], grid=g)
    counts = torch.bincount(cells.view(-1), minlength=b * g * g).view(b, g, g)[:, 1:-1, 1:-1].float()
    return spread_by_patch(counts, patch)


def spread_by_patch(counts: torch.Tensor, patch: torch.Tensor) -> torch.Tensor:
    """Hits per cell counts [B, S + 2, S + 2] (cells -1 .. S) spread by per-image 3 x 3 patches [B, 9] (0/1, row
    by row): a point at cell q lights q + (i - 1, j - 1) for each patch cell (i, j) that is on. Tensor[B, S, S],
    exact (integer counts): a grouped convolution on CPU, nine shifted sums elsewhere (a GPU convolution may
    round, e.g. in TF32)."""
    b = counts.shape[0]
    kernel = patch.view(b, 1, 3, 3).flip(2, 3)  # lighting q + d from q is a convolution: the kernel flipped
    if counts.device.type == "cpu":
        return F.conv2d(counts.unsqueeze(0), kernel, groups=b)[0]
    return patch_sums(counts, kernel)


def patch_sums(counts: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """The grouped 3 x 3 correlation of counts [B, S + 2, S + 2] with kernel [B, 1, 3, 3], as nine shifted sums."""
    b, size = counts.shape[0], counts.shape[-1] - 2
    out = torch.zeros(b, size, size, device=counts.device)
    for k in range(9):
        i, j = divmod(k, 3)
        out.addcmul_(counts[:, i : i + size, j : j + size], kernel[:, 0, i, j].view(b, 1, 1))
    return out


def _background_levels(p: dict[str, torch.Tensor], size: int) -> torch.Tensor:
    """_FG + the diamond-square grid of each image in units of _LEVELS levels over [_LO, _HI], Tensor[B, S, S]
    float in [_FG, _FG + _LEVELS) (its integer part is the table entry). The grid is computed in these units
    directly: diamond-square commutes with affine maps of its values."""
    b = p["corners"].shape[0]
    s = grid_side(size)
    bank = _noise_bank(_NOISE_BANK, p["corners"].device)
    fine = noise_length(s) - p["coarse"].shape[-1]
    noise = [p["coarse"], torch.stack([bank[o : o + fine] for o in p["offset"].tolist()])]
    scale = _LEVELS / (_HI - _LO)
    grid = diamond_square((p["corners"] - _LO) * scale + _FG, p["ground"][:, 0], noise, s, gain=scale)
    # no clamp needed: a grid value is at most max corner + sum of amplitudes (< 1 + 0.5 / (1 - e^-0.4) = 2.52) and
    # at least -1.52, inside [_LO, _HI]
    return grid[:, :size, :size]


def _colour_table(p: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per image, 256 foreground colours (index i: 8-bit hue (i + h0) mod 256 at the image's S, V), then the
    _LEVELS background colours: Tensor[B, 3, 256 + _LEVELS]."""
    b, device = p["colour"].shape[0], p["colour"].device
    # foreground entries as "grid values" x = i with hs = 1, h1 = h0, ss = vs = 0: one HSV formula for both parts
    x = torch.cat([torch.arange(_FG, device=device, dtype=torch.float32),
                   _LO + (torch.arange(_LEVELS, device=device, dtype=torch.float32) + 0.5) * ((_HI - _LO) / _LEVELS)])
    fg = torch.stack([torch.ones_like(p["colour"][:, 0]), p["colour"][:, 0], torch.zeros_like(p["colour"][:, 0]),
                      p["colour"][:, 1], torch.zeros_like(p["colour"][:, 0]), p["colour"][:, 2]], 1)  # [B, 6]
    slopes = torch.cat([fg.view(b, 3, 1, 2).expand(b, 3, _FG, 2),
                        p["ground"][:, 1:].view(b, 3, 1, 2).expand(b, 3, _LEVELS, 2)], 2)  # [B, 3 (h s v), E, 2]
    hsv = torch.addcmul(slopes[..., 1], x, slopes[..., 0]).floor_()
    hsv[:, 0].remainder_(256.0)  # 8 bits: the hue wraps, saturation and value saturate
    hsv[:, 1:].clamp_(0.0, 255.0)
    return hsv8_to_rgb(hsv[:, 0], hsv[:, 1], hsv[:, 2]).transpose(1, 2).contiguous()


def hsv8_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """OpenCV 8-bit HSV (any real h, wrapping at 180 = a full turn; s, v in 0..255) to RGB in [0, 1], [..., 3]."""
    return hsv_to_rgb(torch.remainder(h / 180.0, 1.0), s / 255.0, v / 255.0)


def blur3(x: torch.Tensor, g: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Images x [B, C, H, W] filtered by the 3 x 3 kernel [g, 1, g] x [g, 1, g] (per-image g [B]; reflect-101
    borders, as OpenCV), NOT normalised: OpenCV's 3 x 3 Gaussian blur with sigma is this with g = exp(-1 / (2
    sigma^2)), divided by (1 + 2 g)^2. `out` may be x itself."""
    g = g.view(-1, 1, 1, 1)
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    rows = torch.addcmul(padded[:, :, 1:-1], padded[:, :, :-2] + padded[:, :, 2:], g)
    return torch.addcmul(rows[..., 1:-1], rows[..., :-2] + rows[..., 2:], g, out=out)
