"""A study's page and plots: accuracy against log budget per variation, per-variation bars, the tables.

report.html (self-contained, like a run's report): the study's settings, the summary table (mean ± 95% interval
over seeds, real-data reference, random init, G), the paired differences by seed, the plots, every run with its
budget check, the per-class effects against the baseline variation, the harness's timings and the study file.

Example:
    >>> build_study_report(spec, plan, Path("runs/study-families"), rows, summary, per_class)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from synthsight.report.html import STYLE, _img
from synthsight.report.plots import plt
from synthsight.report.tables import esc, percent, table
from synthsight.study.spec import budget_label

PROTOCOL_NAMES = {"knn": "k-NN", "linear": "linear probe", "kmeans": "k-means", "fewshot": "few-shot",
                  "finetune": "fine-tune"}


def _panels(summary: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted({(r["eval_set"], r["protocol"]) for r in summary}, key=lambda x: (x[0], x[1]))


def _grid(n: int) -> tuple[Any, list[Any]]:
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 3.8 * rows), dpi=100, squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def plot_budget_curves(summary: list[dict[str, Any]], path: Path) -> Path:
    """Top-1 against budget (log axis), one line per variation with 95% intervals; dashed: its real-data reference;
    grey: random init. One panel per real set x protocol."""
    panels = _panels(summary)
    fig, axes = _grid(max(1, len(panels)))
    for ax, (eval_set, protocol) in zip(axes, panels):
        rows = [r for r in summary if (r["eval_set"], r["protocol"]) == (eval_set, protocol)]
        for i, v in enumerate(dict.fromkeys(r["variation"] for r in rows)):
            mine = sorted((r for r in rows if r["variation"] == v and r["synthetic_mean"] is not None),
                          key=lambda r: float(r["budget"]))
            if not mine:
                continue
            xs = [float(r["budget"]) for r in mine]
            colour = f"C{i % 10}"
            ax.errorbar(xs, [100 * r["synthetic_mean"] for r in mine],
                        yerr=[100 * (r["synthetic_ci95"] or 0) for r in mine], marker="o", ms=4, capsize=3,
                        color=colour, label=v)
            real = [(x, r["real_mean"]) for x, r in zip(xs, mine) if r["real_mean"] is not None]
            if real:
                ax.plot([x for x, _ in real], [100 * y for _, y in real], ls="--", marker="s", ms=3, color=colour,
                        alpha=0.7)
        randoms = [r["random_mean"] for r in rows if r["random_mean"] is not None]
        if randoms:
            ax.axhline(100 * sum(randoms) / len(randoms), color="grey", lw=1, ls=":", label="random init")
        ax.set_xscale("log")
        ticks = sorted({float(r["budget"]) for r in rows})
        ax.set_xticks(ticks, [f"{x:g}" for x in ticks])
        ax.minorticks_off()
        unit = rows[0]["budget_unit"] if rows else ""
        ax.set_xlabel(f"budget per run ({unit}, log scale)")
        ax.set_ylabel("top-1 (%)")
        ax.set_title(f"{eval_set}: {PROTOCOL_NAMES.get(protocol, protocol)}", fontsize=10)
        ax.grid(alpha=0.3, which="both")
    if panels:
        axes[0].legend(fontsize=7, loc="best")
    fig.suptitle("synthetic pretraining (solid, 95% interval over seeds), real-data reference (dashed)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_variation_bars(summary: list[dict[str, Any]], path: Path) -> Path:
    """At the largest budget: one bar per variation (95% interval), real-data reference as a marker, random init
    as a line. One panel per real set x protocol."""
    panels = _panels(summary)
    fig, axes = _grid(max(1, len(panels)))
    for ax, (eval_set, protocol) in zip(axes, panels):
        rows = [r for r in summary if (r["eval_set"], r["protocol"]) == (eval_set, protocol)]
        top = max((float(r["budget"]) for r in rows), default=0)
        rows = [r for r in rows if float(r["budget"]) == top]
        names = [r["variation"] for r in rows]
        means = [100 * (r["synthetic_mean"] or 0) for r in rows]
        ax.bar(range(len(rows)), means, yerr=[100 * (r["synthetic_ci95"] or 0) for r in rows], capsize=3,
               color=[f"C{i % 10}" for i in range(len(rows))])
        real = [(i, 100 * r["real_mean"]) for i, r in enumerate(rows) if r["real_mean"] is not None]
        if real:
            ax.scatter([i for i, _ in real], [y for _, y in real], marker="_", s=400, color="black", zorder=3,
                       label="real-data reference")
        randoms = [r["random_mean"] for r in rows if r["random_mean"] is not None]
        if randoms:
            ax.axhline(100 * sum(randoms) / len(randoms), color="grey", lw=1, ls=":", label="random init")
        values = means + [y for _, y in real] + [100 * x for x in randoms]
        if values:
            ax.set_ylim(max(0.0, min(values) - 5), min(100.0, max(values) + 3))
        ax.set_xticks(range(len(rows)), names, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("top-1 (%)")
        unit = rows[0]["budget_unit"] if rows else ""
        ax.set_title(f"{eval_set}: {PROTOCOL_NAMES.get(protocol, protocol)} at {top:g} {unit}", fontsize=10)
        ax.grid(alpha=0.3, axis="y")
        if real or randoms:
            ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _summary_table(summary: list[dict[str, Any]]) -> str:
    head = ["variation", "budget", "set", "protocol", "seeds", "synthetic (%)", "real-data reference (%)",
            "random init (%)", "G", "G per seed", "train s", "images", "flagged runs"]
    rows = [[esc(r["variation"]), esc(budget_label(r)), esc(r["eval_set"]), esc(r["protocol"]),
             esc(r["n_seeds"]), percent(r["synthetic_mean"], r["synthetic_ci95"]),
             percent(r["real_mean"], r["real_ci95"]), percent(r["random_mean"]),
             "n/a" if r["gap_closed"] is None else f"{r['gap_closed']:.2f}",
             esc(r["gap_closed_per_seed"] or "n/a"),
             "" if r["train_seconds_mean"] is None else f"{r['train_seconds_mean']:.0f}",
             "" if r["images_seen_mean"] is None else f"{r['images_seen_mean']:.0f}",
             esc(r["flagged_runs"]) + (f" ({r['failed_runs']} failed)" if r["failed_runs"] else "")]
            for r in summary]
    return table(head, rows, numeric_from=4)


def _runs_table(rows: list[dict[str, Any]]) -> str:
    seen, body = set(), []
    for r in rows:  # one line per run (the first set and protocol it was evaluated on carry its training facts)
        if r["run_key"] in seen or r["kind"] == "random":
            continue
        seen.add(r["run_key"])
        flag = r["budget_flag"]
        mark = f"<b>{esc(flag)}</b>" if flag in ("over", "under") else esc(flag)
        body.append([esc(r["variation"]), esc(r["kind"]), esc(r["seed"]), esc(budget_label(r)),
                     esc(r["steps"]), esc(r["images_seen"]), esc(r["train_seconds"]), esc(r["budget_seconds"]),
                     esc(r["budget_ratio"]), mark, esc(r["status"] + (": " + r["error"] if r["error"] else "")),
                     f"<code>{esc(r['run_dir'])}</code>"])
    return table(["variation", "kind", "seed", "budget", "steps", "images seen", "train s", "budget s", "ratio",
                  "flag", "status", "folder"], body, numeric_from=2)


def _per_class_table(per_class: list[dict[str, Any]], baseline: str) -> str:
    rows = [r for r in per_class if (r["variation"] != baseline and r["minus_baseline"] is not None)
            or r["minus_reference"] is not None]
    if not rows:
        return ""

    def delta(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:+.2f}"

    body = [[esc(r["variation"]), esc(budget_label(r)), esc(r["eval_set"]), esc(r["protocol"]), esc(r["class"]),
             percent(r["top1"]), delta(r["minus_baseline"] if r["variation"] != baseline else None),
             delta(r["minus_reference"]), delta(r["minus_random"])] for r in rows]
    return (f"<p>Per-class top-1 (mean over seeds) and its difference from the baseline variation "
            f"<b>{esc(baseline)}</b>, from the real-data reference and from random init, in points "
            f"(per_class.csv).</p>"
            + "<details><summary>table</summary>"
            + table(["variation", "budget", "set", "protocol", "class", "top-1 (%)", "- baseline", "- reference",
                     "- random"], body, numeric_from=5)
            + "</details>")


def _paired_table(paired: list[dict[str, Any]]) -> str:
    body = [[esc(r["variation"]), esc(budget_label(r)), esc(r["eval_set"]), esc(r["protocol"]),
             esc(r["against"]), esc(r["difference_points"]), esc(r["per_seed_points"]),
             f"{r['seeds_above']} of {r['n_seeds']}", esc(r["verdict"])] for r in paired]
    return ("<p>Each variation minus its real-data reference and minus the baseline variation, seed by seed over the "
            "seeds both ran, in points: mean ± 95% interval of the differences; above / below where the interval "
            "excludes zero (paired.csv).</p>"
            + table(["variation", "budget", "set", "protocol", "minus", "difference", "per seed", "seeds above",
                     "verdict"], body, numeric_from=5))


def _best_per_budget(summary: list[dict[str, Any]], fits: list[dict[str, Any]]) -> str:
    """Per set x protocol x budget: the variation with the highest mean top-1; then the fits a + b ln(budget)."""
    best: dict[tuple, dict[str, Any]] = {}
    for r in summary:
        key = (r["eval_set"], r["protocol"], float(r["budget"]))
        if r["synthetic_mean"] is not None and (key not in best or r["synthetic_mean"] > best[key]["synthetic_mean"]):
            best[key] = r
    if len({k[2] for k in best}) < 2 and not fits:
        return ""
    body = [[esc(s), esc(p), esc(budget_label(r)), esc(r["variation"]),
             percent(r["synthetic_mean"], r["synthetic_ci95"])] for (s, p, _), r in sorted(best.items())]
    html = ("<p>The best variation at each budget (highest mean top-1; overlapping intervals mean no clear "
            "winner).</p>" + table(["set", "protocol", "budget", "best variation", "top-1 (%)"], body, numeric_from=4))
    if fits:
        rows = [[esc(f["variation"]), esc(f["eval_set"]), esc(f["protocol"]), esc(f["n_budgets"]),
                 f"{100 * f['a']:.2f}", f"{100 * f['b']:.2f}", f"{100 * f['per_doubling']:+.2f}"] for f in fits]
        html += ("<p>Least-squares fit top-1 = a + b ln(budget) over the budgets' seed means (fits.csv), in points; "
                 "extrapolate with care.</p>"
                 + table(["variation", "set", "protocol", "budgets", "a", "b", "per doubling"], rows, numeric_from=3))
    return html


def build_study_report(spec: Any, plan: Any, out: Path, rows: list[dict[str, Any]], summary: list[dict[str, Any]],
                       per_class: list[dict[str, Any]], timings: Any = None,
                       fits: list[dict[str, Any]] | None = None, paired: list[dict[str, Any]] | None = None) -> Path:
    """Write out/report.html (and accuracy_vs_budget.png, variations.png); returns the page's path."""
    import yaml

    parts = [f"<h1>synthsight study <code>{esc(spec.name)}</code></h1>"]
    if spec.description:
        parts.append(f"<p>{esc(spec.description)}</p>")
    budgets = ", ".join(b.label for b in spec.budgets)
    sets = "; ".join(f"{s.name} ({esc(s.data)}" + (f", {s.limit} training images" if s.limit else "") + ")"
                     for s in spec.sets)
    parts.append(
        f"<p>{len(spec.variations)} variations x {len(spec.seeds)} seeds ({', '.join(map(str, spec.seeds))}) x "
        f"budget {esc(budgets)} per run; evaluated with {esc(', '.join(spec.protocols))} (frozen features) on "
        f"{esc(sets)}. Real-data reference: {'yes' if spec.reference else 'no'} (the same recipe on each set's "
        f"training images, labels unused, same budget); random init: {'yes' if spec.random_init else 'no'}. "
        "G = (synthetic - random) / (real - random) from the means over seeds (n/a where real pretraining did not "
        "beat random init by half a point). Minutes budgets become steps by a speed probe of each recipe; a run "
        "more than 10% over or under its budget is flagged.</p>")
    parts += [f"<p class='small'>Note: {esc(n)}</p>" for n in plan.notes]
    parts.append("<h2 id='summary'>Summary</h2>" + (_summary_table(summary) if summary else
                                                    "<p>No finished run yet.</p>"))
    if paired:
        parts.append("<h2 id='paired'>Paired by seed</h2>" + _paired_table(paired))
    if summary:
        parts.append("<h2 id='plots'>Plots</h2>")
        parts.append(_img(plot_budget_curves(summary, out / "accuracy_vs_budget.png"),
                          "top-1 against budget per variation (log scale)"))
        parts.append(_img(plot_variation_bars(summary, out / "variations.png"),
                          "top-1 per variation at the largest budget"))
    scaling = _best_per_budget(summary, fits or [])
    if scaling:
        parts.append("<h2 id='scaling'>Budgets</h2>" + scaling)
    parts.append("<h2 id='runs'>Runs and their budgets</h2>" + _runs_table(rows))
    per_class_html = _per_class_table(per_class, spec.baseline)
    if per_class_html:
        parts.append("<h2 id='per-class'>Per-class effects</h2>" + per_class_html)
    if timings is not None:
        t = timings.to_dict()
        parts.append("<h2 id='timings'>Where the time went</h2>" + table(
            ["part", "seconds"], [[esc(k), f"{v:.1f}"] for k, v in t.items()]) +
            "<p class='small'>harness = wall - train loop - pretrain around the loop - evaluation - random init: "
            "probes, bookkeeping, tables, plots and this page.</p>")
    parts.append("<h2 id='study'>Study file</h2><pre>" + esc(yaml.safe_dump(spec.source, sort_keys=False)) + "</pre>")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>synthsight study {esc(spec.name)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
    path = out / "report.html"
    path.write_text(page)
    return path
