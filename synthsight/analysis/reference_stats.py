"""Each family's image statistics beside the figures measured on its authors' reference code.

The reference figures (shared/REFERENCE.md, section 7) were measured on 256 images per family rendered by the
papers' own generator code with their published settings, compared at 128 px. The definitions, all on float
images in [0, 1]:

- slope: mean over images of the radially averaged power-spectrum slope alpha (power ~ 1/f^alpha) of the grey
  image (mean of R, G, B), mean removed, Hann-windowed, least-squares line of log power against log f over
  f = 2 .. S/2 - 8 cycles per image; spread = the std over images;
- std: mean over images of the per-image pixel std of each RGB channel, averaged over the three channels;
- chroma: mean over all pixels of the std across R, G, B at that pixel (colourfulness);
- mean: mean pixel value.

Example:
    >>> rows = compare_with_reference(["contours/rcdb"], n=64)
    >>> print(reference_table(rows))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from synthsight.analysis.image_stats import spectrum_slopes


@dataclass(frozen=True)
class ReferenceStats:
    slope: float
    spread: float
    std: float
    chroma: float
    mean: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


METRICS = ("slope", "spread", "std", "chroma", "mean")

# Allowed absolute difference from the reference, per metric. The slope tolerance is about a third of the
# typical spread over images (0.3-1.0), the others are a few hundredths of the [0, 1] range; a sample of 64-256
# images measures each figure to well inside these (seeded; tests use a fixed sample).
TOLERANCE = ReferenceStats(slope=0.35, spread=0.35, std=0.04, chroma=0.04, mean=0.08)

# family/variant -> (reference code the figures come from, its figures)
REFERENCE: dict[str, tuple[str, ReferenceStats]] = {
    "dead_leaves/mixed": ("dead leaves, mixed shapes (Baradad 2021)", ReferenceStats(2.34, 0.16, 0.268, 0.215, 0.50)),
    "statistical/spectrum_color_wmm": ("spectrum + colour + WMM, 10 iterations (Baradad 2021)",
                                       ReferenceStats(1.36, 0.29, 0.169, 0.140, 0.49)),
    "statistical/spectrum_color": ("spectrum + colour (Baradad 2021)", ReferenceStats(2.87, 0.79, 0.183, 0.152, 0.50)),
    "statistical/spectrum": ("spectrum, channels correlated by a colour PCA (Baradad 2021)",
                             ReferenceStats(3.19, 0.98, 0.120, 0.176, 0.50)),
    "fractal_ifs/svd": ("Anderson & Farrell IFS fractals, 100k points", ReferenceStats(2.64, 0.78, 0.166, 0.190, 0.50)),
    "fractal_ifs/fractaldb": ("FractalDB (362 px, patch_gray, weights 0.4)", ReferenceStats(1.74, 0.20, 0.101, 0.0, 0.06)),
    "contours/rcdb": ("RCDB (512 px -> 128)", ReferenceStats(1.78, 0.44, 0.121, 0.0, 0.90)),
    "contours/visual_atoms": ("Visual Atoms (512 px -> 128)", ReferenceStats(2.00, 0.42, 0.161, 0.0, 0.15)),
}


def reference_statistics(images: torch.Tensor) -> ReferenceStats:
    """The five reference figures of a set of images (Tensor[B >= 2, 3, S, S] in [0, 1])."""
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] < 2:
        raise ValueError(f"expected Tensor[B>=2, 3, S, S] in [0, 1], got shape {tuple(images.shape)}")
    x = images.float()
    size = min(x.shape[-2:])
    grey = x.mean(dim=1, keepdim=True).expand_as(x)  # the reference's grey is the plain mean of R, G, B
    slopes = spectrum_slopes(grey, fmin=2.0, fmax_fraction=(size / 2 - 8) / size)
    return ReferenceStats(
        slope=float(slopes.mean()), spread=float(slopes.std()),
        std=float(x.std(dim=(2, 3)).mean()),
        chroma=float(x.std(dim=1, unbiased=False).mean()),
        mean=float(x.mean()),
    )


@dataclass
class ReferenceRow:
    name: str  # family/variant
    source: str  # the reference code the figures come from
    ours: ReferenceStats
    reference: ReferenceStats

    def outside(self) -> list[str]:
        """The metrics whose difference from the reference exceeds TOLERANCE."""
        return [m for m in METRICS
                if abs(getattr(self.ours, m) - getattr(self.reference, m)) > getattr(TOLERANCE, m)]

    def to_dict(self) -> dict:
        return {"name": self.name, "source": self.source, "ours": self.ours.to_dict(),
                "reference": self.reference.to_dict(), "outside_tolerance": self.outside()}


def compare_with_reference(names: list[str] | None = None, n: int = 128, size: int = 128,
                           seed: int = 0) -> list[ReferenceRow]:
    """Render n images of each named family/variant (default: every family with reference figures) at `size`
    and measure them beside the reference figures."""
    from synthsight.generators import create_generator

    rows = []
    for name in names or list(REFERENCE):
        gen = create_generator(name, size=size)
        key = f"{gen.family}/{gen.variant}"
        if key not in REFERENCE:
            raise ValueError(f"no reference figures for {key}; families with figures: {', '.join(REFERENCE)}")
        source, ref = REFERENCE[key]
        rows.append(ReferenceRow(key, source, reference_statistics(gen.generate(range(n), seed)), ref))
    return rows


def reference_table(rows: list[ReferenceRow]) -> str:
    """Markdown table: ours / reference per metric, '!' marking a figure outside tolerance."""
    tol = ", ".join(f"{m} ±{getattr(TOLERANCE, m):g}" for m in METRICS)
    lines = [f"tolerance: {tol}", "",
             "| family | slope | spread | std | chroma | mean | within tolerance | reference code |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        bad = r.outside()
        cells = [f"{getattr(r.ours, m):.3f} / {getattr(r.reference, m):.3f}{' !' if m in bad else ''}"
                 for m in METRICS]
        verdict = "yes" if not bad else "NO: " + ", ".join(bad)
        lines.append(f"| {r.name} | {' | '.join(cells)} | {verdict} | {r.source} |")
    return "\n".join(lines)
