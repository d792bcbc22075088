"""The contours family: RCDB's and Visual Atoms' category and image rules as in their reference code, the renderer
against an independent one (PIL's 1-pixel lines on the 512 canvas, later lines over earlier ones, box-averaged:
how the reference code draws), edge culling, ink per edge, and the rings variants kept from version 1."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from synthsight.generators.base import image_rng
from synthsight.generators.contours import CANVAS, NOISE_STEP, Contours


def _params(gen: Contours, n: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    return [gen.sample_params(image_rng(seed, i, gen.salt)) for i in range(n)]


def _reference_render(p: dict[str, torch.Tensor], white: bool, size: int) -> torch.Tensor:
    """The image of parameters `p` drawn the reference code's way: float64 vertex walk, PIL lines one pixel wide
    on the 512 canvas in each line's grey, box-averaged to `size` ([size, size])."""
    lines, vertices = int(p["lines"]), int(p["vertices"])
    c, w, r0, ox, oy, cx, cy = p["shape"].double().tolist()
    n1, n2 = p["waves"].tolist()
    theta = 2 * math.pi * np.arange(vertices) / vertices
    steps = c + w - (2 if white else 1) * c * (p["noise"].double().numpy() + 0.5) * NOISE_STEP
    steps += 0.5 * (np.sin(n1 * theta) + np.sin(n2 * theta))
    radius = np.cumsum(steps, axis=1)
    x = cx + np.cos(theta) * (r0 * ox + radius[0])
    y = cy + np.sin(theta) * (r0 * oy + radius[1])
    image = Image.new("L", (CANVAS, CANVAS), 255 if white else 0)
    draw = ImageDraw.Draw(image)
    for line in range(lines):
        polygon = np.stack([x[line], y[line]], axis=-1)
        draw.line(np.concatenate([polygon, polygon[:1]]).astype(np.float32), fill=int(p["grey"][line]), width=1)
    f = CANVAS // size
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).view(size, f, size, f).mean(dim=(1, 3))


# ------------------------------------------------------------------ parameters
@pytest.mark.parametrize("variant", ["rcdb", "visual_atoms"])
def test_categories_follow_the_reference_code(variant: str) -> None:
    cats = [Contours(variant, 32).category(c) for c in range(400)]
    vertices = torch.tensor([c["vertices"] for c in cats], dtype=torch.float64)
    assert all(1 <= c["lines"] <= 200 for c in cats) and len({c["lines"] for c in cats}) > 100
    assert all(0 <= c["noise"] <= 4 and 0 <= c["width"] <= 0.1 for c in cats)
    if variant == "rcdb":  # int(Exp(mean 100)) kept in 3..200: mean 70.8
        assert set(cats[0]) == {"vertices", "lines", "noise", "width"}
        assert vertices.min() >= 3 and vertices.max() <= 200
        assert 64 < vertices.mean() < 78
    else:
        assert vertices.min() >= 200 and vertices.max() <= 1000 and vertices.std() > 180  # uniform: std 231
        assert all(0 <= c["n1"] <= 20 and 0 <= c["n2"] <= 20 for c in cats)
        assert all(c["n1"] != c["n2"] or c["n1"] == 0 for c in cats)
        assert len({(c["n1"], c["n2"]) for c in cats}) > 150
        assert all(c["start_radius"] in range(10, 61) and 1 <= c["oval_x"] <= 2 and 1 <= c["oval_y"] <= 2
                   for c in cats)


@pytest.mark.parametrize("variant,spread", [("rcdb", 200), ("visual_atoms", 256)])
def test_images_are_off_centre_ovals(variant: str, spread: int) -> None:
    params = _params(Contours(variant, 32), 200)
    offset = torch.stack([p["shape"][5:7] for p in params]) - CANVAS / 2
    assert (offset.abs() <= spread).all()
    assert offset.abs().mean() > spread / 2 - 20  # uniform over +-spread: mean |offset| = spread / 2
    if variant == "rcdb":  # start radius and oval drawn per image
        shape = torch.stack([p["shape"] for p in params])
        assert ((shape[:, 2] >= 0) & (shape[:, 2] <= 100) & (shape[:, 2] == shape[:, 2].round())).all()
        assert ((shape[:, 3:5] >= 1) & (shape[:, 3:5] <= 2)).all() and shape[:, 3:5].std() > 0.25


