"""Spectrum family: random-phase noise with a power-law spectrum, coloured by a random palette.

After Baradad et al. 2021 ("Learning to See by Looking at Noise", statistical image models): the amplitude spectrum
is 1 / (|fx|^(s+d) + |fy|^(s-d)) with slope s ~ U(0.5, 3.5) (rough to smooth) and anisotropy d ~ N(0, 0.05^2),
frequencies in cycles per image, DC removed, phases uniform in [0, 2 pi). One inverse real FFT per image gives a
zero-mean field x. Instead of the paper's per-channel noise plus colour PCA and histogram matching (one FFT per
channel, several iterations), x is equalised with the Gaussian CDF, u = Phi(x / std(x)), and u is mapped through
a random piecewise-linear palette of 3 + floor(U(0, 20)) uniform RGB colours with Dirichlet(1) proportions: one FFT
per image, smooth clouds whose colours change with the level of the noise.

Variants: "color" (the palette above) and "gray" (the same with gray colours).

Example:
    >>> gen = GENERATORS.create("spectrum", variant="color", size=128)
    >>> images = gen.generate(range(16), seed=0)   # Tensor[16, 3, 128, 128] in [0, 1]
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Sequence

import torch

from synthsight.generators.base import Generator
from synthsight.registry import GENERATORS

_MAX_EXTRA_COLOURS = 20  # the palette has 3 + floor(U(0, 20)) colours, so at most 22


@lru_cache(maxsize=32)
def _log_frequencies(size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """log|fy| as Tensor[S, 1] and log|fx| as Tensor[1, S//2+1] in cycles per image (log 0 = -inf)."""
    fy = torch.fft.fftfreq(size, d=1.0 / size).abs()
    fx = torch.fft.rfftfreq(size, d=1.0 / size)
    return fy.log().view(size, 1).to(device), fx.log().view(1, -1).to(device)


@GENERATORS.register("spectrum")
class Spectrum(Generator):
    """Power-law random-phase noise through a random colour palette; see the module docstring.

    Args:
        variant: "color" (default) or "gray".
        size: image side in pixels.
        slope: range of the spectral slope s (amplitude ~ 1/f^s): 0.5 is rough, 3.5 very smooth.
        anisotropy_std: standard deviation of d; the x and y slopes are s + d and s - d (clipped to |d| <= 0.25).
        lut_size: entries of the per-image colour look-up table (nearest-entry lookup; 1024 is finer than 8 bits).
    """

    family = "spectrum"
    variants = ("color", "gray")

    def __init__(
        self,
        variant: str | None = None,
        size: int = 128,
        slope: tuple[float, float] = (0.5, 3.5),
        anisotropy_std: float = 0.05,
        lut_size: int = 1024,
    ) -> None:
        super().__init__(variant, size)
        lo, hi = float(slope[0]), float(slope[1])
        if not 0.0 < lo <= hi:
            raise ValueError(f"slope range must satisfy 0 < low <= high, got {slope}")
        if anisotropy_std < 0 or lut_size < 2:
            raise ValueError(f"need anisotropy_std >= 0 and lut_size >= 2, got {anisotropy_std}, {lut_size}")
        self.slope = (lo, hi)
        self.anisotropy_std = float(anisotropy_std)
        self.lut_size = int(lut_size)

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "slope": list(self.slope),
            "anisotropy_std": self.anisotropy_std,
            "lut_size": self.lut_size,
        }

    # ---------------------------------------------------------------- parameters
    def sample_params(self, rng: torch.Generator) -> dict[str, torch.Tensor]:
        """slope, anisotropy, palette (colours, proportions, count) and the phases of the half spectrum.

        Returns CPU tensors: "slope" [], "anisotropy" [], "n_colours" [] (int64), "colours" [22, 3],
        "weights" [22] (zero past n_colours), "phase" [S, S//2+1] uniform in [0, 2 pi).
        """
        k = 3 + _MAX_EXTRA_COLOURS - 1  # 22 colour slots
        u = torch.rand(4 + k + 3 * k, generator=rng, dtype=torch.float64)
        head = u[:4].tolist()
        slope = self.slope[0] + (self.slope[1] - self.slope[0]) * head[0]
        # Box-Muller for d ~ N(0, std^2); clipped so that both slopes stay positive.
        d = self.anisotropy_std * math.sqrt(-2.0 * math.log1p(-head[1])) * math.cos(2.0 * math.pi * head[2])
        d = min(max(d, -0.25), 0.25)
        n = min(3 + int(head[3] * _MAX_EXTRA_COLOURS), k)
        weights = torch.log1p(-u[4 : 4 + k]).neg_()  # Exp(1) draws: normalised, Dirichlet(1) proportions
        weights[n:] = 0.0
        colours = u[4 + k :].view(k, 3)
        if self.variant == "gray":
            colours = colours[:, :1].expand(k, 3)
        phase = torch.rand(self.size, self.size // 2 + 1, generator=rng).mul_(2.0 * math.pi)
        return {
            "slope": torch.tensor(slope, dtype=torch.float32),
            "anisotropy": torch.tensor(d, dtype=torch.float32),
            "n_colours": torch.tensor(n),
            "colours": colours.float().contiguous(),
            "weights": weights.float(),
            "phase": phase,
        }

    # ---------------------------------------------------------------- rendering
    def render(self, params: Sequence[dict[str, torch.Tensor]], device: torch.device) -> torch.Tensor:
        """Tensor[B, 3, S, S] in [0, 1].

        On CPU the images are rendered one at a time (each plane stays in cache, and each gets its own FFT call,
        which keeps an image bit-identical whatever else is in the batch: MKL's batched transforms round
        differently from single ones). On other devices the batch is rendered at once.
        """
        device = torch.device(device)
        return self._render(params, device, per_image=device.type == "cpu")

    def _render(self, params: Sequence[dict[str, torch.Tensor]], device: torch.device, per_image: bool) -> torch.Tensor:
        b, size = len(params), self.size
        lut = self.palette_lut(params, device)  # [B, 3, L]
        out = torch.empty(b, 3, size, size, device=device)
        if per_image:
            for i, p in enumerate(params):
                index = self.lut_index(self.noise_field([p], device)).view(-1)
                for c in range(3):
                    torch.index_select(lut[i, c], 0, index, out=out[i, c].view(-1))
        else:
            index = self.lut_index(self.noise_field(params, device))  # [B, S, S]
            index = index.long() + (torch.arange(b, device=device) * self.lut_size).view(b, 1, 1)
            planar = lut.permute(1, 0, 2).reshape(3, b * self.lut_size)
            out.copy_(planar.index_select(1, index.view(-1)).view(3, b, size, size).permute(1, 0, 2, 3))
        return out

    def noise_field(self, params: Sequence[dict[str, torch.Tensor]], device: torch.device) -> torch.Tensor:
        """The zero-mean random-phase field of each image, Tensor[B, S, S] (one irfft2 over the batch)."""
        size = self.size
        log_fy, log_fx = _log_frequencies(size, device)
        if len(params) == 1:
            slope, aniso, theta = (params[0][k].to(device) for k in ("slope", "anisotropy", "phase"))
            theta = theta.unsqueeze(0)
        else:
            slope = torch.stack([p["slope"] for p in params]).to(device).view(-1, 1, 1)
            aniso = torch.stack([p["anisotropy"] for p in params]).to(device).view(-1, 1, 1)
            theta = torch.stack([p["phase"] for p in params]).to(device)
        # |fx|^(s+d) + |fy|^(s-d) as exp(log f * exponent); 0^positive = exp(-inf) = 0 on the axes.
        denom = torch.exp(log_fx * (slope + aniso)) + torch.exp(log_fy * (slope - aniso))
        denom[..., 0, 0] = math.inf  # removes DC (amplitude 1/inf = 0 instead of 1/0)
        amplitude = torch.reciprocal(denom)
        spectrum = torch.complex(torch.cos(theta).mul_(amplitude), torch.sin(theta).mul_(amplitude))
        return torch.fft.irfft2(spectrum, s=(size, size))

    def lut_index(self, field: torch.Tensor) -> torch.Tensor:
        """Equalise fields Tensor[B, S, S] with the Gaussian CDF and quantise to LUT entries (int32).

        level = Phi(x / rms(x)) = erfc(-x / (sqrt 2 rms)) / 2 is close to uniform on (0, 1).
        """
        rms = torch.linalg.vector_norm(field, dim=(-2, -1), keepdim=True)  # = sqrt(S^2) * rms
        scale = rms.reciprocal_().mul_(-self.size / math.sqrt(2.0))
        level = torch.special.erfc(field * scale).mul_(0.5 * self.lut_size)
        return level.to(torch.int32).clamp_(0, self.lut_size - 1)

    def palette_lut(self, params: Sequence[dict[str, torch.Tensor]], device) -> torch.Tensor:
        """Each image's colour look-up table, Tensor[B, 3, lut_size] in [0, 1].

        Colour j sits at the centre of its band (bands have the palette's random proportions); levels between two
        centres interpolate linearly, levels outside the first/last centre take the end colour.
        """
        weights = torch.stack([p["weights"] for p in params]).to(device)  # [B, K]
        colours = torch.stack([p["colours"] for p in params]).to(device)  # [B, K, 3]
        n = torch.stack([p["n_colours"] for p in params]).to(device).view(-1, 1)  # [B, 1]
        k = weights.shape[1]
        ends = torch.cumsum(weights, dim=1)
        total = ends[:, -1:]
        centres = (ends - weights * 0.5) / total
        used = torch.arange(k, device=device).view(1, k) < n
        centres = torch.where(used, centres, torch.full_like(centres, 2.0))  # unused slots never reached
        q = (torch.arange(self.lut_size, device=device, dtype=torch.float32) + 0.5) / self.lut_size
        q = q.view(1, -1).expand(len(params), -1).contiguous()
        right = torch.searchsorted(centres, q, right=True)  # how many centres are <= q
        left = (right - 1).clamp_(min=0)
        right = torch.minimum(right, n - 1)
        c_left = torch.gather(centres, 1, left)
        c_right = torch.gather(centres, 1, right)
        span = c_right - c_left
        frac = torch.where(span > 0, (q - c_left) / span.clamp_min(1e-12), torch.zeros_like(q)).clamp_(0, 1)
        col_left = torch.gather(colours, 1, left.unsqueeze(-1).expand(-1, -1, 3))
        col_right = torch.gather(colours, 1, right.unsqueeze(-1).expand(-1, -1, 3))
        lut = (col_left + frac.unsqueeze(-1) * (col_right - col_left)).clamp_(0, 1)  # [B, L, 3]
        return lut.permute(0, 2, 1).contiguous()

