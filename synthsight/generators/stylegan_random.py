"""Randomly initialised StyleGAN-like generator: a synthesis network that is never trained.

After Baradad et al. 2021 ("Learning to See by Looking at Noise", StyleGAN-Oriented), written by us from the
paper's description (no code from the StyleGAN repositories):

- A StyleGAN2-like synthesis network: a random constant 4 x 4 input (or 5..7 px, so that doubling reaches the
  image size), then one block per resolution: bilinear x2 upsampling, two modulated 3 x 3 convolutions, each
  followed by a noise input, a bias and LeakyReLU(0.2); a modulated 1 x 1 "toRGB" per block, summed over the blocks
  through upsampled skips. Channels: 512 / resolution within [8, 64].
- Per-layer latents w = LeakyReLU_0.2(N(0, I)) (the mapping network is bypassed), styles s = A w + 1 with a random
  affine A per layer; modulation: x * s per input channel, applied to activations so that a whole group of images
  shares one ordinary convolution.
- "oriented" (StyleGAN-Oriented, the paper's best): each 3 x 3 kernel W[o, i] is one filter from a random subset
  (5..40 per layer) of a bank of 40 oriented filters (8 step edges, 8 lines, 4 sparse patterns, and their
  negatives), each output channel scaled by N(0, 1). Each convolution's output is standardised per channel (unit
  RMS, as StyleGAN's AdaIN) before that scale, so the scale survives and the edge and line filters' high-pass
  output is not lost in the coarser layers' smooth signal; padding replicates the border. Each block's toRGB output
  is brought to unit RMS and weighted level_falloff^-(blocks above it) (1.5): every scale shows, and the spectrum
  slope is ~2.5 like natural images' (the StyleGAN2 demodulation and plain skip sum used before gave soft colour
  clouds, slope ~3.3, hardly different from "default_init").
- "default_init" and "sparse" keep StyleGAN2's demodulation (each output channel divided by
  sqrt(sum_i,k (W s_i)^2 + 1e-8)), LeakyReLU x sqrt(2), reflect padding and the plain skip sum: "default_init" --
  N(0, 1) weights; "sparse" -- N(0, 1) weights kept with probability U(0.05, 0.25) per layer. Both look like soft
  colour clouds (slope ~3.5-4).
- Noise inputs: pink noise, amplitude 1/f^a with a ~ U(0.5, 1.5), times a Laplacian envelope
  exp(-(|x - cx| + |y - cy|) / w) around a random centre (separable), strength U(0, 0.3) per layer (times a
  per-channel N(0, 1) gain of the network). The "oriented" variant uses one noise map shared across scales (each
  layer gets the low-frequency part of the same spectrum); the others draw an independent map per layer. Biases
  U(-0.2, 0.2).
- Output channels are standardised, then given a random mean (natural-image mean + N(0, 0.1^2)) and standard
  deviation (natural-image std x exp(N(0, 0.3^2))), and clipped to [0, 1].
- The network is re-sampled every `images_per_network` (400) images: image i uses network i // 400, a pure function
  of (network_seed, i // 400, variant, size). The stream seed varies the latents, noise and colours, not the
  networks; pass another `network_seed` for another set of networks. `params_at(rng, i)` (used by `generate` and
  by `mix`) adds the network number to the image's parameters as params["network"]; parameters from
  `sample_params` alone render with network 0.

On CPU each image is rendered on its own (bit-identical whatever the batch: oneDNN picks convolution kernels by
shape); on other devices the images of one network go through one forward pass.

Example:
    >>> gen = GENERATORS.create("stylegan_random", variant="oriented", size=128)
    >>> images = gen.generate(range(16), seed=0)   # Tensor[16, 3, 128, 128] in [0, 1], all from network 0
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from synthsight.generators.base import Generator, image_rng
from synthsight.registry import GENERATORS

_NATURAL_MEAN = (0.485, 0.456, 0.406)  # ImageNet RGB statistics
_NATURAL_STD = (0.229, 0.224, 0.225)
_LATENT_DIM = 64
_GAIN = math.sqrt(2.0)  # LeakyReLU gain


def filter_bank() -> torch.Tensor:
    """The 40 oriented 3 x 3 filters, Tensor[40, 3, 3], each of unit L2 norm.

    8 step edges (tanh(2 d) of the signed distance d to a line through the centre, orientations k x 22.5 deg),
    8 lines (exp(-2 d^2), zero mean), 4 sparse patterns (centre impulse, corner impulse, a +/- dipole, centre plus
    corners), then the negatives of all 20.
    """
    y, x = torch.meshgrid(torch.arange(-1.0, 2.0), torch.arange(-1.0, 2.0), indexing="ij")
    filters = []
    for k in range(8):
        theta = k * math.pi / 8
        filters.append(torch.tanh(2.0 * (x * math.cos(theta) + y * math.sin(theta))))
    for k in range(8):
        theta = k * math.pi / 8
        line = torch.exp(-2.0 * (x * math.sin(theta) - y * math.cos(theta)) ** 2)
        filters.append(line - line.mean())
    sparse = torch.zeros(4, 3, 3)
    sparse[0, 1, 1] = 1.0
    sparse[1, 0, 0] = 1.0
    sparse[2, 1, 0], sparse[2, 1, 2] = 1.0, -1.0
    sparse[3, 1, 1] = sparse[3, 0, 0] = sparse[3, 0, 2] = sparse[3, 2, 0] = sparse[3, 2, 2] = 1.0
    bank = torch.cat([torch.stack(filters), sparse])
    bank = bank / bank.flatten(1).norm(dim=1).view(-1, 1, 1)
    return torch.cat([bank, -bank])


@dataclass
class _Layer:
    """One modulated convolution of a network (tensors on the render device)."""

    weight: torch.Tensor  # [Cout, Cin, k, k]
    weight_sq: torch.Tensor  # [Cout, Cin]: sum over the kernel of weight^2 (for demodulation)
    affine: torch.Tensor  # [Cin, D]: styles s = affine @ w + 1
    bias: torch.Tensor  # [Cout]
    noise_gain: torch.Tensor | None  # [Cout] (None for toRGB)
    resolution: int
    channel_scale: torch.Tensor | None = None  # [Cout]: "oriented" convolutions, applied after standardising


@dataclass
class _Network:
    const: torch.Tensor  # [C0, r0, r0]
    convs: list[_Layer]
    to_rgb: list[_Layer]


@lru_cache(maxsize=16)
def _log_radius(res: int, device: torch.device) -> torch.Tensor:
    """log |f| of the rfft grid of a res-pixel map (DC: 0, removed later), Tensor[res, res//2+1]."""
    fy = torch.fft.fftfreq(res, d=1.0 / res).view(-1, 1)
    fx = torch.fft.rfftfreq(res, d=1.0 / res).view(1, -1)
    f = torch.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    return f.log().to(device)


@lru_cache(maxsize=16)
def _coords(res: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel centres in [0, 1]: y Tensor[res, 1], x Tensor[1, res]."""
    c = (torch.arange(res, dtype=torch.float32) + 0.5) / res
    return c.view(-1, 1).to(device), c.view(1, -1).to(device)


def _rfft_rows(full: int, res: int) -> torch.Tensor:
    """Rows of a full-res rfft grid holding the frequencies of a res-pixel grid (res < full): the
    (res + 1) // 2 non-negative ones and the res // 2 negative ones."""
    return torch.cat([torch.arange((res + 1) // 2), torch.arange(full - res // 2, full)])


@GENERATORS.register("stylegan_random")
class StyleGANRandom(Generator):
    """A never-trained StyleGAN-like synthesis network, re-sampled every few hundred images; see the module
    docstring.

    Args:
        variant: "oriented" (default, the paper's best), "default_init" or "sparse".
        size: image side in pixels.
        images_per_network: images rendered by one random network before the next (400 in the paper).
        network_seed: seeds the sequence of networks (network n = f(network_seed, n)).
        channel_base: channels at resolution r are channel_base / r, within [min_channels, max_channels].
        noise_strength: range of the per-layer noise strength.
        level_falloff: "oriented" only: each resolution's RGB contribution is this many times weaker than the next
            finer one's (1.5: a spectrum slope near natural images'; larger: finer, more uniform texture; 1: every
            scale at the same strength, coarser look).
    """

    family = "stylegan_random"
    version = "2"  # 2: "oriented" standardises its convolutions and weights its resolutions (was soft clouds)
    variants = ("oriented", "default_init", "sparse")

    def __init__(
        self,
        variant: str | None = None,
        size: int = 128,
        images_per_network: int = 400,
        network_seed: int = 0,
        channel_base: int = 512,
        min_channels: int = 8,
        max_channels: int = 64,
        noise_strength: tuple[float, float] = (0.0, 0.3),
        level_falloff: float = 1.5,
    ) -> None:
        super().__init__(variant, size)
        if images_per_network < 1:
            raise ValueError(f"images_per_network must be >= 1, got {images_per_network}")
        if not 1 <= min_channels <= max_channels or channel_base < 1:
            raise ValueError(f"need 1 <= min_channels <= max_channels and channel_base >= 1, got "
                             f"{min_channels}, {max_channels}, {channel_base}")
        if not 0.0 <= noise_strength[0] <= noise_strength[1]:
            raise ValueError(f"noise_strength must be a range of non-negative numbers, got {noise_strength}")
        if not level_falloff > 0:
            raise ValueError(f"level_falloff must be > 0 (1.5: a natural-image spectrum slope), got {level_falloff}")
        self.images_per_network = int(images_per_network)
        self.network_seed = int(network_seed)
        self.channel_base = int(channel_base)
        self.min_channels, self.max_channels = int(min_channels), int(max_channels)
        self.noise_strength = (float(noise_strength[0]), float(noise_strength[1]))
        self.level_falloff = float(level_falloff)
        # "oriented": each convolution's output standardised per channel (below); the others: StyleGAN2 demodulation
        self.standardise = self.variant == "oriented"
        # start at r0 in [4, 8) so that r0 * 2^n == size when possible; otherwise render 4 * 2^n >= size and resize
        n = max(0, int(math.floor(math.log2(size / 4.0))))
        r0 = size / 2**n
        if r0 == int(r0) and r0 >= 4:
            self.start, self.blocks = int(r0), n
        else:
            n = int(math.ceil(math.log2(size / 4.0)))
            self.start, self.blocks = 4, n
        self.resolutions = [self.start * 2**k for k in range(self.blocks + 1)]
        self.render_size = self.resolutions[-1]
        self._networks: OrderedDict[tuple[int, str], _Network] = OrderedDict()

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "images_per_network": self.images_per_network,
            "network_seed": self.network_seed,
            "channel_base": self.channel_base,
            "min_channels": self.min_channels,
            "max_channels": self.max_channels,
            "noise_strength": list(self.noise_strength),
            "level_falloff": self.level_falloff,
        }

    def channels(self, res: int) -> int:
        return max(self.min_channels, min(self.max_channels, self.channel_base // res))

    @property
    def n_convs(self) -> int:
        return 1 + 2 * self.blocks

    # ---------------------------------------------------------------- networks
    def network_of(self, index: int) -> int:
        """The network that renders image `index`."""
        return index // self.images_per_network

    def network(self, number: int, device: torch.device) -> _Network:
        """Network `number` on `device` (built from its own generator, cached)."""
        key = (number, str(device))
        net = self._networks.get(key)
        if net is None:
            rng = image_rng(self.network_seed, number, f"{self.salt}/network")
            net = self._build_network(rng, device)
            self._networks[key] = net
            while len(self._networks) > 8:
                self._networks.popitem(last=False)
        else:
            self._networks.move_to_end(key)
        return net

    def _weights(self, rng: torch.Generator, c_out: int, c_in: int) -> torch.Tensor:
        if self.variant == "oriented":
            bank = _BANK
            subset = torch.randperm(len(bank), generator=rng)[: int(torch.randint(5, 41, (1,), generator=rng))]
            pick = subset[torch.randint(len(subset), (c_out * c_in,), generator=rng)]
            return bank[pick].view(c_out, c_in, 3, 3)  # the N(0, 1) scale per output channel: _Layer.channel_scale
        weight = torch.randn(c_out, c_in, 3, 3, generator=rng)
        if self.variant == "sparse":
            density = 0.05 + 0.2 * float(torch.rand(1, generator=rng))
            weight = weight * (torch.rand(c_out, c_in, 3, 3, generator=rng) < density)
        return weight

    def _layer(self, rng, weight: torch.Tensor, res: int, noise: bool, device: torch.device) -> _Layer:
        c_out, c_in = weight.shape[:2]
        affine = torch.randn(c_in, _LATENT_DIM, generator=rng) / math.sqrt(_LATENT_DIM)
        bias = torch.rand(c_out, generator=rng) * 0.4 - 0.2
        gain = torch.randn(c_out, generator=rng) if noise else None
        scale = torch.randn(c_out, generator=rng) if noise and self.standardise else None
        return _Layer(
            weight=weight.to(device),
            weight_sq=weight.square().sum((2, 3)).to(device),
            affine=affine.to(device),
            bias=bias.to(device),
            noise_gain=None if gain is None else gain.to(device),
            resolution=res,
            channel_scale=None if scale is None else scale.to(device),
        )

    def _build_network(self, rng: torch.Generator, device: torch.device) -> _Network:
        r0 = self.start
        const = torch.randn(self.channels(r0), r0, r0, generator=rng)
        convs, to_rgb = [], []
        c_prev = self.channels(r0)
        for k, res in enumerate(self.resolutions):
            c = self.channels(res)
            for _ in range(1 if k == 0 else 2):
                convs.append(self._layer(rng, self._weights(rng, c, c_prev), res, True, device))
                c_prev = c
            rgb = torch.randn(3, c, 1, 1, generator=rng) / math.sqrt(c)
            to_rgb.append(self._layer(rng, rgb, res, False, device))
        return _Network(const.to(device), convs, to_rgb)

    # ---------------------------------------------------------------- parameters
    def sample_params(self, rng: torch.Generator) -> dict[str, torch.Tensor]:
        """One image's latents, noise and colour (CPU tensors).

        "latents" [L, 64] (L = convs + toRGBs, w = LeakyReLU_0.2(N(0, 1))); "noise_phase_<r>" [2, r, r//2+1] per
        resolution r (independent maps; "oriented": one "noise_phase" [R, R//2+1] at the top resolution R);
        "noise_exponent" [] (a of 1/f^a); "noise_strength" [convs]; "envelope" [3] (centre x, y and width as
        fractions of the image); "colour_mean" [3], "colour_std" [3].
        """
        n_layers = self.n_convs + len(self.resolutions)
        params = {"latents": F.leaky_relu(torch.randn(n_layers, _LATENT_DIM, generator=rng), 0.2)}
        if self.variant == "oriented":
            top = self.render_size
            params["noise_phase"] = torch.rand(top, top // 2 + 1, generator=rng).mul_(2.0 * math.pi)
        else:
            for res in self.resolutions:
                params[f"noise_phase_{res}"] = torch.rand(2, res, res // 2 + 1, generator=rng).mul_(2.0 * math.pi)
        u = torch.rand(5 + self.n_convs, generator=rng)
        params["noise_exponent"] = 0.5 + u[0]
        lo, hi = self.noise_strength
        params["noise_strength"] = lo + (hi - lo) * u[5:]
        params["envelope"] = torch.stack([u[1], u[2], 0.2 + 0.6 * u[3]])
        z = torch.randn(6, generator=rng)
        mean = torch.tensor(_NATURAL_MEAN) + 0.1 * z[:3]
        params["colour_mean"] = mean.clamp_(0.1, 0.9)
        params["colour_std"] = torch.tensor(_NATURAL_STD) * torch.exp(0.3 * z[3:])
        return params

    def params_at(self, rng: torch.Generator, index: int) -> dict[str, torch.Tensor]:
        """sample_params(rng) of image `index`, plus "network" [] (int64): index // images_per_network."""
        return {**self.sample_params(rng), "network": torch.tensor(self.network_of(index))}

    # ---------------------------------------------------------------- rendering
    def render(self, params: Sequence[dict[str, torch.Tensor]], device: torch.device) -> torch.Tensor:
        """Tensor[B, 3, S, S] in [0, 1]; on CPU one image per forward pass, elsewhere one pass per network."""
        device = torch.device(device)
        return self._render(params, device, per_image=device.type == "cpu")

    def _render(self, params: Sequence[dict[str, torch.Tensor]], device: torch.device, per_image: bool) -> torch.Tensor:
        out = torch.empty(len(params), 3, self.size, self.size, device=device)
        networks = [int(p["network"]) if "network" in p else 0 for p in params]
        for number in dict.fromkeys(networks):
            rows = [k for k, n in enumerate(networks) if n == number]
            net = self.network(number, device)
            groups = [[k] for k in rows] if per_image else [rows]
            for group in groups:
                out[group] = self._forward(net, [params[k] for k in group], device)
        return out

    def _noise_maps(self, params: Sequence[dict[str, torch.Tensor]], device: torch.device) -> dict[int, torch.Tensor]:
        """Per resolution r, the noise maps of its two convolutions, Tensor[B, 2, r, r] (unit std, times the
        Laplacian envelope; the first block's single convolution uses map 0; "oriented": one map for both)."""
        b = len(params)
        exponent = torch.stack([p["noise_exponent"] for p in params]).to(device).view(b, 1, 1, 1)
        env = torch.stack([p["envelope"] for p in params]).to(device)
        scale = -env[:, 2].reciprocal().view(b, 1, 1)
        if self.variant == "oriented":
            top = self.render_size
            shared = torch.stack([p["noise_phase"] for p in params]).to(device)  # [B, R, R//2+1]
        maps = {}
        for res in self.resolutions:
            if self.variant == "oriented":
                if res == top:
                    phase = shared
                else:
                    phase = shared.index_select(1, _rfft_rows(top, res).to(device))[..., : res // 2 + 1]
                phase = phase.unsqueeze(1)  # [B, 1, r, r//2+1]: the same map for both convolutions
            else:
                phase = torch.stack([p[f"noise_phase_{res}"] for p in params]).to(device)  # [B, 2, r, r//2+1]
            amplitude = torch.exp(_log_radius(res, device) * -exponent)  # [B, 1, r, r//2+1]
            amplitude[..., 0, 0] = 0.0
            spec = torch.complex(torch.cos(phase).mul_(amplitude), torch.sin(phase).mul_(amplitude))
            noise = torch.fft.irfft2(spec, s=(res, res))
            noise = noise / noise.square().mean((-2, -1), keepdim=True).sqrt_().clamp_min_(1e-12)
            ys, xs = _coords(res, device)  # separable: exp(-|x - cx| / w) exp(-|y - cy| / w)
            ex = torch.exp((xs - env[:, 0].view(b, 1, 1)).abs_().mul_(scale))  # [B, 1, r]
            ey = torch.exp((ys - env[:, 1].view(b, 1, 1)).abs_().mul_(scale))  # [B, r, 1]
            maps[res] = (noise * (ey * ex).unsqueeze(1)).expand(b, 2, res, res)
        return maps

    def _modulated(
        self, x: torch.Tensor, layer: _Layer, w: torch.Tensor, demodulate: bool, input_gain: float = 1.0,
        bias: bool = True,
    ) -> torch.Tensor:
        """Modulated convolution of x [B, Cin, H, W] with styles s = A w + 1 from latents w [B, D]: per-sample
        weights W[o, i] s_i (demodulated: divided by sqrt(sum_i,k (W[o, i, k] s_i)^2 + 1e-8)), times
        `input_gain` (the previous activation's gain, folded in here), one grouped convolution for the batch (a
        plain one for one image), reflect padding ("oriented": replicate, which adds no edges at the border to
        its line filters), plus the layer's bias if `bias`.
        """
        b, c_in = x.shape[:2]
        styles = (w @ layer.affine.t()).add_(1.0)  # [B, Cin]
        scale = styles if input_gain == 1.0 else styles * input_gain
        weight = layer.weight.unsqueeze(0) * scale.view(b, 1, c_in, 1, 1)  # [B, Cout, Cin, k, k]
        if demodulate:
            d = torch.rsqrt(styles.square() @ layer.weight_sq.t() + 1e-8)  # [B, Cout]
            weight = weight * d.view(b, -1, 1, 1, 1)
        k = weight.shape[-1]
        if k > 1:
            x = F.pad(x, (k // 2,) * 4, mode="replicate" if self.standardise else "reflect")
        y = F.conv2d(
            x.reshape(1, b * c_in, *x.shape[2:]),
            weight.reshape(-1, c_in, k, k),
            bias=layer.bias.repeat(b) if bias else None,
            groups=b,
        )
        return y.view(b, -1, *y.shape[2:])

    def _forward(self, net: _Network, params: Sequence[dict[str, torch.Tensor]], device: torch.device) -> torch.Tensor:
        b = len(params)
        latents = torch.stack([p["latents"] for p in params]).to(device)  # [B, L, D]
        strength = torch.stack([p["noise_strength"] for p in params]).to(device)  # [B, convs]
        noise = self._noise_maps(params, device)
        x = net.const.unsqueeze(0).expand(b, *net.const.shape)
        rgb = None
        li = 0
        for k, res in enumerate(self.resolutions):
            if k > 0:
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            for j in range(1 if k == 0 else 2):
                layer = net.convs[li]
                if self.standardise:  # each channel to unit RMS, then its N(0, 1) scale and its bias
                    x = self._modulated(x, layer, latents[:, li], demodulate=False, bias=False)
                    x = torch.addcmul(layer.bias.view(1, -1, 1, 1), x, _rms_factor(x, (2, 3), layer.channel_scale))
                else:  # LeakyReLU's gain sqrt(2) is applied by the next layer, inside its (linear) convolution
                    gain_in = 1.0 if li == 0 else _GAIN
                    x = self._modulated(x, layer, latents[:, li], demodulate=True, input_gain=gain_in)
                gain = strength[:, li].view(b, 1) * layer.noise_gain.view(1, -1)  # [B, Cout]
                x = F.leaky_relu_(x.addcmul_(noise[res][:, j : j + 1], gain.view(b, -1, 1, 1)), 0.2)
                li += 1
            to_rgb = net.to_rgb[k]
            y = self._modulated(x, to_rgb, latents[:, self.n_convs + k], demodulate=False, input_gain=_GAIN)
            if self.standardise:  # unit RMS per resolution, coarser ones weaker: fine detail is not drowned
                y = y.mul_(_rms_factor(y, (1, 2, 3), self.level_falloff ** (k + 1 - len(self.resolutions))))
            rgb = y if rgb is None else y.add_(F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False))
        if self.render_size != self.size:
            rgb = F.interpolate(rgb, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        mean = rgb.mean((-2, -1), keepdim=True)
        std = (rgb - mean).square().mean((-2, -1), keepdim=True).sqrt_().clamp_min_(1e-8)
        target_mean = torch.stack([p["colour_mean"] for p in params]).to(device).view(b, 3, 1, 1)
        target_std = torch.stack([p["colour_std"] for p in params]).to(device).view(b, 3, 1, 1)
        return ((rgb - mean) / std * target_std + target_mean).clamp_(0.0, 1.0)


def _rms_factor(x: torch.Tensor, dims: tuple[int, ...], scale: torch.Tensor | float) -> torch.Tensor:
    """scale / (x's root mean square over `dims`), shaped to multiply x: x times it has RMS |scale| over `dims`
    (per image; `scale`: a number, or one per channel [C] when dims are the spatial ones)."""
    count = math.prod(x.shape[d] for d in dims)
    rms = torch.linalg.vector_norm(x, dim=dims, keepdim=True).mul_(count**-0.5).clamp_min_(1e-8)
    if isinstance(scale, torch.Tensor):
        return rms.reciprocal_().mul_(scale.view(1, -1, 1, 1))
    return rms.reciprocal_().mul_(scale)


_BANK = filter_bank()
