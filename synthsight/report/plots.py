"""PNG plots of a run: loss curve and accuracy per encoder and protocol."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: write files only
import matplotlib.pyplot as plt  # noqa: E402


def plot_loss_curve(steps: list[int], losses: list[float], path: Path, title: str = "pretraining loss") -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    ax.plot(steps, losses, lw=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_accuracy_bars(table: dict[str, dict[str, float]], path: Path, title: str = "real-data accuracy") -> Path:
    """table[encoder][protocol] = top-1 in percent -> grouped bar chart."""
    encoders = list(table)
    protocols = sorted({p for row in table.values() for p in row})
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=110)
    width = 0.8 / max(1, len(encoders))
    for i, enc in enumerate(encoders):
        xs = [j + i * width for j in range(len(protocols))]
        vals = [table[enc].get(p, 0.0) for p in protocols]
        bars = ax.bar(xs, vals, width, label=enc)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks([j + width * (len(encoders) - 1) / 2 for j in range(len(protocols))], protocols)
    ax.set_ylabel("top-1 (%)")
    lows = [v for row in table.values() for v in row.values()]
    ax.set_ylim(max(0.0, min(lows) - 10) if lows else 0, 100)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
