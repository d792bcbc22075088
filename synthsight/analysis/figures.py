"""What every analysis plot shares: the Figure record it returns, PNG saving, and images made displayable.

Every analysis function draws with matplotlib's Agg backend (no display) and writes one PNG.

Example:
    >>> fig, axes = new_figure(4, 3)
    >>> axes[0, 0].plot([0, 1], [1, 0])
    >>> save_png(fig, Path("out/line.png"))   # closes the figure, returns the path
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: write files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

DPI = 110
MATCH_COLOUR = "#2a9d3f"  # green: neighbour of the same class, per-class gain
MISMATCH_COLOUR = "#d62728"  # red: neighbour of another class, per-class loss


@dataclass
class Figure:
    """One written plot: a short name (a key in analysis.json), its PNG file, a caption, and its report section."""

    name: str
    path: Path
    caption: str
    section: str = "analysis"

    def to_dict(self, relative_to: Path | None = None) -> dict[str, Any]:
        path = self.path.relative_to(relative_to) if relative_to is not None else self.path
        return {"name": self.name, "file": str(path), "caption": self.caption, "section": self.section}


def new_figure(width: float, height: float, rows: int = 1, cols: int = 1, **kwargs: Any):
    """plt.subplots at the package's resolution; axes always come as a 2-D array [rows, cols]."""
    return plt.subplots(rows, cols, figsize=(width, height), dpi=DPI, squeeze=False, **kwargs)


def save_png(fig: Any, path: Path) -> Path:
    """Write `fig` as a PNG (creating the folder), close it, return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def displayable(images: torch.Tensor) -> np.ndarray:
    """uint8 (or float [0, 1]) Tensor[N, 3, H, W] -> uint8 array [N, H, W, 3] for imshow."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be Tensor[N, 3, H, W], got shape {tuple(images.shape)}")
    if images.is_floating_point():
        images = images.clamp(0, 1).mul(255).round().to(torch.uint8)
    return images.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def class_name(classes: list[str] | None, label: int) -> str:
    return classes[label] if classes is not None and 0 <= label < len(classes) else str(label)


def colour_rgb(name: str) -> np.ndarray:
    """A matplotlib colour name or hex string -> uint8 RGB."""
    return (np.array(matplotlib.colors.to_rgb(name)) * 255).round().astype(np.uint8)


def mosaic_figure(tiles: np.ndarray, cols: int, title: str = "", titles: list[str] | None = None,
                  borders: list[str | None] | None = None, row_labels: list[str] | None = None,
                  tile_inches: float = 0.8, left_inches: float = 0.0, fontsize: float = 6):
    """A figure showing uint8 tiles [N, H, W, 3] as one image, row-major with `cols` per row: one imshow instead of
    one axes per tile, which keeps grids of a hundred images fast. Optional per-tile titles and coloured borders,
    a label left of each row, and a figure title. Each tile takes about `tile_inches` on the page."""
    n, h, w, _ = tiles.shape
    rows = -(-n // cols)
    edge = 0 if borders is None else max(1, round(0.07 * max(h, w)))  # border width, painted around the tile
    gap = max(1, round(0.06 * max(h, w)))  # white space between cells
    top = 0 if titles is None else max(4, round(0.3 * h))  # room for a title above each tile
    ch, cw = h + 2 * edge + gap + top, w + 2 * edge + gap
    canvas = np.full((rows * ch, cols * cw, 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = r * ch + top, c * cw
        if borders is not None and borders[i] is not None:
            canvas[y : y + h + 2 * edge, x : x + w + 2 * edge] = colour_rgb(borders[i])
        canvas[y + edge : y + edge + h, x + edge : x + edge + w] = tiles[i]
    inch = tile_inches / cw  # inches per canvas pixel
    head = 0.45 if title else 0.1
    width, height = canvas.shape[1] * inch + left_inches + 0.1, canvas.shape[0] * inch + head + 0.05
    fig = plt.figure(figsize=(width, height), dpi=DPI)
    ax = fig.add_axes((left_inches / width, 0.05 / height, canvas.shape[1] * inch / width,
                       canvas.shape[0] * inch / height))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    for i, text in enumerate(titles or []):
        r, c = divmod(i, cols)
        if text:
            ax.text(c * cw + (w + 2 * edge) / 2, r * ch + top - 0.5, text, ha="center", va="bottom", fontsize=fontsize)
    for r, label in enumerate(row_labels or []):
        ax.text(-gap, r * ch + top + edge + h / 2, label, ha="right", va="center", fontsize=fontsize)
    if title:
        fig.suptitle(title, fontsize=8, y=1 - 0.05 / height, va="top")
    return fig
