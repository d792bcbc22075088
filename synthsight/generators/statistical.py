"""Statistical image models: power-law spectrum, colour model and wavelet marginal model (WMM).

After Baradad et al. 2021 ("Learning to See by Looking at Noise", statistical image models), written from the
paper's description and checked figure by figure against the authors' generator (shared/REFERENCE.md, section 7).
Values are in image units ([0, 1] = the reference's 0..255).

- Spectrum: three channels of random-phase noise with amplitude 1 / (|fx|^(s+d) + |fy|^(s-d)), frequencies in
  cycles per pixel, s ~ U(0.5, 3.5), d ~ N(0, 0.05^2), DC removed. The first pass starts like the reference from
  uniform noise: each channel has the mean (0.502) and std (0.290) of U(0, 256) / 255.
- Colour model: 3 + floor(U(0, 20)) uniform RGB colours with proportions 0.001 + U(0, 1), laid out as runs of
  pixels in raster order (so mostly horizontal stripes), blurred by an m x m box, m = ceil(U(0, 10)) pixels, and
  stretched to [0, 1]. Its colour PCA gives an orthonormal basis: the image is synthesised in the decorrelated
  channels, each channel's histogram is matched to the colour model's in that channel (CDF matching), and the
  basis and mean colour turn the channels back into RGB. Posterised histograms give flat colour plateaus with sharp
  iso-edges. The layout is sampled on `_LAYOUT_SAMPLES` pixels (whole columns: vertical blur only; the horizontal
  blur only touches a few pixels where a run ends mid-row).
- WMM: each channel is split by a steerable pyramid built in the Fourier domain (a non-oriented high-pass band,
  J = log2(S) - 4 octave levels of K = 4 oriented bands, and an untouched low-pass residual), and every band's
  coefficients are matched to a generalised Laplacian p(x) ~ exp(-|x/s|^r), r ~ U(0.4, 0.8) per band, truncated
  to |x| <= 200/255. The scale is fixed per level, s = 4^(2^j) / 255 (coefficients on level j's 2^-j grid carry
  the FFT's 4^j gain), so the band deviations are set by the model, not by the drawn slope: fine levels carry
  much of the energy (spectrum slope ~1.3 whatever s), the coarsest levels are nearly uniform (the truncation
  bites), and the bands with small r dominate their level: fine wormy, scaly, oriented texture. The bands are
  put back through the synthesis filters (odd, edge-like oriented wavelets).
- Passes: spectrum -> WMM -> colour histogram; later passes re-impose the amplitude spectrum on the current
  phases (keeping each channel's mean and std). The reference iterates 10 times; `iterations` defaults to 1,
  where the figures already match (10 passes of the reference: slope 1.30, std 0.170; 1 pass: 1.30, 0.170).
- Output: mean colour + basis x channels, then stretched to [0, 1] over the whole image (all three channels
  together, as the reference does).

Variants:
    spectrum_color_wmm  spectrum -> WMM -> colour, iterated (the paper's best statistical model)
    spectrum            correlated channels: the noise channels (mean 0.5) through the colour PCA basis plus the
                        mean colour, no histograms; the joint stretch gives one dominant hue at low contrast
    spectrum_color      spectrum -> colour, iterated: posterised colour plateaus
    spectrum_color_wmm_smooth   the WMM with each band keeping its own deviation (the drawn slope survives):
                        smooth colour clouds with sparse detail (synthsight's look before version 2)

The pyramid's windows: level j's radial energy window is cos^2(pi/2 (log2 rho - c_j)) over the two octaves around
c_j = log2(S/2) - 1 - j (rho in cycles per image); the high-pass band takes the rest above c_0, the low-pass residual
the rest below the last level. The angular energy window of band k is cos^(2K-2)(theta - k pi/K) / const. The
analysis filters are the square roots (times (-i)^(K-1): odd filters for K = 4), the synthesis filters their
conjugates, so unmodified bands sum back to the image exactly. Level j lives on a (S/2^j)-pixel grid.

Marginal matching is done with histograms, not sorts (a sort of 16k floats costs more than twenty 128-px FFTs on
one core): each band is binned into up to 1024 bins over its range, the empirical CDF at the bin edges is mapped
through the target quantile function, and each value is interpolated linearly within its bin. The truncated
generalised-Laplacian quantiles come from a table (per level scale, 41 shapes r in [0.4, 0.8], logit(u) axis
which resolves the tails), built once per process by bisection of the regularised incomplete gamma function.

On CPU images are rendered one at a time (each with FFT calls of one fixed shape: MKL's batched transforms round
differently from single ones, see `spectrum.py`), so an image is bit-identical whatever batch it is in; on other
devices the whole batch is rendered at once.

Example:
    >>> gen = GENERATORS.create("statistical", variant="spectrum_color_wmm", size=128)
    >>> images = gen.generate(range(16), seed=0)   # Tensor[16, 3, 128, 128] in [0, 1]
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Sequence

import numpy as np
import torch

from synthsight.generators.base import Generator
from synthsight.registry import GENERATORS

_QUANTILES = 256  # entries of each channel's target quantile table (values at u = k / 256)
_LAYOUT_SAMPLES = 4096  # colour-model pixels sampled (whole columns of the layout)
_MAX_BLUR = 10  # the colour layout's box blur is m = ceil(U(0, 10)) pixels
_START_MEAN = 128.0 / 255.0  # mean and std of U(0, 256) / 255: the reference's starting image
_START_STD = 256.0 / 255.0 / math.sqrt(12.0)
_BAND_LIMIT = 200.0 / 255.0  # the reference's band histograms span [-200, 200] (0..255 units)
_R_RANGE = (0.4, 0.8)
_R_GRID = torch.linspace(*_R_RANGE, 41, dtype=torch.float64)  # shapes r of the generalised-Laplacian table
_LOGIT_MAX, _LOGIT_STEPS = 16.0, 1601  # logit(u) axis of that table
_LOGIT_STEP = 2 * _LOGIT_MAX / (_LOGIT_STEPS - 1)
_NORMAL_MAX, _NORMAL_STEPS = 8.0, 4097  # z axis of the table that maps Gaussian values


# ---------------------------------------------------------------------------------------------- spectrum
@lru_cache(maxsize=32)
def _log_frequencies(size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """log|fy| as Tensor[S, 1] and log|fx| as Tensor[1, S//2+1], in cycles per pixel (log 0 = -inf)."""
    fy = torch.fft.fftfreq(size).abs()
    fx = torch.fft.rfftfreq(size)
    return fy.log().view(size, 1).to(device), fx.log().view(1, -1).to(device)


@lru_cache(maxsize=32)
def _half_spectrum_weights(size: int, device: torch.device) -> torch.Tensor:
    """How often each rfft column stands in the full spectrum (1 for column 0 and, for even S, S/2; else 2)."""
    w = torch.full((size // 2 + 1,), 2.0)
    w[0] = 1.0
    if size % 2 == 0:
        w[-1] = 1.0
    return w.to(device)


def amplitude_spectrum(slope: torch.Tensor, aniso: torch.Tensor, size: int, device: torch.device) -> torch.Tensor:
    """1 / (|fx|^(s+d) + |fy|^(s-d)) (cycles per pixel), DC 0, scaled so that a field with these amplitudes and
    Hermitian phases has unit std: Tensor[B, 1, S, S//2+1] for slope, aniso Tensor[B]."""
    log_fy, log_fx = _log_frequencies(size, device)
    s, d = slope.view(-1, 1, 1, 1), aniso.view(-1, 1, 1, 1)
    denom = torch.exp(log_fx * (s + d)) + torch.exp(log_fy * (s - d))
    denom[..., 0, 0] = math.inf
    amp = torch.reciprocal(denom)
    energy = (amp * amp * _half_spectrum_weights(size, device)).sum(dim=(-2, -1), keepdim=True)
    return amp.mul_(size * size / energy.sqrt_())  # Parseval: var = sum_full |A|^2 / S^4


def hermitian_phase(phase: torch.Tensor) -> torch.Tensor:
    """Make random phases Tensor[..., S, S//2+1] those of a real image's rfft2 (in place): on column 0 (and S/2
    for even S) row S-k gets minus row k's phase, and the self-conjugate entries get phase 0 or pi."""
    size = phase.shape[-2]
    cols = [0] + ([phase.shape[-1] - 1] if size % 2 == 0 else [])
    half = (size + 1) // 2
    for c in cols:
        col = phase[..., c]
        col[..., size - half + 1 :] = -col[..., 1:half].flip(-1)
        selfconj = [0] + ([size // 2] if size % 2 == 0 else [])
        col[..., selfconj] = torch.where(col[..., selfconj] < math.pi, 0.0, math.pi)
    return phase


def _moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std over the last two dims, keepdim."""
    mean = x.mean(dim=(-2, -1), keepdim=True)
    std = torch.linalg.vector_norm(x - mean, dim=(-2, -1), keepdim=True) / math.sqrt(x.shape[-1] * x.shape[-2])
    return mean, std


# ---------------------------------------------------------------------------------------------- histograms
def match_marginals(
    x: torch.Tensor, target_quantile, centre: torch.Tensor | None = None, bins: int | None = None
) -> torch.Tensor:
    """Map each row of x Tensor[M, N] so that its histogram follows a target distribution.

    The values of a row are binned into `bins` (default `histogram_bins(N)`) equal bins over [c - m, c + m]
    (c = `centre` Tensor[M, 1] or 0, m = the row's largest |x - c|). The empirical CDF at the bin edges goes
    through the target quantile function, and each value is interpolated linearly within its bin: a monotone,
    continuous map (so rounding differences between devices move outputs by rounding amounts), exact at the
    bin edges. `target_quantile(u)` maps CDF levels u Tensor[M, bins + 1] (clipped to [0.5/N, 1 - 0.5/N]) to
    the target's quantiles. Only simple elementwise ops, a bincount and two index_selects: on one CPU core a
    sort of 16k floats costs more than the whole match, and fused ops such as addcmul are many times slower.
    """
    m, n = x.shape
    bins = bins or histogram_bins(n)
    if centre is not None:
        x = x - centre
    radius = x.abs().amax(dim=1, keepdim=True)
    scale = radius.clamp_min_(1e-30).reciprocal_().mul_(0.5 * bins * (1.0 - 2.0**-12))
    position = (x * scale).add_(0.5 * bins)  # in [0, bins)
    index = position.to(torch.int32)  # truncation = floor here
    frac = position.sub_(index)
    index += _row_offsets(m, bins, x.device)
    index = index.view(-1)
    counts = torch.bincount(index, minlength=m * bins).view(m, bins).to(x.dtype)
    cdf = torch.zeros(m, bins + 1, dtype=x.dtype, device=x.device)
    torch.cumsum(counts, dim=1, out=cdf[:, 1:])
    edges = target_quantile(cdf.mul_(1.0 / n).clamp_(0.5 / n, 1.0 - 0.5 / n))  # [M, bins + 1]
    left = edges[:, :-1].reshape(-1)
    step = (edges[:, 1:] - edges[:, :-1]).view(-1)
    y = step.index_select(0, index).view(m, n).mul_(frac)
    return y.add_(left.index_select(0, index).view(m, n))


@lru_cache(maxsize=64)
def _row_offsets(rows: int, bins: int, device: torch.device) -> torch.Tensor:
    """Tensor[rows, 1] int32: where each row's bins start in the flattened histogram."""
    return (torch.arange(rows, dtype=torch.int32) * bins).view(rows, 1).to(device)


def interpolate_table(table: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """Row-wise linear interpolation: table Tensor[M, L+1] at fractional positions Tensor[M, Q] in [0, L]."""
    last = table.shape[1] - 1
    i = position.floor().clamp_(0, last - 1)
    w = position - i
    i = i.long()
    a = torch.gather(table, 1, i)
    b = torch.gather(table, 1, i + 1)
    return a + w * (b - a)


def level_scale(level: int) -> float:
    """The generalised-Laplacian scale s of pyramid level j (image units): 4^(2^j) / 255, as the reference."""
    return 4.0 ** (2.0**level) / 255.0


def _truncated_gl_quantiles(levels: int, spread: torch.Tensor) -> torch.Tensor:
    """Quantiles of the truncated generalised Laplacians p(x) ~ exp(-|x / s_j|^r), |x| <= _BAND_LIMIT, s_j =
    `level_scale(j)`, r on _R_GRID, at the CDF levels u >= 1/2 given as spread = 2u - 1 Tensor[L] (float64,
    increasing from 0): Tensor[levels, len(_R_GRID), 2L - 1], odd, for the levels 1 - u then u.

    |x / s|^r ~ Gamma(1/r), truncated: P(1/r, |x/s|^r) = (2u - 1) P(1/r, (limit/s)^r), solved by bisection in
    float64. Built on CPU, so every device gets the same numbers.
    """
    scale = torch.tensor([level_scale(j) for j in range(levels)], dtype=torch.float64).view(-1, 1, 1)
    a = (1.0 / _R_GRID).view(1, -1, 1)
    mass = torch.special.gammainc(a, (_BAND_LIMIT / scale) ** (1.0 / a))  # P(|x| <= limit) untruncated
    q = spread.view(1, 1, -1) * mass  # [levels, R, L]
    lo, hi = torch.zeros_like(q), torch.full_like(q, _BAND_LIMIT)
    for _ in range(48):  # limit / 2^48 < 1e-14
        mid = 0.5 * (lo + hi)
        below = torch.special.gammainc(a, (mid / scale) ** (1.0 / a)) < q
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    half = 0.5 * (lo + hi)
    return torch.cat([-half.flip(-1)[..., :-1], half], dim=-1)


@lru_cache(maxsize=8)
def _gl_table(levels: int, device: torch.device) -> torch.Tensor:
    """The quantiles on a logit axis (which resolves the heavy tails), Tensor[levels, len(_R_GRID), _LOGIT_STEPS]:
    entry [j, i, k] at CDF level u = sigmoid(l_k), l_k on linspace(-_LOGIT_MAX, _LOGIT_MAX)."""
    logit = torch.linspace(0.0, _LOGIT_MAX, (_LOGIT_STEPS + 1) // 2, dtype=torch.float64)
    return _truncated_gl_quantiles(levels, torch.tanh(0.5 * logit)).float().to(device)


@lru_cache(maxsize=8)
def _gl_normal_table(levels: int, device: torch.device) -> torch.Tensor:
    """The quantiles at the CDF levels of standard normal values, Tensor[levels * len(_R_GRID), _NORMAL_STEPS]:
    entry k at u = Phi(z_k), z_k on linspace(-_NORMAL_MAX, _NORMAL_MAX). Maps Gaussian bands in one lookup."""
    z = torch.linspace(0.0, _NORMAL_MAX, (_NORMAL_STEPS + 1) // 2, dtype=torch.float64)
    table = _truncated_gl_quantiles(levels, torch.special.erf(z / math.sqrt(2.0)))
    return table.float().view(-1, _NORMAL_STEPS).to(device)


def gl_from_normal(x: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    """Map rows of Gaussian values x Tensor[M, N] (zero mean) to the generalised Laplacians of the table rows
    `row` Tensor[M, 1] (from `gl_row`): y = Q(Phi(x / std(x))), the nearest entry of a table with z steps of
    1/256. For bands of random-phase noise (Gaussian) this is histogram matching without the histogram."""
    table = _gl_normal_table(_table_levels(), x.device).view(-1)
    std = torch.linalg.vector_norm(x, dim=1, keepdim=True).div_(math.sqrt(x.shape[1]))
    step = (_NORMAL_STEPS - 1) / (2.0 * _NORMAL_MAX)
    pos = x * std.clamp_min_(1e-30).reciprocal_().mul_(step)
    pos = pos.add_(_NORMAL_MAX * step + 0.5).clamp_(0.0, _NORMAL_STEPS - 1)
    offset = row.div(_LOGIT_STEPS, rounding_mode="floor").mul_(_NORMAL_STEPS).to(torch.int32)
    index = pos.to(torch.int32).add_(offset)  # (int32 + index_select: 2-3x faster than int64 + take on CPU)
    return table.index_select(0, index.view(-1)).view(x.shape)


@lru_cache(maxsize=8)
def _gl_std(levels: int, device: torch.device) -> torch.Tensor:
    """The standard deviation of each row of `_gl_table`, Tensor[levels * len(_R_GRID), 1]: for |x/s|^r ~
    Gamma(1/r) truncated at g = (limit/s)^r, E x^2 = s^2 G(3/r) P(3/r, g) / (G(1/r) P(1/r, g))."""
    scale = torch.tensor([level_scale(j) for j in range(levels)], dtype=torch.float64).view(-1, 1)
    a = (1.0 / _R_GRID).view(1, -1)
    g = (_BAND_LIMIT / scale) ** (1.0 / a)
    log_ratio = torch.lgamma(3.0 * a) - torch.lgamma(a)
    var = scale**2 * torch.exp(log_ratio) * torch.special.gammainc(3.0 * a, g) / torch.special.gammainc(a, g)
    return var.sqrt().float().view(-1, 1).to(device)


def gl_quantile(u: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    """Truncated generalised-Laplacian quantiles at CDF levels u Tensor[M, Q] (strictly inside (0, 1)) for the
    table rows `row` Tensor[M, 1] (int64, from `gl_row`): the nearest entry (logit steps of 0.02)."""
    table = _gl_table(_table_levels(), u.device)
    logit = torch.log(u).sub_(torch.log(1.0 - u))  # (vectorised log; log1p is not)
    pos = logit.add_(_LOGIT_MAX + 0.5 * _LOGIT_STEP).mul_(1.0 / _LOGIT_STEP).clamp_(0, _LOGIT_STEPS - 1)
    index = pos.to(torch.int64).add_(row)
    return table.view(-1).take(index)


def _table_levels() -> int:
    """Levels of the quantile table: enough for 2^(4 + 7) = 2048-pixel images."""
    return 7


def gl_row(level: int | torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
    """Where the quantile table's row for (level, shape r) starts in the flattened table (int64); r is rounded to
    the table's grid (steps of 0.01)."""
    steps = len(_R_GRID) - 1
    pos = (shape - _R_RANGE[0]) * (steps / (_R_RANGE[1] - _R_RANGE[0]))
    return (pos.round_().clamp_(0, steps).long() + level * len(_R_GRID)).mul_(_LOGIT_STEPS)


def histogram_bins(n: int) -> int:
    """Bins for matching n values: n / 16 within [128, 1024] (nearest-bin quantisation stays below 1/1000 of
    the range for large bands, and every bin of a small band still holds a few values)."""
    return max(128, min(1024, n // 16))


# ---------------------------------------------------------------------------------------------- pyramid
def pyramid_levels(size: int) -> int:
    """Oriented levels of the pyramid: log2(S) - 4 (3 at 128 px, 4 at 256, as the reference), at least 1."""
    return max(1, int(math.floor(math.log2(size))) - 4)


@lru_cache(maxsize=32)
def _pyramid(
    size: int, orientations: int, device: torch.device
) -> tuple[list[tuple[int, torch.Tensor, torch.Tensor]], torch.Tensor]:
    """The steerable pyramid's filters.

    Returns per level (grid size S_j, row indices of that grid in the full rfft grid, analysis amplitudes
    Tensor[n_j, S_j, S_j//2+1]) and the low-pass residual's energy window Tensor[S, S//2+1]. Level 0's bands are
    the high-pass band then the K oriented ones; the other levels have the K oriented ones. The oriented filters
    are these amplitudes times (-i)^(K-1) (see `_band_phase`); energies (amplitude^2) sum to one with the residual.
    """
    top = math.log2(size / 2.0)
    levels = []
    radial_sum = torch.zeros(size, size // 2 + 1, dtype=torch.float64)
    m = orientations - 1
    norm = orientations * math.comb(2 * m, m) / 4.0**m  # sum_k cos^2m(theta - k pi / K)
    for j in range(pyramid_levels(size)):
        grid = size if j == 0 else 2 * math.ceil(size / 2.0 ** (j + 1))
        fy = torch.fft.fftfreq(grid, d=1.0 / grid, dtype=torch.float64).view(-1, 1)
        fx = torch.fft.rfftfreq(grid, d=1.0 / grid, dtype=torch.float64).view(1, -1)
        rho = torch.sqrt(fx * fx + fy * fy)
        offset = torch.log2(rho.clamp_min(1e-9)) - (top - 1.0 - j)
        radial = torch.where(offset.abs() < 1.0, torch.cos(0.5 * math.pi * offset) ** 2, torch.zeros_like(rho))
        radial[0, 0] = 0.0
        theta = torch.atan2(fy.expand_as(rho), fx.expand_as(rho))
        angles = torch.arange(orientations, dtype=torch.float64).view(-1, 1, 1) * (math.pi / orientations)
        energy = radial * torch.cos(theta - angles) ** (2 * m) / norm  # [K, g, g/2+1]
        amps = torch.sqrt(energy) * torch.sign(torch.cos(theta - angles)) ** m  # cos^m / sqrt(norm), signed
        if j == 0:  # the high-pass band: everything above level 0's centre that level 0 leaves
            high = torch.where(offset >= 0.0, 1.0 - radial, torch.zeros_like(rho))
            amps = torch.cat([high.sqrt().unsqueeze(0), amps])
            radial = radial + high
        half = grid // 2
        rows = torch.cat([torch.arange(half), torch.arange(size - half, size)]) if j > 0 else torch.arange(size)
        radial_sum[rows.view(-1, 1), torch.arange(grid // 2 + 1).view(1, -1)] += radial
        levels.append((grid, rows.to(device), amps.float().to(device)))
    residual = (1.0 - radial_sum).clamp_min(0.0)
    return levels, residual.float().to(device)


def _band_phase(orientations: int) -> complex:
    """(-i)^(K-1): the oriented filters' phase (odd, edge-like filters for K = 4, as the reference's)."""
    return complex((-1j) ** (orientations - 1))


# ---------------------------------------------------------------------------------------------- colour model
def colour_model(rng: torch.Generator, size: int) -> dict[str, torch.Tensor]:
    """The reference's colour model: a palette laid out in raster-order runs, blurred; its PCA and histograms.

    Returns CPU float32 tensors "mean" [3] (mean colour), "basis" [3, 3] (orthonormal PCA basis, columns =
    components by decreasing variance), "quantiles" [3, 257] (each decorrelated channel's values at u = k/256).
    In numpy (a few dozen operations on small arrays, where numpy's per-call cost is a fraction of torch's).
    """
    u = torch.rand(2 + 22 + 3 * 22 + 3, generator=rng, dtype=torch.float64).numpy()
    n = 3 + int(u[0] * 20)
    proportions = 0.001 + u[2 : 2 + n]
    bounds = np.rint(np.cumsum(proportions) * (size * size / proportions.sum()))  # run ends (raster order)
    colours = u[2 + 22 : 2 + 22 + 3 * n].reshape(n, 3)
    blur = max(1, math.ceil(u[1] * _MAX_BLUR))
    cols = max(1, min(size, _LAYOUT_SAMPLES // size))
    x = (np.arange(cols) * size) // cols + size // (2 * cols)
    pixel = np.arange(size)[:, None] * size + x[None, :]  # [S, C] raster index
    label = np.minimum(np.searchsorted(bounds, pixel, side="right"), n - 1)
    layout = colours[label]  # [S, C, 3]
    if blur > 1:  # m-row box (symmetric edges), as the reference's 'same' convolution
        lo, hi = (blur - 1) // 2, blur // 2
        padded = np.concatenate([layout[:lo][::-1], layout, layout[size - hi :][::-1]])
        csum = np.concatenate([np.zeros((1,) + padded.shape[1:]), np.cumsum(padded, axis=0)])
        layout = (csum[blur:] - csum[:-blur]) / blur
    samples = layout.reshape(-1, 3).T  # [3, N]
    samples = (samples - samples.min()) / max(samples.max() - samples.min(), 1e-12)  # stretched to [0, 1]
    mean = samples.mean(1)
    centred = samples - mean[:, None]
    eigval, eigvec = np.linalg.eigh(centred @ centred.T / samples.shape[1])
    eigvec = eigvec[:, ::-1]  # decreasing variance
    # Random signs, as the reference's eigen-solver's arbitrary ones: they matter to `spectrum`, whose channels
    # have mean 0.5, so the basis turns grey (0.5, 0.5, 0.5) into a colour offset.
    eigvec = eigvec * np.where(u[-3:] < 0.5, -1.0, 1.0)
    decor = np.sort(eigvec.T @ centred, axis=1)
    pos = np.linspace(0.0, decor.shape[1] - 1.0, _QUANTILES + 1)
    low = np.minimum(pos.astype(np.int64), decor.shape[1] - 2)
    frac = pos - low
    quantiles = decor[:, low] * (1.0 - frac) + decor[:, low + 1] * frac
    return {
        "mean": torch.from_numpy(mean).float(),
        "basis": torch.from_numpy(np.ascontiguousarray(eigvec)).float(),
        "quantiles": torch.from_numpy(quantiles).float(),
    }


# ---------------------------------------------------------------------------------------------- generator
@GENERATORS.register("statistical")
class Statistical(Generator):
    """Spectrum, colour model and wavelet marginal model; see the module docstring.

    Args:
        variant: "spectrum_color_wmm" (default), "spectrum", "spectrum_color" or "spectrum_color_wmm_smooth".
        size: image side in pixels.
        slope: range of the spectral slope s (amplitude ~ 1/f^s).
        anisotropy_std: standard deviation of the anisotropy d (clipped to |d| <= 0.25).
        iterations: passes of spectrum -> (WMM) -> colour histogram (the reference: 10). One pass already gives
            the reference's figures; each further pass costs as much as the first.
        orientations: orientation bands per pyramid level (WMM).
        shape: range of the generalised-Laplacian exponent r of the WMM bands (within [0.4, 0.8]).
        quantize: round the output to 8-bit levels, as the reference's stored images (and any 8-bit data set).
            The rounding noise floors the spectrum of smooth images: `spectrum` measures slope 3.2 with it, 4.0
            without (the reference's float output also 4.0).
    """

    family = "statistical"
    version = "2"  # 2: the reference's colour model, correlated channels, fixed per-level band deviations
    variants = ("spectrum_color_wmm", "spectrum", "spectrum_color", "spectrum_color_wmm_smooth")

    def __init__(
        self,
        variant: str | None = None,
        size: int = 128,
        slope: tuple[float, float] = (0.5, 3.5),
        anisotropy_std: float = 0.05,
        iterations: int = 1,
        orientations: int = 4,
        shape: tuple[float, float] = (0.4, 0.8),
        quantize: bool = True,
    ) -> None:
        super().__init__(variant, size)
        lo, hi = float(slope[0]), float(slope[1])
        if not 0.0 < lo <= hi:
            raise ValueError(f"slope range must satisfy 0 < low <= high, got {slope}")
        if anisotropy_std < 0:
            raise ValueError(f"anisotropy_std must be >= 0, got {anisotropy_std}")
        if iterations < 1 or orientations < 1:
            raise ValueError(f"need iterations >= 1 and orientations >= 1, got {iterations}, {orientations}")
        if not 0.4 <= shape[0] <= shape[1] <= 0.8:
            raise ValueError(f"shape must be a range within [0.4, 0.8] (the quantile table), got {shape}")
        if size > 2 ** (4 + _table_levels()):
            raise ValueError(f"size must be at most {2 ** (4 + _table_levels())} pixels, got {size}")
        self.slope, self.anisotropy_std = (lo, hi), float(anisotropy_std)
        self.iterations, self.orientations = int(iterations), int(orientations)
        self.shape = (float(shape[0]), float(shape[1]))
        self.quantize = bool(quantize)
        self.wmm = self.variant.startswith("spectrum_color_wmm")
        self.fixed_bands = self.variant == "spectrum_color_wmm"
        self.colour = self.variant != "spectrum"
        self.levels = pyramid_levels(size)
        self.bands = 1 + self.levels * self.orientations  # high-pass + oriented bands

    def config(self) -> dict[str, Any]:
        cfg = {**super().config(), "slope": list(self.slope), "anisotropy_std": self.anisotropy_std,
               "quantize": self.quantize}
        if self.colour:
            cfg["iterations"] = self.iterations
        if self.wmm:
            cfg.update(orientations=self.orientations, shape=list(self.shape))
        return cfg

    # ---------------------------------------------------------------- parameters
    def sample_params(self, rng: torch.Generator) -> dict[str, torch.Tensor]:
        """CPU tensors: "slope" [], "anisotropy" [], "phase" [3, S, S//2+1] (Hermitian on the self-conjugate
        columns); the colour model's "mean" [3], "basis" [3, 3] and "quantiles" [3, 257] (decorrelated channels);
        with WMM, "wmm_shape" [3, 1 + J*K] (r per band: high-pass, then level by level)."""
        head = torch.rand(3, generator=rng, dtype=torch.float64).tolist()
        slope = self.slope[0] + (self.slope[1] - self.slope[0]) * head[0]
        # Box-Muller for d ~ N(0, std^2); clipped so that both slopes stay positive.
        d = self.anisotropy_std * math.sqrt(-2.0 * math.log1p(-head[1])) * math.cos(2.0 * math.pi * head[2])
        params = {
            "slope": torch.tensor(slope, dtype=torch.float32),
            "anisotropy": torch.tensor(min(max(d, -0.25), 0.25), dtype=torch.float32),
            **colour_model(rng, self.size),
        }
        phase = torch.rand(3, self.size, self.size // 2 + 1, generator=rng).mul_(2.0 * math.pi)
        params["phase"] = hermitian_phase(phase)
        if self.wmm:
            u = torch.rand(3, self.bands, generator=rng)
            params["wmm_shape"] = u * (self.shape[1] - self.shape[0]) + self.shape[0]
        return params

    # ---------------------------------------------------------------- rendering
    def render(self, params: Sequence[dict[str, torch.Tensor]], device: torch.device) -> torch.Tensor:
        """Tensor[B, 3, S, S] in [0, 1]; on CPU one image per call (bit-identical whatever the batch)."""
        device = torch.device(device)
        return self._render(params, device, per_image=device.type == "cpu")

    def _render(self, params: Sequence[dict[str, torch.Tensor]], device: torch.device, per_image: bool) -> torch.Tensor:
        if per_image:
            out = torch.empty(len(params), 3, self.size, self.size, device=device)
            for i, p in enumerate(params):
                out[i] = self._synthesise([p], device)[0]
            return out
        return self._synthesise(params, device)

    def _synthesise(self, params: Sequence[dict[str, torch.Tensor]], device: torch.device) -> torch.Tensor:
        """The whole pipeline for a batch of images, Tensor[B, 3, S, S] in [0, 1]."""
        b, size = len(params), self.size
        channels = self.channels(params, device)  # [B, 3, S, S]
        mean = torch.stack([p["mean"] for p in params]).to(device).view(b, 3, 1)
        basis = torch.stack([p["basis"] for p in params]).to(device)
        rgb = torch.baddbmm(mean, basis, channels.view(b, 3, -1))  # [B, 3, S*S]
        lo = rgb.amin(dim=(1, 2), keepdim=True)
        hi = rgb.amax(dim=(1, 2), keepdim=True)
        rgb = rgb.sub_(lo).mul_(255.0 / (hi - lo).clamp_min_(1e-12))
        if self.quantize:
            rgb = rgb.round_()
        return rgb.mul_(1.0 / 255.0).clamp_(0.0, 1.0).view(b, 3, size, size)

    def channels(self, params: Sequence[dict[str, torch.Tensor]], device: torch.device) -> torch.Tensor:
        """The decorrelated channels before the colour basis, Tensor[B, 3, S, S]: with colour, each channel has
        its colour-model histogram."""
        size, b = self.size, len(params)

        def stack(key: str) -> torch.Tensor:
            return torch.stack([p[key] for p in params]).to(device)

        amplitude = amplitude_spectrum(stack("slope"), stack("anisotropy"), size, device)  # unit std
        theta = stack("phase")
        scaled = amplitude * _START_STD
        spec = torch.complex(torch.cos(theta).mul_(scaled), torch.sin(theta).mul_(scaled))  # [B, 3, S, S/2+1]
        spec[..., 0, 0] = _START_MEAN * size * size
        if self.colour:
            quantiles = stack("quantiles").view(b * 3, -1)
            centre = quantiles[:, _QUANTILES // 2 : _QUANTILES // 2 + 1]  # the median: bins around it
        rows = None
        if self.wmm:  # per level, the table row of every band: [B * 3 * n_j, 1]
            shapes = stack("wmm_shape")  # [B, 3, 1 + J*K]
            k = self.orientations
            rows = [gl_row(0, shapes[..., : 1 + k]).view(-1, 1)]
            for j in range(1, self.levels):  # the smooth variant rescales level 0's (least truncated) rows
                rows.append(gl_row(j if self.fixed_bands else 0, shapes[..., 1 + j * k : 1 + (j + 1) * k]).view(-1, 1))
        for it in range(self.iterations if self.colour else 1):
            if it > 0:  # re-impose the amplitude spectrum on the current phases, keeping mean and std
                mean, std = _moments(x)
                spec = torch.fft.rfft2(x)
                spec = spec.mul_(amplitude * std / spec.abs().clamp_min_(1e-20))
                spec[..., 0, 0] = mean[..., 0, 0] * (size * size)
            if self.wmm:
                spec = self._wmm(spec, rows, device, gaussian=it == 0)
            x = torch.fft.irfft2(spec, s=(size, size))
            if self.colour:
                x = match_marginals(x.view(b * 3, -1), lambda u: interpolate_table(quantiles, u * _QUANTILES), centre)
                x = x.view(b, 3, size, size)
        return x

    def _wmm(self, spec: torch.Tensor, rows: list[torch.Tensor], device: torch.device, gaussian: bool) -> torch.Tensor:
        """Match every pyramid band of the channels with spectrum `spec` [B, 3, S, S//2+1] to its generalised
        Laplacian (table rows `rows`, one Tensor[B * 3 * n_j, 1] per level); returns the re-assembled spectrum.
        `gaussian`: the bands are Gaussian (first pass: random-phase noise), so a direct lookup replaces the
        histogram matching."""
        size, k = self.size, self.orientations
        levels, residual = _pyramid(size, k, device)
        phase = _band_phase(k)
        out = spec * residual
        for j, (grid, index, amps) in enumerate(levels):
            half = grid // 2 + 1
            sub = spec[..., :half].index_select(-2, index) if grid < size else spec
            first = 1 if j == 0 else 0  # level 0's high-pass band (first) has no phase factor
            filt = torch.empty(sub.shape[:2] + amps.shape, dtype=sub.dtype, device=device)
            torch.mul((sub * phase if phase != 1 else sub).unsqueeze(2), amps[first:], out=filt[:, :, first:])
            if first:
                torch.mul(sub.unsqueeze(2), amps[:1], out=filt[:, :, :1])
            bands = torch.fft.irfft2(filt, s=(grid, grid))
            flat = bands.view(-1, grid * grid)
            gain = None
            if not self.fixed_bands:  # each band keeps its own deviation: the table row rescaled to it
                std = torch.linalg.vector_norm(flat, dim=1, keepdim=True).div_(grid)
                gain = std / _gl_std(_table_levels(), device).index_select(0, rows[j].view(-1) // _LOGIT_STEPS)
            if gaussian:
                flat = gl_from_normal(flat, rows[j])
                if gain is not None:
                    flat = flat.mul_(gain)
            elif gain is None:
                flat = match_marginals(flat, lambda u: gl_quantile(u, rows[j]))
            else:
                flat = match_marginals(flat, lambda u: gl_quantile(u, rows[j]).mul_(gain))
            back = torch.fft.rfft2(flat.view(bands.shape)).mul_(amps)  # synthesis (amplitudes)
            total = back[:, :, first:].sum(2)
            if phase != 1:
                total = total.mul_(phase.conjugate())
            if first:
                total = total.add_(back[:, :, 0])
            if grid < size:
                out[..., :half].index_add_(-2, index, total)
            else:
                out += total
        return out
