"""Family-specific tests of the stylegan_random and programs generators (statistical: test_statistical.py).

(The contract tests in test_generators.py cover shape, range, determinism and batch independence of every
variant.) Images stay small (32-64 px) so the file runs in seconds on a 2-core CPU.
"""

from __future__ import annotations

import pytest
import torch

from synthsight.generators import create_generator
from synthsight.generators.base import image_rng
from synthsight.generators.programs import Programs, _Draw, _grid, _warp
from synthsight.generators.stylegan_random import StyleGANRandom, filter_bank

CPU = torch.device("cpu")


# ------------------------------------------------------------------ stylegan_random
def test_filter_bank() -> None:
    bank = filter_bank()
    assert bank.shape == (40, 3, 3)
    assert torch.allclose(bank[20:], -bank[:20])
    assert torch.allclose(bank.flatten(1).norm(dim=1), torch.ones(40))
    assert len({tuple(f.flatten().round(decimals=4).tolist()) for f in bank}) == 40


def test_stylegan_network_blocks() -> None:
    """Images i // 400 == n use network n: the same network inside a block, another in the next block."""
    gen = StyleGANRandom("oriented", 32)
    assert [int(gen.image_params(0, i)["network"]) for i in (0, 399, 400, 799, 800)] == [0, 0, 1, 1, 2]
    w0 = gen.network(0, CPU).convs[1].weight
    w1 = gen.network(1, CPU).convs[1].weight
    assert not torch.equal(w0, w1)
    # a pure function of (network_seed, block): a fresh instance rebuilds the same network
    assert torch.equal(StyleGANRandom("oriented", 32).network(0, CPU).convs[1].weight, w0)
    assert not torch.equal(StyleGANRandom("oriented", 32, network_seed=1).network(0, CPU).convs[1].weight, w0)
    # rendering: image 5's latents through network 0 give image 5; through network 1 something else
    p = gen.image_params(0, 5)
    image = gen.generate([5], seed=0)[0]
    assert torch.equal(gen.render([p], CPU)[0], image)
    assert not torch.allclose(gen.render([{**p, "network": torch.tensor(1)}], CPU)[0], image, atol=1e-3)
    # sample_params alone (no "network") renders with network 0
    assert torch.equal(gen.render([gen.sample_params(image_rng(0, 5, gen.salt))], CPU)[0], image)


def test_stylegan_images_of_one_network_look_alike() -> None:
    """Images of one network are closer to each other (colour-normalised) than to those of another network."""
    gen = StyleGANRandom("oriented", 32, images_per_network=8)
    images = gen.generate(range(32), seed=0)  # networks 0..3, 8 images each
    feats = images - images.mean((2, 3), keepdim=True)
    feats = feats / feats.std((2, 3), keepdim=True)
    spectra = torch.fft.rfft2(feats).abs().mean(1).flatten(1).log1p()  # layout-free texture signature
    d = torch.cdist(spectra, spectra)
    block = torch.arange(32) // 8
    same = d[(block.view(-1, 1) == block.view(1, -1)) & ~torch.eye(32, dtype=torch.bool)].mean()
    other = d[block.view(-1, 1) != block.view(1, -1)].mean()
    assert same < other


def test_stylegan_batch_across_networks_matches_per_image() -> None:
    gen = StyleGANRandom("default_init", 32, images_per_network=3)
    indices = [1, 2, 3, 4, 7]  # networks 0, 0, 1, 1, 2
    params = [gen.image_params(0, i) for i in indices]
    batched = gen._render(params, CPU, per_image=False)
    assert torch.allclose(batched, gen.generate(indices, seed=0), atol=1e-4)


