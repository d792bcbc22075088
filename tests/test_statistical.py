"""Family-specific tests of the statistical generator (spectrum, colour model, WMM).

(The contract tests in test_generators.py cover shape, range, determinism and batch independence of every variant;
test_reference_stats.py holds each default variant to the reference code's figures.) Images stay small (32-64 px).
"""

from __future__ import annotations

import math

import pytest
import torch

import synthsight.generators.statistical as st
from synthsight.generators.base import image_rng
from synthsight.generators.statistical import (
    Statistical,
    _gl_std,
    _pyramid,
    _table_levels,
    amplitude_spectrum,
    colour_model,
    gl_from_normal,
    gl_quantile,
    gl_row,
    hermitian_phase,
    level_scale,
    match_marginals,
)

CPU = torch.device("cpu")


def kurtosis(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    x = x - x.mean(dim, keepdim=True)
    return (x**4).mean(dim) / (x**2).mean(dim) ** 2


def _spectrum(gen: Statistical, params: list[dict], slope: float | None = None) -> torch.Tensor:
    """The first-pass spectrum of the images' channels (unit std), Tensor[B, 3, S, S//2+1]."""
    slopes = torch.stack([p["slope"] for p in params]) if slope is None else torch.full((len(params),), slope)
    amp = amplitude_spectrum(slopes, torch.zeros(len(params)), gen.size, CPU)
    return torch.polar(amp.expand(-1, 3, -1, -1).contiguous(), torch.stack([p["phase"] for p in params]))


def _rows(gen: Statistical, params: list[dict]) -> list[torch.Tensor]:
    shapes, k = torch.stack([p["wmm_shape"] for p in params]), gen.orientations
    rows = [gl_row(0, shapes[..., : 1 + k]).view(-1, 1)]
    rows += [gl_row(j, shapes[..., 1 + j * k : 1 + (j + 1) * k]).view(-1, 1) for j in range(1, gen.levels)]
    return rows


# ------------------------------------------------------------------ spectrum
def test_amplitude_law_and_unit_std() -> None:
    """1 / (|fx|^(s+d) + |fy|^(s-d)) in cycles per pixel, scaled so that the real field has unit std."""
    size, s, d = 32, 2.0, 0.1
    amp = amplitude_spectrum(torch.tensor([s]), torch.tensor([d]), size, CPU)[0, 0]
    fy, fx = torch.fft.fftfreq(size).abs().view(-1, 1), torch.fft.rfftfreq(size).view(1, -1)
    law = 1.0 / (fx ** (s + d) + fy ** (s - d))
    law[0, 0] = 0.0
    ratio = amp[law > 0] / law[law > 0]
    assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-4) and amp[0, 0] == 0
    phase = hermitian_phase(torch.rand(4, size, size // 2 + 1, generator=torch.Generator().manual_seed(0)) * 6.2832)
    field = torch.fft.irfft2(torch.polar(amp.expand(4, -1, -1).contiguous(), phase), s=(size, size))
    assert torch.allclose(field.flatten(1).std(1, unbiased=False), torch.ones(4), atol=1e-4)


@pytest.mark.parametrize("size", [32, 33])
def test_hermitian_phase_is_a_real_images(size: int) -> None:
    """After hermitian_phase, irfft2 loses nothing: the field's rfft2 gives the phases back."""
    phase = hermitian_phase(torch.rand(size, size // 2 + 1, generator=torch.Generator().manual_seed(1)) * 6.2832)
    spec = torch.polar(torch.ones_like(phase), phase)
    back = torch.fft.rfft2(torch.fft.irfft2(spec, s=(size, size)))
    assert torch.allclose(back, spec, atol=1e-4)


# ------------------------------------------------------------------ pyramid and marginals
def test_pyramid_analysis_then_synthesis_is_exact(monkeypatch) -> None:
    """With the band matching replaced by the identity, the WMM gives the spectrum back (energies sum to one,
    the synthesis filters are the analysis filters' conjugates), at a power-of-two and an odd size."""
    monkeypatch.setattr(st, "gl_from_normal", lambda x, row: x)
    for size in (64, 36):
        gen = Statistical("spectrum_color_wmm", size)
        params = [gen.sample_params(image_rng(0, i, gen.salt)) for i in range(2)]
        spec = _spectrum(gen, params)
        out = gen._wmm(spec, _rows(gen, params), CPU, gaussian=True)
        assert torch.allclose(out, spec, atol=1e-4 * spec.abs().max()), size
    levels, _ = _pyramid(64, 4, CPU)
    assert [(g, a.shape[0]) for g, _, a in levels] == [(64, 5), (32, 4)]  # log2(64) - 4 levels; high-pass first


def test_truncated_laplacian_tables() -> None:
    """The quantile rows have the analytic std; level 0 (s = 4/255) is heavy-tailed, level 2 (s = 256/255,
    truncated at 200/255) nearly uniform, as the reference's histograms."""
    n = 100_000
    u = ((torch.arange(n, dtype=torch.float32) + 0.5) / n).view(1, -1)
    std = _gl_std(_table_levels(), CPU)
    for level, r in ((0, 0.4), (0, 0.8), (1, 0.6), (2, 0.5)):
        row = gl_row(level, torch.tensor([[r]]))
        x = gl_quantile(u, row)[0].double()
        assert torch.all(x[1:] >= x[:-1]) and x.abs().max() <= 200 / 255 + 1e-6
        assert abs(x.std().item() / std[row // st._LOGIT_STEPS].item() - 1.0) < 0.03, (level, r)
        if level == 0 and r == 0.8:  # truncation at 50 s is negligible here: the untruncated kurtosis
            expected = math.exp(math.lgamma(5 / r) + math.lgamma(1 / r) - 2 * math.lgamma(3 / r))
            assert abs(kurtosis(x).item() / expected - 1.0) < 0.1
        if level == 2:
            assert kurtosis(x).item() < 2.5  # uniform: 1.8, Gaussian: 3
    assert level_scale(0) == pytest.approx(4 / 255) and level_scale(2) == pytest.approx(256 / 255)


def test_gaussian_lookup_gives_the_quantiles() -> None:
    """Exact normal quantiles (any scale, any order) map to the generalised Laplacian's quantiles; a Gaussian
    sample maps to the same marginal as histogram matching gives, up to sampling noise."""
    n = 16384
    u = ((torch.arange(n, dtype=torch.float64) + 0.5) / n).expand(4, -1)
    row = gl_row(torch.tensor([[0], [0], [1], [2]]), torch.tensor([[0.4], [0.7], [0.5], [0.8]]))
    exact = gl_quantile(u.float().contiguous(), row)
    scale = exact.std(1, keepdim=True)
    normal = (math.sqrt(2.0) * torch.special.erfinv(2.0 * u - 1.0)).float() * torch.tensor([[0.1], [1.0], [3.0], [7.0]])
    shuffle = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    direct = gl_from_normal(normal[:, shuffle], row)
    assert torch.equal(direct, gl_from_normal(normal, row)[:, shuffle])  # pointwise
    assert ((torch.sort(direct, 1).values - exact).abs() / scale)[:, 16:-16].max() < 0.02
    sample = torch.randn(4, n, generator=torch.Generator().manual_seed(0))
    direct = torch.sort(gl_from_normal(sample, row), 1).values
    matched = torch.sort(match_marginals(sample, lambda q: gl_quantile(q, row)), 1).values
    assert ((direct - matched).abs() / scale)[:, 164:-164].mean() < 0.03  # 1% .. 99%
    assert torch.allclose(direct.std(1), matched.std(1), rtol=0.03)


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


# ------------------------------------------------------------------ WMM behaviour
def _band_std(x: torch.Tensor, size: int) -> torch.Tensor:
    """Std of each level-0 band (high-pass + oriented) of channels x Tensor[B, 3, S, S], Tensor[B, 3, 5]."""
    _, _, amps = _pyramid(size, 4, CPU)[0][0]
    bands = torch.fft.irfft2(torch.fft.rfft2(x).unsqueeze(2) * amps, s=(size, size))
    return bands.flatten(3).std(3)


@pytest.mark.parametrize("variant", ["spectrum_color_wmm", "spectrum_color_wmm_smooth"])
def test_band_deviation_is_fixed_per_level_not_by_the_slope(variant: str) -> None:
    """The default sets each fine band's deviation by the model (the reference), whatever the drawn slope; the
    smooth variant keeps each band's own deviation, so a steep spectrum leaves its fine bands faint."""
    gen = Statistical(variant, 64)
    params = [gen.sample_params(image_rng(0, i, gen.salt)) for i in range(4)]
    rows = _rows(gen, params)
    flat = gen._wmm(_spectrum(gen, params, slope=0.5), rows, CPU, gaussian=True)
    steep = gen._wmm(_spectrum(gen, params, slope=3.5), rows, CPU, gaussian=True)
    ratio = _band_std(torch.fft.irfft2(steep, s=(64, 64)), 64) / _band_std(torch.fft.irfft2(flat, s=(64, 64)), 64)
    if variant == "spectrum_color_wmm":
        assert ratio.median() > 0.7 and ratio.median() < 1.4
    else:
        assert ratio.median() < 0.1


def test_wmm_bands_are_heavier_tailed_than_the_spectrum() -> None:
    """The WMM turns the Gaussian level-0 bands of random-phase noise into heavy-tailed ones."""
    gen = Statistical("spectrum_color_wmm", 64)
    params = [gen.sample_params(image_rng(0, i, gen.salt)) for i in range(4)]
    spec = _spectrum(gen, params, slope=1.0)
    out = gen._wmm(spec, _rows(gen, params), CPU, gaussian=True)
    _, _, amps = _pyramid(64, 4, CPU)[0][0]

    def band_kurtosis(x: torch.Tensor) -> torch.Tensor:
        return kurtosis(torch.fft.irfft2(x.unsqueeze(2) * amps, s=(64, 64)).flatten(3))

    before, after = band_kurtosis(spec), band_kurtosis(out)
    assert before.median() < 3.5  # Gaussian bands: 3
    assert after.median() > 3.7 and (after > before + 0.5).float().mean() > 0.75 and (after > before).all()


# ------------------------------------------------------------------ colour model and output
def test_colour_model_is_posterised_and_orthonormal() -> None:
    """The raster-run layout leaves most samples at palette colours: the decorrelated channels' quantile tables
    are mostly flat steps. The basis is orthonormal."""
    flat_steps = []
    for i in range(16):
        p = colour_model(image_rng(0, i, "colour"), 128)
        assert torch.allclose(p["basis"].T @ p["basis"], torch.eye(3), atol=1e-5)
        q = p["quantiles"]
        assert q.shape == (3, 257) and (q[:, 1:] >= q[:, :-1]).all()
        assert 0.0 <= p["mean"].min() and p["mean"].max() <= 1.0
        steps = q[:, 1:] - q[:, :-1]
        flat_steps.append((steps < 1e-6).float().mean())
    assert torch.stack(flat_steps).median() > 0.3


def test_colour_histograms_hit_their_targets() -> None:
    """Each decorrelated channel of a spectrum_color(_wmm) image has the colour model's quantiles."""
    for variant in ("spectrum_color", "spectrum_color_wmm"):
        gen = Statistical(variant, 64)
        for i in range(4):
            params = gen.sample_params(image_rng(0, i, gen.salt))
            got = torch.sort(gen.channels([params], CPU)[0].view(3, -1), dim=1).values
            pos = (torch.linspace(0, 1, 257) * (got.shape[1] - 1)).round().long()
            diff = (got[:, pos] - params["quantiles"]).abs()  # (off only next to a posterised histogram's jumps)
            assert diff.mean() < 0.005 and diff.quantile(0.95) < 0.02, (variant, i)


def test_spectrum_channels_share_one_stretch() -> None:
    """`spectrum` stretches all three channels together (one dominant hue), not each to [0, 1] (rainbow)."""
    images = Statistical("spectrum", 32).generate(range(16), seed=0)
    lo, hi = images.amin(dim=(2, 3)), images.amax(dim=(2, 3))  # [16, 3]
    assert torch.allclose(lo.amin(1), torch.zeros(16)) and torch.allclose(hi.amax(1), torch.ones(16))
    assert ((hi - lo).amin(1) < 0.9).float().mean() > 0.5


def test_output_is_8_bit_unless_asked() -> None:
    levels = Statistical("spectrum_color", 32).generate(range(2), seed=0) * 255
    assert torch.allclose(levels, levels.round(), atol=1e-3)
    raw = Statistical("spectrum_color", 32, quantize=False).generate(range(2), seed=0) * 255
    assert not torch.allclose(raw, raw.round(), atol=1e-3)


def test_statistical_rejects_bad_options() -> None:
    with pytest.raises(ValueError):
        Statistical("spectrum_color_wmm", 32, shape=(0.2, 0.8))
    with pytest.raises(ValueError):
        Statistical("spectrum_color", 32, iterations=0)
    with pytest.raises(ValueError):
        Statistical("spectrum", 32, slope=(2.0, 1.0))
