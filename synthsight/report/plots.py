"""PNG plots of a run: loss curve, other logged training figures, and accuracy per encoder and protocol.

Example:
    >>> plot_loss_curve([0, 10, 20], [4.1, 3.2, 2.9], Path("runs/demo/loss.png"))
    >>> plot_log_panels({"knn": ([0, 10], [0.4, 0.6])}, Path("runs/demo/online_knn.png"), "online k-NN", ("knn",))
    >>> plot_accuracy_bars({"ours": {"knn": 80.1}}, Path("runs/demo/eval/accuracy.png"))
"""

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
    ax.set_ylim(0, 100)  # from zero: bar lengths are proportional to the accuracies they show
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_log_panels(series: dict[str, tuple[list[int], list[float]]], path: Path, title: str,
                    percent: tuple[str, ...] = ()) -> Path:
    """One small line plot per logged column: series[name] = (steps, values); names in `percent` are shown x100."""
    if not series:
        raise ValueError("plot_log_panels needs at least one series")
    fig, axes = plt.subplots(1, len(series), figsize=(3.2 * len(series) + 0.6, 3.0), dpi=110, squeeze=False)
    for ax, (name, (steps, values)) in zip(axes[0], series.items()):
        scale = 100.0 if name in percent else 1.0
        ax.plot(steps, [scale * v for v in values], lw=1.5, marker="o" if len(steps) < 30 else None, ms=3)
        ax.set_xlabel("step")
        ax.set_title(name + (" (%)" if name in percent else ""), fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