def test_oriented_kernels_come_from_the_filter_bank() -> None:
    """StyleGAN-Oriented weights: every 3 x 3 kernel is one bank filter, from a subset of 5..40 per layer, and each
    output channel carries its N(0, 1) scale (applied after the per-channel standardisation)."""
    bank = filter_bank().flatten(1)
    net = StyleGANRandom("oriented", 32).network(0, CPU)
    for layer in net.convs:
        kernels = layer.weight.flatten(2)  # [Cout, Cin, 9]
        match = (kernels.unsqueeze(2) - bank.view(1, 1, 40, 9)).abs().amax(-1) < 1e-6  # [Cout, Cin, 40]
        assert (match.sum(-1) == 1).all(), "a kernel that is not exactly one bank filter"
        assert 1 < int(match.any(0).any(0).sum()) <= 40
        assert layer.channel_scale is not None and layer.channel_scale.shape == (kernels.shape[0],)
    assert StyleGANRandom("default_init", 32).network(0, CPU).convs[0].channel_scale is None


def test_oriented_spectrum_is_natural_and_others_smooth() -> None:
    """The paper's StyleGAN-Oriented shows oriented high-frequency structure: a power-spectrum slope near natural
    images', where the demodulated variants (and the old "oriented") give soft clouds. At 64 px (slopes over 2..24
    cycles run steeper than at 128 px): oriented ~2.8, default_init ~4.4, the old oriented ~4.2."""
    from synthsight.analysis.reference_stats import reference_statistics

    def slope(variant: str) -> float:
        images = StyleGANRandom(variant, 64, images_per_network=2).generate(range(16), seed=0)  # 8 networks
        return reference_statistics(images).slope

    oriented = slope("oriented")
    assert 1.8 < oriented < 3.3
    assert slope("default_init") > oriented + 1.0


def test_stylegan_options() -> None:
    with pytest.raises(ValueError):
        StyleGANRandom("sparse", 32, images_per_network=0)
    with pytest.raises(ValueError, match="level_falloff"):
        StyleGANRandom("oriented", 32, level_falloff=0.0)
    assert StyleGANRandom("oriented", 32).config()["level_falloff"] == 1.5
    gen = StyleGANRandom("sparse", 96)
    assert gen.resolutions == [6, 12, 24, 48, 96]  # doubling from 6 px reaches 96 exactly
    assert StyleGANRandom("sparse", 36).resolutions[-1] == 64  # rendered at 64, then resized
    assert gen.config()["images_per_network"] == 400


# ------------------------------------------------------------------ programs
def test_program_labels_in_range() -> None:
    gen = Programs(size=32, num_classes=7)
    images, labels = gen.generate_with_labels(range(50), seed=0)
    assert images.shape == (50, 3, 32, 32)
    assert labels.dtype == torch.long and labels.min() >= 0 and labels.max() < 7
    assert len(set(labels.tolist())) == 7
    assert create_generator("programs", size=32).num_classes == 1000


def test_same_label_same_program() -> None:
    a, b = Programs(size=32), Programs(size=32)
    for label in (0, 17, 999):
        assert a.program_text(label) == b.program_text(label) == a.program_text(label)
    assert a.program_text(3) != Programs(size=32, program_seed=1).program_text(3)
    with pytest.raises(ValueError):
        a.program_text(1000)


def test_same_label_same_time_same_image() -> None:
    """Two images of one label differ by their time/offset only: with the same time and offset they are equal."""
    gen = Programs(size=32, num_classes=3)
    params = [gen.sample_params(image_rng(0, i, gen.salt)) for i in range(12)]
    i, j = next((i, j) for i in range(12) for j in range(i + 1, 12) if params[i]["label"] == params[j]["label"])
    same = {**params[j], "time": params[i]["time"], "offset": params[i]["offset"]}
    images = gen.render([params[i], params[j], same], CPU)
    assert torch.equal(images[0], images[2]) and not torch.equal(images[0], images[1])


