"""fractal_ifs internals: diamond-square, flips by conjugation, Anderson & Farrell's window / patch / colours / blur,
FractalDB's stipple, the instance rules and the family's options. (Contract and label tests: test_generators.py,
test_generator_labels.py; reference statistics: test_reference_stats.py.)"""

from __future__ import annotations

import colorsys
import math

import pytest
import torch
import torch.nn.functional as F

from synthsight.generators.fractal_ifs import FractalIFS
from synthsight.generators.ifs import anderson, stipple
from synthsight.generators.ifs.diamond_square import diamond_square, noise_length
from synthsight.generators.ifs.points import chaos_game, conjugate
from synthsight.generators.ifs.systems import (SCALE_FACTORS, anderson_jitter, fractaldb_instance, map_probabilities,
                                               padded, svd_system)


# ------------------------------------------------------------------ diamond-square
def _diamond_square_loop(corners: list[float], decay: float, noise: list[float], n: int) -> torch.Tensor:
    """Textbook diamond-square, one point at a time (wrapping as Anderson & Farrell's generator), taking the noise
    in the documented order: per level the centres, the midpoints on the old rows, those between, row by row."""
    s = (1 << n) + 1
    a = [[0.0] * s for _ in range(s)]
    a[0][0], a[0][s - 1], a[s - 1][0], a[s - 1][s - 1] = corners
    used = 0
    for k in range(1, n + 1):
        m, h = 1 << (k - 1), (s - 1) >> k
        amp = 0.5 * math.exp(decay * (1 - k))
        for i in range(m):
            for j in range(m):
                r, c = (2 * i + 1) * h, (2 * j + 1) * h
                a[r][c] = 0.25 * (a[r - h][c - h] + a[r - h][c + h] + a[r + h][c - h] + a[r + h][c + h])
                a[r][c] += amp * noise[used + i * m + j]
        used += m * m

        def square(r: int, c: int, u: float) -> None:
            up = a[r - h][c] if r > 0 else a[s - h - 1][c]
            down = a[r + h][c] if r < s - 1 else a[h][c]
            left = a[r][c - h] if c > 0 else a[r][s - h - 1]
            right = a[r][c + h] if c < s - 1 else a[r][h]
            a[r][c] = 0.25 * (up + down + left + right) + amp * u

        for i in range(m + 1):
            for j in range(m):
                square(2 * i * h, (2 * j + 1) * h, noise[used + i * m + j])
        used += (m + 1) * m
        for i in range(m):
            for j in range(m + 1):
                square((2 * i + 1) * h, 2 * j * h, noise[used + i * (m + 1) + j])
        used += m * (m + 1)
    return torch.tensor(a, dtype=torch.float64)


@pytest.mark.parametrize("n", [1, 2, 4])
def test_diamond_square_matches_the_point_by_point_algorithm(n: int) -> None:
    g = torch.Generator().manual_seed(n)
    side, b = (1 << n) + 1, 3
    corners = torch.rand(b, 4, generator=g, dtype=torch.float64)
    decay = 0.4 + 0.4 * torch.rand(b, generator=g, dtype=torch.float64)
    noise = torch.rand(b, noise_length(side), generator=g, dtype=torch.float64) * 2 - 1
    split = noise_length(side, 1)  # the noise may come in pieces (coarse levels, then the rest)
    grids = diamond_square(corners, decay, [noise[:, :split], noise[:, split:]], side)
    for i in range(b):
        want = _diamond_square_loop(corners[i].tolist(), float(decay[i]), noise[i].tolist(), n)
        assert torch.allclose(grids[i], want, atol=1e-12)
    # affine maps of the values commute with it (the renderer computes in colour-table units)
    scaled = diamond_square(3 * corners + 2, decay, [noise], side, gain=3.0)
    assert torch.allclose(scaled, 3 * grids + 2, atol=1e-9)


# ------------------------------------------------------------------ flips by conjugation
def test_conjugated_system_draws_the_flipped_attractor() -> None:
    g = torch.Generator().manual_seed(3)
    maps = torch.stack([padded(svd_system(g, 3)) for _ in range(4)])
    probs = torch.stack([map_probabilities(m, 3) for m in maps])
    n = torch.full((4,), 3)
    choices = torch.randint(0, 256, (4, 40), generator=g, dtype=torch.uint8)
    flips = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 1], [1, 1, 0]])
    xs, ys = chaos_game(maps, probs, n, choices, 64, 8)
    fx, fy = chaos_game(conjugate(maps, flips), probs, n, choices, 64, 8)
    for i, (swap, mx, my) in enumerate(flips.tolist()):
        x, y = (ys[:, i], xs[:, i]) if swap else (xs[:, i], ys[:, i])
        assert torch.allclose(fx[:, i], -x if mx else x, atol=1e-4)
        assert torch.allclose(fy[:, i], -y if my else y, atol=1e-4)


