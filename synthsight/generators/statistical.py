"""Statistical image models: power-law spectrum, colour model and wavelet marginal model (WMM).

After Baradad et al. 2021 ("Learning to See by Looking at Noise", statistical image models), written from the
paper's description:

- Spectrum: three channels of random-phase noise with amplitude 1 / (|fx|^(s+d) + |fy|^(s-d)), s ~ U(0.5, 3.5),
  d ~ N(0, 0.05^2), DC removed (the law, parameter draws and frequency grid of `spectrum.py`).
- Colour model: 3 + floor(U(0, 20)) uniform RGB colours with Dirichlet(1) proportions laid on a 32 x 32 grid of
  cells, blurred by bilinear upsampling to 64 x 64 (4096 colour samples, mixtures along the cell borders). The
  samples' colour PCA (eigenvectors times sqrt of eigenvalues) mixes the three unit-variance noise channels into
  RGB, then each RGB channel's histogram is matched to the samples' (CDF matching).
- WMM: each noise channel is split by an oriented pyramid built in the Fourier domain, every band's coefficients
  are matched to a generalised Laplacian marginal p(x) ~ exp(-|x/s|^r), r ~ U(0.4, 0.8) per band, with s chosen
  to keep the band's variance; the bands are summed back. Heavy-tailed bands turn Gaussian noise into sparse,
  edge-like structure.
- The reference iterates spectrum -> WMM -> colour histogram 10 times; here `iterations` passes, default 1. The
  first pass fixes the layout and colours; later passes re-impose the spectrum on the sparse phases and sharpen
  the fine structure gradually (median gradient kurtosis of 64-px images: 4.2, 4.7, 5.5 after 1, 2, 4 passes;
  3.6 without WMM) at a proportional cost, so 1 pass keeps the family above 200 images/s on one core.

The pyramid: J octave levels x K orientations (K = 4). Level j has the radial window cos^2(pi/2 (log2 rho - c_j))
over two octaves centred at c_j = log2(S/2) - 1 - j (rho in cycles per image; level 0 keeps everything above its
centre, up to the corners), times the angular window cos^(2K-2)(theta - k pi/K) / const; the windows sum to one, so
the unmodified bands sum back to the image exactly (analysis only, no synthesis filters). Level j's support ends at
S/2^(j+1) cycles, so it is computed on a (S/2^j)-pixel grid: levels cost 1 + 1/4 + 1/16 + ... of the finest one.
Levels stop when that grid would fall under 8 pixels; the frequencies below stay as an unmodified low-pass residual.

Marginal matching is done with histograms, not sorts (a sort of 16k floats costs more than twenty 128-px FFTs on
one core): each band is binned into up to 1024 bins over its range, the empirical CDF at the bin edges is mapped
through the target quantile function, and each value is interpolated linearly within its bin. Generalised-Laplacian
quantiles come from a table of 41 shapes r in [0.4, 0.8], built once per process by bisection of the regularised
incomplete gamma function (|x/s|^r ~ Gamma(1/r)), indexed by logit(u) of the CDF level u (which resolves the tails),
at the nearest entry (r rounded to 0.01, logit steps of 0.02).

Variants:
    spectrum_color_wmm  spectrum -> WMM -> colour, iterated (the paper's best statistical model)
    spectrum            three independent noise channels, each min-max normalised to [0, 1]
    spectrum_color      spectrum -> colour, iterated

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
from synthsight.generators.spectrum import Spectrum, _log_frequencies
from synthsight.registry import GENERATORS

_COLOUR_GRID = 32  # colour-model cells per side; bilinear x2 gives 64 x 64 = 4096 colour samples
_QUANTILES = 256  # entries of each channel's target quantile table (values at u = k / 256)
_MIN_LEVEL_GRID = 8  # the coarsest pyramid level is computed on a grid of at least this many pixels
_R_RANGE = (0.4, 0.8)
_R_GRID = torch.linspace(*_R_RANGE, 41, dtype=torch.float64)  # shapes r of the generalised-Laplacian table
_LOGIT_MAX, _LOGIT_STEPS = 16.0, 1601  # logit(u) axis of that table
_LOGIT_STEP = 2 * _LOGIT_MAX / (_LOGIT_STEPS - 1)


# ---------------------------------------------------------------------------------------------- spectrum
def amplitude_spectrum(slope: torch.Tensor, aniso: torch.Tensor, size: int, device: torch.device) -> torch.Tensor:
    """1 / (|fx|^(s+d) + |fy|^(s-d)) with DC set to 0, Tensor[B, 1, S, S//2+1] for slope, aniso Tensor[B].

    The same law and grid as `Spectrum.noise_field` (whose field is irfft2(amplitude * e^(i phase))).
    """
    log_fy, log_fx = _log_frequencies(size, device)
    s, d = slope.view(-1, 1, 1, 1), aniso.view(-1, 1, 1, 1)
    denom = torch.exp(log_fx * (s + d)) + torch.exp(log_fy * (s - d))
    denom[..., 0, 0] = math.inf
    return torch.reciprocal(denom)


def _standardise(x: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance over the last two dims (in place)."""
    x -= x.mean(dim=(-2, -1), keepdim=True)
    rms = torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True) / math.sqrt(x.shape[-1] * x.shape[-2])
    return x.div_(rms.clamp_min_(1e-12))


