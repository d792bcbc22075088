"""Every default family measures like its reference code (shared/REFERENCE.md section 7), and the metrics are right."""

import pytest
import torch

from synthsight.analysis.reference_stats import (REFERENCE, compare_with_reference, reference_statistics,
                                                 reference_table)


def _power_law_noise(alpha: float, n: int = 8, size: int = 128) -> torch.Tensor:
    """Grey random-phase noise whose power falls as 1/f^alpha."""
    g = torch.Generator().manual_seed(0)
    f = torch.fft.fftfreq(size, d=1.0 / size)
    radius = torch.sqrt(f.view(-1, 1) ** 2 + f.view(1, -1) ** 2).clamp(min=1.0)
    spectrum = radius.pow(-alpha / 2) * torch.exp(2j * torch.pi * torch.rand(n, size, size, generator=g))
    x = torch.fft.ifft2(spectrum).real
    x = (x - x.mean()) / x.std() * 0.1 + 0.5
    return x.unsqueeze(1).expand(n, 3, size, size).clamp(0, 1)


@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.0])
def test_slope_recovers_the_power_law(alpha):
    assert reference_statistics(_power_law_noise(alpha)).slope == pytest.approx(alpha, abs=0.15)


def test_grey_images_have_no_chroma_and_colour_images_do():
    grey = _power_law_noise(2.0)
    assert reference_statistics(grey).chroma == pytest.approx(0.0, abs=1e-6)
    colour = grey.clone()
    colour[:, 0] = 1 - colour[:, 0]
    assert reference_statistics(colour).chroma > 0.05


def test_std_and_mean_of_known_images():
    x = torch.zeros(4, 3, 32, 32)
    x[:, :, :, :16] = 1.0  # half black, half white: std 0.5 (population) per channel, mean 0.5
    s = reference_statistics(x)
    assert s.mean == pytest.approx(0.5)
    assert s.std == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_default_family_within_tolerance_of_its_reference(name):
    (row,) = compare_with_reference([name], n=64, size=128, seed=0)
    assert not row.outside(), reference_table([row])