# ------------------------------------------------------------------ Anderson & Farrell
def _counts(points: list[tuple[float, float]], view: list[float], patch_cells: list[int], size: int = 8):
    xs = torch.tensor([p[0] for p in points]).view(1, 1, -1)
    ys = torch.tensor([p[1] for p in points]).view(1, 1, -1)
    patch = torch.zeros(1, 9)
    patch[0, patch_cells] = 1.0
    return anderson.patched_counts(xs, ys, torch.tensor([view]), patch, size)[0]


def test_anderson_window_and_patch() -> None:
    # box [0, 1]^2; window zoomed by 0.5: [0.25, 0.75] on both axes, 7 / 0.5 = 14 cells per unit
    inside, edge = (0.5, 0.5), (0.25 - 0.5 / 14, 0.5)  # cells (3, 3) and (-1, 3): just above the canvas
    points = [(0.0, 0.0), (1.0, 1.0), inside, edge]  # the box corners fall far outside the window
    view = [0.5, 0.5, 0.0, 0.0]
    centre_only = _counts(points, view, [4])
    assert centre_only.sum() == 1 and centre_only[3, 3] == 1  # x runs down the rows
    below = _counts(points, view, [7])  # patch cell (2, 1): lights one row below the point
    assert below.sum() == 2 and below[4, 3] == 1 and below[0, 3] == 1  # the point above the canvas reaches in
    above = _counts(points, view, [1])  # patch cell (0, 1): one row above
    assert above.sum() == 1 and above[2, 3] == 1
    full = _counts([(0.0, 0.0), (1.0, 1.0)], [1.0, 1.0, 0.0, 0.0], list(range(9)))  # window = box: corners
    assert full[0, 0] == 1 and full[7, 7] == 1 and full.sum() == 8  # 4 patch cells of each corner inside
    shifted = _counts([(0.0, 0.0), (1.0, 1.0), (0.5, 0.5)], [1.0, 1.0, 0.2, 0.0], [4])  # window moved +0.2 in x
    assert shifted[2, 3] == 1 and shifted.sum() == 2  # (0.5 - 0.2) * 7 = 2.1: row 2; the x = 0 corner is off


def test_patch_by_convolution_equals_shifted_sums() -> None:
    g = torch.Generator().manual_seed(0)
    counts = torch.randint(0, 40, (5, 18, 18), generator=g).float()
    patch = (torch.rand(5, 9, generator=g) < 0.5).float()
    conv = anderson.spread_by_patch(counts, patch)
    assert torch.equal(conv, anderson.patch_sums(counts, patch.view(5, 1, 3, 3).flip(2, 3)))


def test_opencv_8bit_hsv() -> None:
    h = torch.tensor([0.0, 30.0, 60.0, 120.0, 179.0, 200.0, 255.0])
    rgb = anderson.hsv8_to_rgb(h, torch.full_like(h, 200.0), torch.full_like(h, 150.0))
    for hue, got in zip(h.tolist(), rgb):
        want = colorsys.hsv_to_rgb((hue / 180.0) % 1.0, 200 / 255, 150 / 255)  # 180 is a full turn; more wraps
        assert torch.allclose(got, torch.tensor(want, dtype=torch.float32), atol=1e-5)


def test_blur_is_opencvs_3x3_gaussian() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 9, 11, generator=g)
    sigma = torch.tensor([0.5, 0.9])
    w = torch.exp(-0.5 / sigma**2)
    got = anderson.blur3(x, w) / (1 + 2 * w).view(2, 1, 1, 1) ** 2
    for i in range(2):
        k1 = torch.tensor([w[i], 1.0, w[i]]) / (1 + 2 * w[i])
        kernel = torch.outer(k1, k1).expand(3, 1, 3, 3)
        want = F.conv2d(F.pad(x[i : i + 1], (1, 1, 1, 1), mode="reflect"), kernel, groups=3)[0]  # reflect-101
        assert torch.allclose(got[i], want, atol=1e-6)


def test_anderson_images_are_vivid_backgrounds_with_coloured_fractals() -> None:
    gen = FractalIFS("svd", 64)
    images = gen.generate(range(16), seed=0)
    chroma = images.std(dim=1).mean().item()
    assert chroma > 0.12 and 0.35 < images.mean().item() < 0.65  # vivid backgrounds, not black
    blurred = [i for i in range(16) if float(gen.sample_params(_rng(gen, i))["sigma"]) > 0]
    assert 3 <= len(blurred) <= 13  # about half


def _rng(gen, i):
    from synthsight.generators.base import image_rng

    return image_rng(0, i, gen.salt)