def test_noise_has_the_reference_spread() -> None:
    """The reference reads its gradient noise at a fresh random point per vertex, line and axis: white noise of
    mean 0 and std 0.32."""
    p = Contours("visual_atoms", 32).sample_params(image_rng(0, 3, "contours/visual_atoms"))
    assert p["noise"].shape == (2, int(p["lines"]), int(p["vertices"]))
    values = (p["noise"].double() + 0.5) * NOISE_STEP
    assert values.numel() > 5000
    assert abs(values.mean()) < 0.02 and values.std() == pytest.approx(0.3197, abs=0.01)
    assert values.abs().max() < 0.56


# ------------------------------------------------------------------ rendering
@pytest.mark.parametrize("variant", ["rcdb", "visual_atoms"])
def test_images_match_the_reference_rasteriser(variant: str) -> None:
    """Same parameters, drawn by us and the reference's way: each image's mean and std within a few hundredths,
    pixels on average within 0.05."""
    white = variant == "rcdb"
    gen = Contours(variant, 128)
    params = _params(gen, 6, seed=1)
    ours = gen.render(params, torch.device("cpu"))[:, 0]
    ref = torch.stack([_reference_render(p, white, 128) for p in params])
    assert (ours.mean(dim=(1, 2)) - ref.mean(dim=(1, 2))).abs().max() < 0.02
    assert (ours.std(dim=(1, 2)) - ref.std(dim=(1, 2))).abs().max() < 0.03
    assert (ours - ref).abs().mean() < 0.05