def _upsample2(x: np.ndarray, axis: int) -> np.ndarray:
    """Bilinear x2 upsampling along `axis` (half-pixel centres, edges replicated): 3/4 of a cell and 1/4 of
    its neighbour."""
    n = x.shape[axis]
    prev = np.take(x, np.maximum(np.arange(n) - 1, 0), axis=axis)
    nxt = np.take(x, np.minimum(np.arange(n) + 1, n - 1), axis=axis)
    pair = np.stack([0.75 * x + 0.25 * prev, 0.75 * x + 0.25 * nxt], axis=axis + 1)
    return pair.reshape(x.shape[:axis] + (2 * n,) + x.shape[axis + 1 :])


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


@lru_cache(maxsize=8)
def _gl_table(device: torch.device) -> torch.Tensor:
    """Unit-variance generalised-Laplacian quantiles, Tensor[len(_R_GRID), _LOGIT_STEPS] on `device`.

    Row i, column k: the quantile of shape r = _R_GRID[i] at CDF level u = sigmoid(l_k), l_k on
    linspace(-_LOGIT_MAX, _LOGIT_MAX) (a logit axis resolves the heavy tails). If x ~ exp(-|x|^r), then
    |x|^r ~ Gamma(1/r): for u > 1/2, |x| = P^-1(1/r, 2u - 1)^(1/r) with 2u - 1 = tanh(l / 2), found by bisection
    in float64; the table is odd in l. Built on CPU, so every device gets the same numbers.
    """
    logit = torch.linspace(0.0, _LOGIT_MAX, (_LOGIT_STEPS + 1) // 2, dtype=torch.float64)
    q = torch.tanh(0.5 * logit).view(1, -1)  # P(|x|^r <= g)
    a = (1.0 / _R_GRID).view(-1, 1).expand(-1, logit.numel())
    lo, hi = torch.zeros_like(a), torch.full_like(a, 100.0)  # P(2.5, 100) = 1 - 1e-38: brackets every level
    for _ in range(44):  # 100 / 2^44 < 1e-11
        mid = 0.5 * (lo + hi)
        below = torch.special.gammainc(a, mid) < q
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    g = 0.5 * (lo + hi)
    std = torch.exp(0.5 * (torch.lgamma(3.0 * a[:, :1]) - torch.lgamma(a[:, :1])))  # sqrt(G(3/r) / G(1/r))
    half = g.pow(a) / std  # |x| = g^(1/r), a = 1/r
    table = torch.cat([-half.flip(1)[:, :-1], half], dim=1)
    return table.float().to(device)


def gl_quantile(u: torch.Tensor, shape_index: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Generalised-Laplacian quantiles at CDF levels u Tensor[M, Q] (strictly inside (0, 1)) for the shapes
    `shape_index` Tensor[M, 1] (int64, from `shape_index`) and standard deviations std Tensor[M, 1]: the nearest
    entry of the table (logit steps of 0.02)."""
    table = _gl_table(u.device)
    logit = torch.log(u).sub_(torch.log(1.0 - u))  # (vectorised log; log1p is not)
    pos = logit.add_(_LOGIT_MAX + 0.5 * _LOGIT_STEP).mul_(1.0 / _LOGIT_STEP).clamp_(0, _LOGIT_STEPS - 1)
    index = pos.to(torch.int64).add_(shape_index)
    return table.view(-1).take(index).mul_(std)


def shape_index(shape: torch.Tensor) -> torch.Tensor:
    """Where the quantile table's row for each shape r starts in the flattened table (int64): r is rounded to
    the table's grid (steps of 0.01)."""
    steps = len(_R_GRID) - 1
    pos = (shape - _R_RANGE[0]) * (steps / (_R_RANGE[1] - _R_RANGE[0]))
    return pos.round_().clamp_(0, steps).long().mul_(_LOGIT_STEPS)


def histogram_bins(n: int) -> int:
    """Bins for matching n values: n / 16 within [128, 1024] (nearest-bin quantisation stays below 1/1000 of
    the range for large bands, and every bin of a small band still holds a few values)."""
    return max(128, min(1024, n // 16))


# ---------------------------------------------------------------------------------------------- pyramid
@lru_cache(maxsize=32)
def _pyramid(
    size: int, orientations: int, device: torch.device
) -> tuple[list[tuple[int, torch.Tensor, torch.Tensor]], torch.Tensor]:
    """The oriented pyramid's windows: per level (grid size S_j, row indices of that grid in the full rfft grid,
    windows Tensor[K, S_j, S_j//2+1]), and the low-pass residual window Tensor[S, S//2+1]."""
    top = math.log2(size / 2.0)
    levels = []
    radial_sum = torch.zeros(size, size // 2 + 1, dtype=torch.float64)
    m = orientations - 1
    norm = orientations * math.comb(2 * m, m) / 4.0**m  # sum_k cos^2m(theta - k pi / K)
    j = 0
    while True:
        grid = size if j == 0 else 2 * math.ceil(size / 2.0 ** (j + 1))
        if grid < _MIN_LEVEL_GRID or (j > 0 and grid >= size):
            break
        fy = torch.fft.fftfreq(grid, d=1.0 / grid, dtype=torch.float64).view(-1, 1)
        fx = torch.fft.rfftfreq(grid, d=1.0 / grid, dtype=torch.float64).view(1, -1)
        rho = torch.sqrt(fx * fx + fy * fy)
        offset = torch.log2(rho.clamp_min(1e-9)) - (top - 1.0 - j)
        if j == 0:
            offset = offset.clamp_max(0.0)  # level 0 keeps everything above its centre
        radial = torch.where(offset.abs() < 1.0, torch.cos(0.5 * math.pi * offset) ** 2, torch.zeros_like(rho))
        radial[0, 0] = 0.0
        theta = torch.atan2(fy.expand_as(rho), fx.expand_as(rho))
        angles = torch.arange(orientations, dtype=torch.float64).view(-1, 1, 1) * (math.pi / orientations)
        windows = radial * torch.cos(theta - angles) ** (2 * m) / norm
        half = grid // 2
        rows = torch.cat([torch.arange(half), torch.arange(size - half, size)]) if j > 0 else torch.arange(size)
        radial_sum[rows.view(-1, 1), torch.arange(grid // 2 + 1).view(1, -1)] += radial
        levels.append((grid, rows.to(device), windows.float().to(device)))
        j += 1
    residual = (1.0 - radial_sum).clamp_min(0.0)
    return levels, residual.float().to(device)


@GENERATORS.register("statistical")
class Statistical(Generator):
    """Spectrum, colour model and wavelet marginal model; see the module docstring.

    Args:
        variant: "spectrum_color_wmm" (default), "spectrum" or "spectrum_color".
        size: image side in pixels.
        slope: range of the spectral slope s (amplitude ~ 1/f^s).
        anisotropy_std: standard deviation of the anisotropy d (clipped to |d| <= 0.25).
        iterations: passes of spectrum -> (WMM) -> colour histogram (the paper: 10). One pass fixes the look;
            each further pass sharpens the WMM structure a little and costs as much as the first.
        orientations: orientation bands per pyramid level (WMM).
        shape: range of the generalised-Laplacian exponent r of the WMM bands (within [0.4, 0.8]).
    """

    family = "statistical"
    variants = ("spectrum_color_wmm", "spectrum", "spectrum_color")

    def __init__(
        self,
        variant: str | None = None,
        size: int = 128,
        slope: tuple[float, float] = (0.5, 3.5),
        anisotropy_std: float = 0.05,
        iterations: int = 1,
        orientations: int = 4,
        shape: tuple[float, float] = (0.4, 0.8),
    ) -> None:
        super().__init__(variant, size)
        if iterations < 1 or orientations < 1:
            raise ValueError(f"need iterations >= 1 and orientations >= 1, got {iterations}, {orientations}")
        if not 0.4 <= shape[0] <= shape[1] <= 0.8:
            raise ValueError(f"shape must be a range within [0.4, 0.8] (the quantile table), got {shape}")
        self._spectrum = Spectrum("color", size, slope=slope, anisotropy_std=anisotropy_std)
        self.iterations, self.orientations = int(iterations), int(orientations)
        self.shape = (float(shape[0]), float(shape[1]))
        self.wmm = self.variant == "spectrum_color_wmm"
        self.colour = self.variant != "spectrum"
        self.levels = len(_pyramid(size, self.orientations, torch.device("cpu"))[0])

    def config(self) -> dict[str, Any]:
        cfg = {**super().config(), "slope": list(self._spectrum.slope), "anisotropy_std": self._spectrum.anisotropy_std}
        if self.colour:
            cfg["iterations"] = self.iterations
        if self.wmm:
            cfg.update(orientations=self.orientations, shape=list(self.shape))
        return cfg

    # ---------------------------------------------------------------- parameters
    def sample_params(self, rng: torch.Generator) -> dict[str, torch.Tensor]:
        """CPU tensors: "slope" [], "anisotropy" [] and "phase" [3, S, S//2+1] (spectrum); with colour, "mean" [3],
        "mixing" [3, 3] (colour PCA: eigenvectors x sqrt eigenvalues), "unmixing" [3, 3] and "quantiles" [3, 257]
        (each RGB channel's target quantiles at u = k/256); with WMM, "wmm_shape" [3, J, K] (r per band)."""
        base = self._spectrum.sample_params(rng)  # slope, anisotropy, phase of channel 0 and a palette
        phase = torch.rand(2, *base["phase"].shape, generator=rng).mul_(2.0 * math.pi)
        params = {
            "slope": base["slope"],
            "anisotropy": base["anisotropy"],
            "phase": torch.cat([base["phase"].unsqueeze(0), phase]),
        }
        if self.colour:
            params.update(self._colour_model(base["colours"], base["weights"], rng))
        if self.wmm:
            u = torch.rand(3, self.levels, self.orientations, generator=rng)
            params["wmm_shape"] = u * (self.shape[1] - self.shape[0]) + self.shape[0]
        return params

    def _colour_model(
        self, colours: torch.Tensor, weights: torch.Tensor, rng: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """Colours on a grid of cells with the palette's proportions, blurred; their PCA and RGB quantiles.

        In numpy (a few dozen operations on small arrays, where numpy's per-call cost is a fraction of torch's).
        """
        g = _COLOUR_GRID
        u = torch.rand(g * g, generator=rng, dtype=torch.float64).numpy()
        w = weights.double().numpy()
        cum = np.cumsum(w)
        label = np.minimum(np.searchsorted(cum, u * cum[-1], side="right"), int((w > 0).sum()) - 1)
        cells = np.ascontiguousarray(colours.numpy().T[:, label].reshape(3, g, g))
        samples = _upsample2(_upsample2(cells, 1), 2).reshape(3, -1)  # bilinear x2: the blur, float32
        mean = samples.mean(1, dtype=np.float64)
        centred = samples - mean[:, None]
        eigval, eigvec = np.linalg.eigh(centred @ centred.T / samples.shape[1])
        # a deterministic sign per eigenvector (largest component positive)
        eigvec = eigvec * np.sign(eigvec[np.abs(eigvec).argmax(0), np.arange(3)])
        root = np.sqrt(np.clip(eigval, 0.0, None))
        floor = 1e-3 * root.max() + 1e-6
        ordered = np.sort(samples, axis=1)  # [3, N]
        pos = np.linspace(0.0, ordered.shape[1] - 1.0, _QUANTILES + 1)
        low = np.minimum(pos.astype(np.int64), ordered.shape[1] - 2)
        frac = pos - low
        quantiles = ordered[:, low] * (1.0 - frac) + ordered[:, low + 1] * frac
        return {
            "mean": torch.from_numpy(mean).float(),
            "mixing": torch.from_numpy(eigvec * root).float(),
            "unmixing": torch.from_numpy(eigvec.T / np.maximum(root, floor)[:, None]).float(),
            "quantiles": torch.from_numpy(quantiles).float(),
        }

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
        """The whole pipeline for a batch of images, Tensor[B, 3, S, S]."""
        size, b = self.size, len(params)

        def stack(key: str) -> torch.Tensor:
            return torch.stack([p[key] for p in params]).to(device)

        amplitude = amplitude_spectrum(stack("slope"), stack("anisotropy"), size, device)  # [B, 1, S, S/2+1]
        theta = stack("phase")
        spec = torch.complex(torch.cos(theta).mul_(amplitude), torch.sin(theta).mul_(amplitude))
        noise = _standardise(torch.fft.irfft2(spec, s=(size, size)))  # [B, 3, S, S]
        if not self.colour:
            lo = noise.amin(dim=(-2, -1), keepdim=True)
            hi = noise.amax(dim=(-2, -1), keepdim=True)
            return (noise - lo).div_((hi - lo).clamp_min_(1e-12)).clamp_(0.0, 1.0)
        mean, mixing, unmixing = stack("mean").view(b, 3, 1), stack("mixing"), stack("unmixing")
        quantiles = stack("quantiles").view(b * 3, -1)
        # [J, B * 3 * K, 1]: per level, the table row of every band
        shapes = shape_index(stack("wmm_shape")).permute(2, 0, 1, 3).reshape(self.levels, -1, 1) if self.wmm else None
        rgb = noise
        for it in range(self.iterations):
            if it > 0:  # re-impose the amplitude spectrum, keep the phases
                noise = torch.matmul(unmixing, rgb.view(b, 3, -1) - mean).view(b, 3, size, size)
                spec = torch.fft.rfft2(noise)
                spec = spec.mul_(amplitude / spec.abs().clamp_min_(1e-20))
                noise = _standardise(torch.fft.irfft2(spec, s=(size, size)))
            if self.wmm:
                noise = _standardise(self._wmm(spec, shapes, device))
            rgb = torch.baddbmm(mean, mixing, noise.view(b, 3, -1)).view(b * 3, -1)
            rgb = match_marginals(rgb, lambda u: interpolate_table(quantiles, u * _QUANTILES), mean.view(-1, 1))
            rgb = rgb.view(b, 3, size, size)
        return rgb.clamp_(0.0, 1.0)

    def _wmm(self, spec: torch.Tensor, shapes: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Match every pyramid band of the channels with spectrum `spec` [B, 3, S, S//2+1] to a generalised
        Laplacian (rows of the quantile table, shapes [J, B * 3 * K, 1] from `shape_index`); returns the
        re-assembled channels [B, 3, S, S]."""
        size = self.size
        levels, residual = _pyramid(size, self.orientations, device)
        out = spec * residual
        for j, (grid, rows, windows) in enumerate(levels):
            half = grid // 2 + 1
            sub = spec[..., :half].index_select(-2, rows) if grid < size else spec
            bands = torch.fft.irfft2(sub.unsqueeze(2) * windows, s=(grid, grid))  # [B, 3, K, g, g]
            flat = bands.view(-1, grid * grid)
            std = torch.linalg.vector_norm(flat, dim=1, keepdim=True).div_(grid)
            flat = match_marginals(flat, lambda u: gl_quantile(u, shapes[j], std))
            back = torch.fft.rfft2(flat.view(bands.shape).sum(2))  # [B, 3, g, g/2+1]
            if grid < size:
                out[..., :half].index_add_(-2, rows, back)
            else:
                out += back
        return torch.fft.irfft2(out, s=(size, size))
