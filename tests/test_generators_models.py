"""Family-specific tests of the statistical, stylegan_random and programs generators.

(The contract tests in test_generators.py cover shape, range, determinism and batch independence of every
variant.) Images stay small (32-64 px) so the file runs in seconds on a 2-core CPU.
"""

from __future__ import annotations

import math

import pytest
import torch

from synthsight.generators import create_generator
from synthsight.generators.base import image_rng
from synthsight.generators.programs import Programs
from synthsight.generators.spectrum import Spectrum
from synthsight.generators.statistical import (
    Statistical,
    _pyramid,
    amplitude_spectrum,
    gl_quantile,
    match_marginals,
    shape_index,
)
from synthsight.generators.stylegan_random import StyleGANRandom, filter_bank

CPU = torch.device("cpu")


def kurtosis(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    x = x - x.mean(dim, keepdim=True)
    return (x**4).mean(dim) / (x**2).mean(dim) ** 2


# ------------------------------------------------------------------ statistical
def test_amplitude_matches_spectrum_family() -> None:
    """The statistical family's amplitude law is the spectrum family's: same field from the same phases."""
    spec = Spectrum("gray", 32)
    p = spec.sample_params(image_rng(0, 3, spec.salt))
    amp = amplitude_spectrum(p["slope"].view(1), p["anisotropy"].view(1), 32, CPU)[0, 0]
    field = torch.fft.irfft2(torch.polar(amp, p["phase"]), s=(32, 32))
    assert torch.allclose(field, spec.noise_field([p], CPU)[0], atol=1e-6, rtol=1e-4)


def test_pyramid_windows_sum_to_one() -> None:
    """Unmodified bands plus the residual give the image back exactly (analysis-only pyramid)."""
    size = 64
    levels, residual = _pyramid(size, 4, CPU)
    total = residual.clone()
    for grid, rows, windows in levels:
        total[rows.view(-1, 1), torch.arange(grid // 2 + 1).view(1, -1)] += windows.sum(0)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-5)
    assert [g for g, _, _ in levels] == [64, 32, 16, 8]


@pytest.mark.parametrize("r", [0.4, 0.5, 0.8])
def test_generalised_laplacian_quantiles(r: float) -> None:
    """Quantiles at evenly spaced levels reproduce the unit variance and kurtosis G(5/r)G(1/r)/G(3/r)^2."""
    n = 200_000
    u = ((torch.arange(n, dtype=torch.float32) + 0.5) / n).view(1, -1)
    x = gl_quantile(u, shape_index(torch.tensor([[r]])), torch.ones(1, 1))[0].double()
    expected = math.exp(math.lgamma(5 / r) + math.lgamma(1 / r) - 2 * math.lgamma(3 / r))
    assert abs(x.std().item() - 1.0) < 0.03
    assert abs(kurtosis(x).item() / expected - 1.0) < 0.15
    assert torch.all(x[1:] >= x[:-1])  # monotone


def test_match_marginals_hits_the_target() -> None:
    x = torch.randn(3, 4096) * torch.tensor([[1.0], [5.0], [0.1]]) + 2.0
    target = torch.sort(torch.rand(3, 4096) ** 2, dim=1).values  # skewed targets
    table = torch.cat([target[:, :1], target[:, 255::256]], dim=1)  # quantiles at k / 16

    def quantile(u: torch.Tensor) -> torch.Tensor:
        pos = u * 16
        i = pos.floor().clamp(0, 15).long()
        a, b = torch.gather(table, 1, i), torch.gather(table, 1, i + 1)
        return a + (pos - i) * (b - a)

    y = match_marginals(x, quantile, centre=torch.full((3, 1), 2.0))
    assert (torch.argsort(y, 1) == torch.argsort(x, 1)).float().mean() > 0.99  # order kept
    got = torch.sort(y, dim=1).values
    assert (got - target).abs().max() < 0.03


def test_colour_histograms_hit_their_targets() -> None:
    """Each RGB channel of a spectrum_color(_wmm) image has the colour model's quantiles."""
    for variant in ("spectrum_color", "spectrum_color_wmm"):
        gen = Statistical(variant, 64)
        for i in range(4):
            params = gen.sample_params(image_rng(0, i, gen.salt))
            image = gen.render([params], CPU)[0].view(3, -1)
            got = torch.sort(image, dim=1).values
            levels = torch.linspace(0, 1, 257)
            pos = (levels * (got.shape[1] - 1)).round().long()
            assert (got[:, pos] - params["quantiles"]).abs().max() < 0.03, (variant, i)


def test_colour_model_parameters() -> None:
    gen = Statistical("spectrum_color", 32)
    p = gen.sample_params(image_rng(0, 0, gen.salt))
    # mixing x unmixing = identity on the colour space (the PCA basis is orthonormal)
    assert torch.allclose(p["unmixing"] @ p["mixing"], torch.eye(3), atol=1e-3)
    q = p["quantiles"]
    assert q.shape == (3, 257) and (q[:, 1:] >= q[:, :-1]).all() and q.min() >= 0 and q.max() <= 1


def test_wmm_bands_are_heavier_tailed_than_the_spectrum() -> None:
    """The WMM turns the Gaussian pyramid bands of random-phase noise into generalised-Laplacian ones."""
    gen = Statistical("spectrum_color_wmm", 64)
    params = [gen.sample_params(image_rng(0, i, gen.salt)) for i in range(4)]
    amp = amplitude_spectrum(torch.full((4,), 1.0), torch.zeros(4), 64, CPU)
    phase = torch.stack([p["phase"] for p in params])
    spec = torch.polar(amp.expand_as(phase).contiguous(), phase)
    shapes = shape_index(torch.stack([p["wmm_shape"] for p in params])).permute(2, 0, 1, 3).reshape(gen.levels, -1, 1)
    out = gen._wmm(spec, shapes, CPU)
    grid, _, windows = _pyramid(64, 4, CPU)[0][0]

    def band_kurtosis(x: torch.Tensor) -> torch.Tensor:
        bands = torch.fft.irfft2(torch.fft.rfft2(x).unsqueeze(2) * windows, s=(grid, grid))
        return kurtosis(bands.flatten(3))

    before = band_kurtosis(torch.fft.irfft2(spec, s=(64, 64)))
    after = band_kurtosis(out)
    assert before.median() < 3.5  # Gaussian bands: 3
    assert after.median() > 4.5 and (after > before + 1.0).float().mean() > 0.9


def test_wmm_images_have_sparser_gradients() -> None:
    """End to end, with the same spectra and colours: WMM images have heavier-tailed derivatives."""

    def gradient_kurtosis(variant: str) -> float:
        grey = Statistical(variant, 64).generate(range(16), seed=0).mean(1)
        dx, dy = grey[:, :, 1:] - grey[:, :, :-1], grey[:, 1:] - grey[:, :-1]
        return kurtosis(torch.cat([dx.flatten(1), dy.flatten(1)], 1)).median().item()

    assert gradient_kurtosis("spectrum_color_wmm") > 1.1 * gradient_kurtosis("spectrum_color")


def test_statistical_rejects_bad_options() -> None:
    with pytest.raises(ValueError):
        Statistical("spectrum_color_wmm", 32, shape=(0.2, 0.8))
    with pytest.raises(ValueError):
        Statistical("spectrum_color", 32, iterations=0)


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