# ------------------------------------------------------------------ FractalDB stipple
def _stipple(points: torch.Tensor, size: int = 16, offsets=(0,)) -> torch.Tensor:
    b = points.shape[0]
    xs, ys = points[..., 0].permute(1, 0).unsqueeze(-1), points[..., 1].permute(1, 0).unsqueeze(-1)
    out = torch.empty(b, 3, size, size)
    stipple.paint(xs, ys, {"offset": torch.tensor(offsets)}, out)
    return out


def test_stipple_is_grey_dots_on_black_at_half_density() -> None:
    g = torch.Generator().manual_seed(0)
    dense = torch.rand(1, 40_000, 2, generator=g) + 1.0  # a filled square [1, 2]^2
    image = _stipple(dense, 32)[0]
    assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])  # grey
    levels = image[0] * 81 / stipple.GREY
    assert torch.allclose(levels, levels.round(), atol=1e-4) and image.max() <= stipple.GREY + 1e-6
    # FractalDB's box holds the start point (0, 0): the square fills only the far half of each axis
    assert image[:, :14, :].max() == 0 and image[:, :, :14].max() == 0
    inner = image[0, 18:-2, 18:-2]
    assert abs(inner.mean().item() / stipple.GREY - stipple.BIT_P) < 0.05  # each covered cell on with p ~ 1/2


def test_stipple_point_covers_a_3x3_native_patch() -> None:
    one = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])  # two points: the canvas corners (after the 6/362 border)
    image = _stipple(one, 16)[0, 0] * 81 / stipple.GREY
    lit = image.nonzero()
    assert len(lit) > 0 and all(set(p.tolist()) <= {0, 1} or set(p.tolist()) <= {14, 15} for p in lit)
    total = image.sum() / 9  # every native cell carries weight 9 in total (1 2 3 2 1 per axis, stride 3)
    assert total <= 18 + 1e-4  # at most two 3 x 3 patches of cells on


# ------------------------------------------------------------------ instances
def test_fractaldb_instances_follow_the_weight_rows() -> None:
    rows = [[0.5, 0.1, -0.2, 0.4, 0.3, -0.6], [-0.3, 0.2, 0.1, 0.5, -0.4, 0.2]]
    probs = [0.5, 0.5]
    assert fractaldb_instance(rows, probs, 0) == rows
    for k in range(6):
        for i, f in enumerate(SCALE_FACTORS):
            got = fractaldb_instance(rows, probs, 1 + 4 * k + i)
            want = [[x * f if j == k else x for j, x in enumerate(r)] for r in rows]
            assert got == want  # parameter k of every map (these stay contractive on average)
    loose = [[0.9, 0.0, 0.0, 0.9, 0.1, 0.1], [0.9, 0.0, 0.0, -0.9, -0.1, 0.1]]
    assert fractaldb_instance(loose, probs, 1 + 4 * 0 + 3) == loose  # a x 1.8 diverges: the system itself


def test_anderson_jitter_scales_one_map_and_stays_contractive() -> None:
    rows = svd_system(torch.Generator().manual_seed(0), 3).tolist()
    got = anderson_jitter(rows, [0.5, 0.0] + [0.0] * 6)  # map 1 times 0.8
    assert got[0] == rows[0] and got[2] == rows[2]
    assert got[1] == pytest.approx([0.8 * x for x in rows[1]])
    tight = [[1.0, 0.0, 0.0, 0.5, 0.0, 0.0], [0.5, 0.0, 0.0, 0.5, 0.3, 0.0]]
    assert anderson_jitter(tight, [0.0, 1.0] * 4) == tight  # map 0 times 1.1 has a singular value > 1: untouched
    assert anderson_jitter(tight, [0.0, 1.0, 0.9, 0.5, 0.0, 1.0, 0.0, 1.0])[1][0] == pytest.approx(0.475)


# ------------------------------------------------------------------ options
def test_style_and_background_options() -> None:
    with pytest.raises(ValueError, match="style"):
        FractalIFS("svd", 32, style="watercolour")
    with pytest.raises(ValueError, match="background is an option of style 'colour'"):
        FractalIFS("svd", 32, background="black")
    grey = FractalIFS("svd", 32, style="stipple").generate(range(4), seed=0)
    assert torch.equal(grey[:, 0], grey[:, 1]) and grey.max() <= stipple.GREY + 1e-6
    colour = FractalIFS("fractaldb", 32, style="colour", background="black")
    assert colour.config()["style"] == "colour" and colour.config()["background"] == "black"
    assert FractalIFS("fractaldb", 32).config()["style"] == "stipple"
    assert FractalIFS("svd", 32, points=5000).config()["points"] == 5000
