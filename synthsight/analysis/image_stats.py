"""Image statistics that the synthetic-pretraining papers tie to transfer: naturalness and diversity.

- power-spectrum slope: the radially averaged power spectrum of natural images falls as 1/f^alpha with alpha ~ 2;
- colour statistics: mean, spread and saturation of the RGB values;
- diversity: how different the images of a set are from each other (structure and colour).

Pure functions of image tensors (Tensor[B, 3, H, W] in [0, 1]).

Example:
    >>> stats = image_statistics(create_generator("spectrum", size=128).generate(range(64), seed=0))
    >>> stats.slope_mean
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from synthsight.augment.ops import grayscale

# scikit-image sample photographs that ship inside the package (no download); line drawings and text excluded.
NATURAL_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "moon", "brick", "grass",
                  "gravel", "immunohistochemistry", "hubble_deep_field", "retina")


@dataclass
class ImageStatistics:
    n: int
    slope_mean: float  # alpha in power ~ 1/f^alpha, averaged over images (natural photographs: about 2)
    slope_std: float
    mean_rgb: tuple[float, float, float]
    std_rgb: tuple[float, float, float]  # pixel spread per channel within images, averaged
    saturation: float  # mean HSV-style saturation (max - min) / max
    structure_diversity: float  # effective rank of 16x16 grey thumbnails / its maximum: 0 = all alike, 1 = spread
    colour_diversity: float  # mean pairwise cosine distance of 8x8x8 colour histograms

    def to_dict(self) -> dict:
        return asdict(self)


def spectrum_slopes(images: torch.Tensor, fmin: float = 2.0, fmax_fraction: float = 0.25) -> torch.Tensor:
    """Per-image alpha of a least-squares fit log P(f) = c - alpha log f over radial frequencies
    fmin..fmax_fraction*size cycles per image (avoids the DC term and the highest, aliased frequencies)."""
    gray = grayscale(images.float())[:, 0]
    b, h, w = gray.shape
    gray = gray - gray.mean(dim=(1, 2), keepdim=True)
    window = torch.outer(torch.hann_window(h, periodic=False), torch.hann_window(w, periodic=False)).to(gray)
    power = torch.fft.fft2(gray * window).abs().pow(2)
    fy = torch.fft.fftfreq(h, d=1.0 / h).to(gray).view(-1, 1)
    fx = torch.fft.fftfreq(w, d=1.0 / w).to(gray).view(1, -1)
    radius = torch.sqrt(fx**2 + fy**2).round().long()
    rmax = int(min(h, w) * fmax_fraction)
    bins = torch.arange(int(fmin), rmax + 1, device=gray.device)
    flat_r = radius.flatten()
    counts = torch.bincount(flat_r, minlength=rmax + 1)[bins].clamp(min=1).to(gray)
    radial = torch.stack([torch.bincount(flat_r, weights=p.flatten(), minlength=rmax + 1)[bins] for p in power])
    log_f = torch.log(bins.to(gray))
    log_p = torch.log(radial / counts + 1e-12)
    x = log_f - log_f.mean()
    slope = ((log_p - log_p.mean(dim=1, keepdim=True)) * x).sum(dim=1) / (x * x).sum()
    return -slope


def _mean_pairwise_cosine_distance(v: torch.Tensor) -> float:
    v = F.normalize(v.float(), dim=1)
    n = v.shape[0]
    if n < 2:
        return 0.0
    sim = v @ v.t()
    return float(1 - (sim.sum() - sim.diagonal().sum()) / (n * (n - 1)))


def effective_rank_fraction(vectors: torch.Tensor) -> float:
    """exp(entropy of the normalised squared singular values) / min(n, d) of centred, L2-normalised rows."""
    v = vectors.float() - vectors.float().mean(dim=1, keepdim=True)
    v = F.normalize(v, dim=1)
    s = torch.linalg.svdvals(v) ** 2
    p = s / s.sum().clamp(min=1e-12)
    return float(torch.exp(-(p * torch.log(p + 1e-12)).sum())) / min(v.shape)


def image_statistics(images: torch.Tensor) -> ImageStatistics:
    """All statistics of a set of images (Tensor[B, 3, H, W] in [0, 1], B >= 2)."""
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] < 2:
        raise ValueError(f"expected Tensor[B>=2, 3, H, W] in [0, 1], got shape {tuple(images.shape)}")
    x = images.float()
    slopes = spectrum_slopes(x)
    thumbs = F.adaptive_avg_pool2d(grayscale(x), 16).flatten(1)
    q = (x.clamp(0, 1) * 7.999).long()
    codes = (q[:, 0] * 64 + q[:, 1] * 8 + q[:, 2]).flatten(1)
    hists = torch.stack([torch.bincount(c, minlength=512).float() for c in codes])
    mx, mn = x.max(dim=1).values, x.min(dim=1).values
    saturation = ((mx - mn) / mx.clamp(min=1e-6)).mean()
    return ImageStatistics(
        n=x.shape[0], slope_mean=float(slopes.mean()), slope_std=float(slopes.std()),
        mean_rgb=tuple(round(float(v), 4) for v in x.mean(dim=(0, 2, 3))),
        std_rgb=tuple(round(float(v), 4) for v in x.std(dim=(2, 3)).mean(dim=0)),
        saturation=float(saturation),
        structure_diversity=effective_rank_fraction(thumbs),
        colour_diversity=_mean_pairwise_cosine_distance(hists),
    )


def natural_patches(n: int = 64, size: int = 128, seed: int = 0) -> torch.Tensor:
    """Random size x size crops of scikit-image's bundled photographs (Tensor[n, 3, size, size] in [0, 1])."""
    try:
        import skimage.data
    except ImportError as err:
        raise ImportError("natural reference images need scikit-image: pip install 'synthsight[stats]'") from err
    g = torch.Generator().manual_seed(seed)
    photos = []
    for name in NATURAL_IMAGES:
        im = torch.as_tensor(getattr(skimage.data, name)()).float() / 255.0
        im = im.unsqueeze(-1).expand(*im.shape, 3) if im.ndim == 2 else im[..., :3]
        photos.append(im.permute(2, 0, 1))
    out = []
    for i in range(n):
        photo = photos[i % len(photos)]
        _, h, w = photo.shape
        side = min(h, w, max(size, int(min(h, w) * (0.25 + 0.5 * torch.rand(1, generator=g).item()))))
        y = int(torch.randint(0, h - side + 1, (1,), generator=g))
        x = int(torch.randint(0, w - side + 1, (1,), generator=g))
        crop = photo[:, y:y + side, x:x + side].unsqueeze(0)
        out.append(F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False))
    return torch.cat(out).clamp(0, 1)
