import math

import pytest
import torch

from synthsight.analysis.image_stats import effective_rank_fraction, image_statistics, spectrum_slopes


def _power_law_noise(n, size, alpha, seed=0):
    """Gaussian noise whose power spectrum falls exactly as 1/f^alpha."""
    g = torch.Generator().manual_seed(seed)
    fy = torch.fft.fftfreq(size, d=1.0 / size).view(-1, 1)
    fx = torch.fft.rfftfreq(size, d=1.0 / size).view(1, -1)
    f = torch.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    amp = f.pow(-alpha / 2)
    amp[0, 0] = 0
    spec = torch.complex(torch.randn(n, size, size // 2 + 1, generator=g), torch.randn(n, size, size // 2 + 1, generator=g))
    x = torch.fft.irfft2(spec * amp, s=(size, size))
    x = (x - x.amin(dim=(1, 2), keepdim=True)) / (x.amax(dim=(1, 2), keepdim=True) - x.amin(dim=(1, 2), keepdim=True))
    return x.unsqueeze(1).expand(n, 3, size, size)


@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.0])
def test_spectrum_slope_recovers_the_power_law(alpha):
    slopes = spectrum_slopes(_power_law_noise(8, 128, alpha))
    assert slopes.mean().item() == pytest.approx(alpha, abs=0.25)


def test_statistics_of_a_set():
    images = _power_law_noise(16, 64, 2.0)
    stats = image_statistics(images)
    assert stats.n == 16 and 1.6 < stats.slope_mean < 2.4
    assert stats.saturation == pytest.approx(0.0, abs=1e-5)  # grey images
    assert 0 < stats.structure_diversity <= 1 and math.isfinite(stats.colour_diversity)


def test_diversity_is_low_for_copies_and_high_for_independent_images():
    one = _power_law_noise(1, 64, 2.0)
    copies = one.expand(16, 3, 64, 64)
    assert effective_rank_fraction(copies[:, 0].flatten(1)) < 0.1
    assert image_statistics(_power_law_noise(16, 64, 2.0)).structure_diversity > 0.3
    assert image_statistics(copies).colour_diversity == pytest.approx(0.0, abs=1e-5)


def test_bad_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="expected Tensor"):
        image_statistics(torch.rand(1, 3, 8, 8))


def test_stats_command_writes_tables(tmp_path, capsys):
    pytest.importorskip("skimage")
    from synthsight.cli import main

    assert main(["stats", "--family", "dead_leaves/squares,spectrum", "--n", "8", "--size", "32",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "natural photographs (scikit-image)" in out and "dead_leaves/squares" in out
    for name in ("stats.json", "stats.csv", "stats.md"):
        assert (tmp_path / name).stat().st_size > 0