def test_thousands_of_distinct_programs() -> None:
    gen = Programs(size=32, num_classes=2000)
    texts = {gen.program_text(k) for k in range(2000)}
    assert len(texts) == 2000
    # and the programs use the grammar broadly
    body = "\n".join(texts)
    for word in ("rotate", "length", "fbm", "repeat", "kaleidoscope", "sin(", "fract", "min(", "max(", "cos(2 pi"):
        assert word in body, word


def test_program_text_is_readable() -> None:
    gen = Programs(size=32)
    text = gen.program_text(42)
    lines = text.splitlines()
    assert lines[0] == "# program 42 (program_seed 0)"
    assert lines[1].startswith("p = uv + offset")
    assert any(line.startswith("tone = ") for line in lines)
    assert any(line.startswith("rgb = ") for line in lines)
    assert lines[-1] == "rgb = clamp(rgb, 0, 1)"
    assert text.isascii() and all(len(line) < 400 for line in lines)
    assert "+ -" not in text and "tensor" not in text


def test_programs_are_lively() -> None:
    """No program renders a flat image: per-image colour spread at 32 px."""
    images = Programs(size=32).generate(range(64), seed=0)
    assert images.flatten(2).std(2).mean(1).min() > 0.02


def test_no_seam_along_the_half_image_line() -> None:
    """Programs whose first warp is polar, with the origin at the image centre: a plain atan2 angle jumps by 2 pi
    across the ray x < 0, which drew a seam along the middle row's left half. Over a seeded sample, the mean jump
    across that row boundary (left half) stays within 3x the median jump across the neighbouring row boundaries."""
    size, m = 64, 31  # boundary m lies between rows 31 and 32, at y = 0
    x, y = _grid(size, CPU)
    t = torch.tensor([0.0, 3.0, 7.0]).view(3, 1, 1)
    ratios, seed = [], 0
    while len(ratios) < 24:
        program = _Draw(seed).program()
        seed += 1
        if not program.warps or program.warps[0].op != "polar":
            continue
        img = program.evaluate(x.expand(3, -1, -1), y.expand(3, -1, -1), t)
        jump = (img[:, :, 1:, : size // 2] - img[:, :, :-1, : size // 2]).abs().mean(dim=(1, 3))  # [3, S-1]
        around = torch.cat([jump[:, m - 4 : m], jump[:, m + 1 : m + 5]], 1).median(1).values
        ratios.append((jump[:, m] / (around + 1e-3)).max())
    assert torch.stack(ratios).max() < 3.0, torch.stack(ratios)


def test_every_warp_is_continuous_away_from_the_origin() -> None:
    """No coordinate warp cuts the plane: on a fine grid over [-1.5, 1.5]^2, neighbouring pixels' warped
    coordinates differ by at most 60 grid steps (a cut jumps by ~2, over 300 steps), except next to the origin,
    where angles are undefined. Catches a plain atan2 angle (polar) and fract tiling (repeat)."""
    n = 384
    h = 3.0 / n
    c = (torch.arange(n, dtype=torch.float32) + 0.5) * h - 1.5
    y, x = torch.meshgrid(c, c, indexing="ij")
    env = {"x": x.unsqueeze(0), "y": y.unsqueeze(0), "t": torch.full((1, 1, 1), 2.0)}
    far = (x * x + y * y).sqrt() > 0.15
    seen: dict[str, int] = {}
    seed = 0
    while len(seen) < 9 or min(seen.values()) < 3:  # three random instances of each of the nine warps
        node = _Draw(seed).warp()
        seed += 1
        if seen.get(node.op, 0) >= 3:
            continue
        seen[node.op] = seen.get(node.op, 0) + 1
        out = _warp(node, env)
        for v in (out["x"][0], out["y"][0]):
            dx = (v[:, 1:] - v[:, :-1]).abs()[far[:, 1:] & far[:, :-1]]
            dy = (v[1:] - v[:-1]).abs()[far[1:] & far[:-1]]
            assert max(dx.max(), dy.max()) < 60 * h, (node.op, node.k)