@pytest.mark.parametrize("variant", ["rcdb", "visual_atoms"])
def test_compiled_cpu_path_draws_what_the_tensor_path_draws(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU's compiled loop (contour_raster.py) and the tensor path (used on GPUs) put the same ink in the same
    pixels, up to a point landing in the neighbouring pixel by float rounding."""
    gen = Contours(variant, 64)
    params = _params(gen, 8, seed=2)
    compiled = gen.render(params, torch.device("cpu"))
    monkeypatch.setattr(Contours, "compiled_cpu", False)
    tensor = gen.render(params, torch.device("cpu"))
    assert not torch.equal(compiled, torch.full_like(compiled, float(variant == "rcdb")))
    diff = (compiled - tensor).abs()
    assert diff.mean() < 1e-3 and (diff > 1e-3).float().mean() < 0.01
    assert (compiled.mean(dim=(1, 2, 3)) - tensor.mean(dim=(1, 2, 3))).abs().max() < 1e-3


def test_compiled_batch_draws_each_image_as_alone_on_any_thread_count() -> None:
    """The batch kernel (two threads, every other image each) draws what it draws for each image on its own."""
    gen = Contours("visual_atoms", 64)
    params = _params(gen, 9, seed=4)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        batch = gen.render(params, torch.device("cpu"))
        torch.set_num_threads(1)
        alone = torch.cat([gen.render([p], torch.device("cpu")) for p in params])
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(batch, alone)


@pytest.mark.parametrize("variant,background", [("rcdb", 1.0), ("visual_atoms", 0.0)])
def test_grey_lines_on_the_reference_background(variant: str, background: float) -> None:
    images = Contours(variant, 64).generate(range(16), seed=0)
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 0], images[:, 2])
    assert (images == background).float().mean() > 0.3
    assert ((images - background).abs().amax(dim=(1, 2, 3)) > 0.1).all()  # every image shows some line


def test_ink_is_the_chebyshev_length_of_the_drawn_edges() -> None:
    """A line on the canvas puts its length along its major axis into the pixels it crosses, one pixel step per
    point; its grey (minus the background) weights the imaginary part."""
    gen = Contours("rcdb", 64)
    x = torch.tensor([[0.0, 20.0, 0.0, -20.0, 0.0], [-25.0, 25.0, 25.0, -25.0, -25.0]])  # diamond, 10:1 box
    y = torch.tensor([[-20.0, 0.0, 20.0, 0.0, -20.0], [-28.0, -23.0, 28.0, 23.0, -28.0]])
    canvas = torch.zeros(66 * 66, dtype=torch.complex64)
    gen._draw(canvas, torch.stack([x, y]), torch.tensor([-0.5, -0.25]))
    assert canvas.real.sum().item() == pytest.approx(4 * 20 + 2 * 50 + 2 * 51, rel=1e-5)
    assert canvas.imag.sum().item() == pytest.approx(-0.5 * 80 - 0.25 * 202, rel=1e-5)
    canvas.zero_()
    gen._draw(canvas, torch.stack([x[:1], y[:1]]), torch.tensor([-0.5]))
    assert canvas.real.max() == pytest.approx(1.0)  # one point per pixel step along the diamond's diagonals


def test_culling_keeps_edges_that_cross_the_canvas_and_drops_far_ones() -> None:
    gen = Contours("rcdb", 64)
    # line 0: its first edge crosses the whole canvas at y = -10 with both ends far outside
    # line 1: a small square far to the right, outside the canvas and its ring
    x = torch.tensor([[-900.0, 900.0, 900.0, -900.0, -900.0], [300.0, 310.0, 310.0, 300.0, 300.0]])
    y = torch.tensor([[-10.5, -10.5, 900.0, 900.0, -10.5], [0.0, 0.0, 10.0, 10.0, 0.0]])
    canvas = torch.zeros(66 * 66, dtype=torch.complex64)
    gen._draw(canvas, torch.stack([x[:1], y[:1]]), torch.tensor([-1.0]))
    ink = canvas.real.view(66, 66)
    assert ink[1:-1, 1:-1].sum().item() == pytest.approx(64.0) and ink[22, 1:-1].sum().item() == pytest.approx(64.0)
    canvas.zero_()
    gen._draw(canvas, torch.stack([x[1:], y[1:]]), torch.tensor([-1.0]))
    assert canvas.abs().sum() == 0  # culled: not even on the ring


# ------------------------------------------------------------------ options and the rings variants
def test_options_and_version() -> None:
    assert Contours("rcdb", 32).config()["version"] == "2"
    assert Contours("rings", 32, noise_scale=0.1).noise_scale == 0.1
    with pytest.raises(ValueError, match="noise_scale applies to the rings"):
        Contours("rcdb", 32, noise_scale=0.1)
    with pytest.raises(ValueError, match="noise_scale must be in"):
        Contours("wavy_rings", 32, noise_scale=0.5)
    with pytest.raises(ValueError, match="num_classes"):
        Contours("visual_atoms", 32, num_classes=0)


@pytest.mark.parametrize("variant", ["rings", "wavy_rings"])
def test_rings_categories_in_their_ranges(variant: str) -> None:
    cats = [Contours(variant, 32).category(c) for c in range(300)]
    vertices = torch.tensor([c["vertices"] for c in cats], dtype=torch.float64)
    assert all(1 <= c["lines"] <= 200 and 0 <= c["noise"] <= 4 and 0 <= c["width"] <= 0.1 for c in cats)
    assert all(0 <= c["start_radius"] <= 100 / 512 for c in cats)
    if variant == "rings":
        assert vertices.min() >= 3 and vertices.max() <= 200
        assert 70 < vertices.mean() < 110  # Exp(mean 100) clipped to [3, 200]: mean ~ 85
        assert all(c["n1"] == 0 and c["n2"] == 0 and c["amplitude"] == 0 for c in cats)
    else:
        assert vertices.min() >= 200 and vertices.max() <= 1000
        assert all(0 <= c["n1"] <= 20 and 0 <= c["n2"] <= 20 for c in cats)


def test_rings_are_thin_coloured_lines_on_a_dark_canvas() -> None:
    gen = Contours("rings", 64)
    params = _params(gen, 16)
    images = gen.render(params, torch.device("cpu"))
    drawn = []
    for image, p in zip(images, params):
        back = p["colours"][1].view(3, 1, 1)
        assert (back <= 0.12 + 1e-6).all()
        drawn.append(((image - back).abs().amax(0) > 0.02).float().mean().item())
    assert min(drawn) > 0.0
    assert sorted(drawn)[len(drawn) // 2] < 0.6, drawn  # mostly lines with dark gaps, not filled canvases
