"""A study's tables from its folders: results.csv, summary.csv + table.md (mean, 95% interval, G), per_class.csv.

Everything is read back from disk (cell.json and eval-<set>/metrics.json of each cell), so the tables can be
rebuilt at any time, also while a study runs or after it was killed.

    results.csv    one row per run x real set x protocol: top-1, seed, budget, steps, images seen, training
                   seconds, the budget check (ratio and flag: over/under by more than 10%), status, folder
    summary.csv    per variation x budget x set x protocol: synthetic mean and 95% interval over seeds, the real-data
                   reference's and random init's means at the synthetic runs' seeds, G = (synthetic - random) /
                   (real - random) from the means over the seeds where all three exist, seconds, flags
    table.md       summary.csv as Markdown (top-1 in %)
    per_class.csv  per variation x budget x set x protocol x class: mean top-1 over seeds, minus random init's,
                   minus the real-data reference's (which classes the formula images do not teach), minus the
                   baseline variation's (the per-class effect of what the variation changed), all at the same seeds
    paired.csv     per variation x budget x set x protocol, minus its real-data reference and minus the baseline
                   variation, seed by seed: mean difference, 95% interval, per-seed differences, seeds above and below
                   zero, verdict (above / below where the interval excludes zero, else unresolved)
    fits.csv       per variation x set x protocol with 2+ budgets: least-squares top-1 = a + b ln(budget) over the
                   seed means (the scaling question: which variation is best at which budget)
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Iterator

from synthsight.checkpoint import write_text_atomic
from synthsight.report.study import build_study_report  # loaded now: a study runs hours, its code may change meanwhile
from synthsight.report.tables import percent
from synthsight.study.spec import Budget, Plan, StudySpec, budget_label, slug
from synthsight.study.stats import gap_closed, mean_ci, paired_difference

RESULT_FIELDS = ["study", "variation", "kind", "pretrained_on", "eval_set", "protocol", "seed", "budget_unit",
                 "budget", "top1", "steps", "images_seen", "train_seconds", "budget_seconds", "budget_ratio",
                 "budget_flag", "resumed", "eval_seconds", "status", "error", "run_key", "run_dir"]
PAIRED_FIELDS = ["variation", "budget_unit", "budget", "eval_set", "protocol", "against", "n_seeds", "mean_diff",
                 "ci95", "per_seed", "seeds_above", "seeds_below", "verdict"]
SUMMARY_FIELDS = ["variation", "budget_unit", "budget", "eval_set", "protocol", "n_seeds", "synthetic_mean",
                  "synthetic_ci95", "real_mean", "real_ci95", "random_mean", "gap_closed", "gap_closed_per_seed",
                  "train_seconds_mean", "images_seen_mean", "flagged_runs", "failed_runs"]


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def _budget_cells(budget: Budget | None) -> tuple[str, str]:
    return ("", "") if budget is None else (budget.unit, f"{budget.value:g}")


def collect_rows(spec: StudySpec, plan: Plan, out: Path) -> list[dict[str, Any]]:
    """results.csv rows for every result the plan asks for that exists (done or failed)."""
    from synthsight.study.runner import cell_dir

    rows = []
    for use in plan.uses:
        cell = plan.cell(use.key)
        folder = cell_dir(out, cell)
        record = _json(folder / "cell.json") or {}
        failed = _json(folder / "failed.json")
        metrics = _json(folder / f"eval-{slug(use.eval_set)}" / "metrics.json")
        if not failed and not metrics:
            continue
        unit, value = _budget_cells(use.budget)
        base = {"study": spec.name, "variation": use.variation, "kind": use.kind,
                "pretrained_on": record.get("pretrained_on", ""), "eval_set": use.eval_set, "seed": use.seed,
                "budget_unit": unit, "budget": value, "steps": record.get("steps", ""),
                "images_seen": record.get("images_seen", ""), "train_seconds": record.get("train_seconds", ""),
                "budget_seconds": record.get("budget_seconds") or "", "budget_ratio": record.get("budget_ratio") or "",
                "budget_flag": record.get("budget_flag", ""), "resumed": record.get("resumed", ""),
                "run_key": use.key, "run_dir": str(folder.relative_to(out))}
        if failed or not metrics:
            rows += [{**base, "protocol": p, "top1": "", "status": "failed", "error": (failed or {}).get("error", "")}
                     for p in spec.protocols]
            continue
        results = metrics["encoders"][-1]["results"]
        rows += [{**base, "protocol": p, "top1": round(r["top1"], 6), "eval_seconds": metrics.get("seconds", ""),
                  "status": "done", "error": ""} for p, r in results.items()]
    return rows


def _values(rows: list[dict], **match: Any) -> dict[int, float]:
    """seed -> top-1 of the done rows matching every field."""
    return {r["seed"]: float(r["top1"]) for r in rows
            if r["status"] == "done" and all(r[k] == v for k, v in match.items())}


def _same_seeds(baseline: dict[int, float], runs: dict[int, float]) -> dict[int, float]:
    """The baseline's values at the runs' seeds (all of them when the runs have none)."""
    return {k: v for k, v in baseline.items() if k in runs} if runs else baseline


def _groups(spec: StudySpec) -> Iterator[tuple[Any, str, str, Any, str]]:
    """(variation, budget unit, budget value, set, protocol) for every row of the summary, in the table's order."""
    for v in spec.variations:
        for b in spec.budgets:
            unit, value = _budget_cells(b)
            for s in spec.sets:
                for p in spec.protocols:
                    yield v, unit, value, s, p


def summarize(spec: StudySpec, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """summary.csv rows (see the module doc); G from the means over the seeds where all three exist, and per seed."""
    out = []
    for v, unit, value, s, p in _groups(spec):
        key = dict(variation=v.name, eval_set=s.name, protocol=p)
        syn = _values(rows, kind="synthetic", budget_unit=unit, budget=value, **key)
        real = _values(rows, kind="real", budget_unit=unit, budget=value, **key)
        rnd = _values(rows, kind="random", **key)
        runs = [r for r in rows if r["kind"] == "synthetic" and r["budget"] == value
                and all(r[k] == x for k, x in key.items())]
        if not syn and not runs:
            continue
        s_mean, s_ci = mean_ci(list(syn.values())) if syn else (None, None)
        # the baselines over the synthetic runs' seeds (a resumed study may have baselines of seeds whose
        # runs are still to come); G from the means over the seeds where all three exist
        real, rnd = _same_seeds(real, syn), _same_seeds(rnd, syn)
        r_mean, r_ci = mean_ci(list(real.values())) if real else (None, None)
        rnd_mean = mean_ci(list(rnd.values()))[0] if rnd else None
        common = [k for k in syn if k in real and k in rnd]
        gap = gap_closed(*(sum(d[k] for k in common) / len(common) for d in (syn, real, rnd))) if common else None
        per_seed = [gap_closed(syn[k], real[k], rnd[k]) for k in sorted(common)]
        seconds = [float(r["train_seconds"]) for r in runs if r["train_seconds"] != ""]
        images = [float(r["images_seen"]) for r in runs if r["images_seen"] != ""]
        out.append({
            "variation": v.name, "budget_unit": unit, "budget": value, "eval_set": s.name, "protocol": p,
            "n_seeds": len(syn), "synthetic_mean": s_mean, "synthetic_ci95": s_ci, "real_mean": r_mean,
            "real_ci95": r_ci, "random_mean": rnd_mean, "gap_closed": gap,
            "gap_closed_per_seed": " ".join("n/a" if g is None else f"{g:.3f}" for g in per_seed),
            "train_seconds_mean": sum(seconds) / len(seconds) if seconds else None,
            "images_seen_mean": sum(images) / len(images) if images else None,
            "flagged_runs": len({(r["seed"], r["run_key"]) for r in runs if r["budget_flag"] in ("over", "under")}),
            "failed_runs": len({r["seed"] for r in runs if r["status"] == "failed"}),
        })
    return out


def paired_rows(spec: StudySpec, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """paired.csv rows (see the module doc): every variation minus its reference and minus the baseline variation
    (not the baseline against itself), seed by seed over the seeds both ran."""
    out = []
    for v, unit, value, s, p in _groups(spec):
        key = dict(eval_set=s.name, protocol=p, budget_unit=unit, budget=value)
        syn = _values(rows, kind="synthetic", variation=v.name, **key)
        against = {"reference": _values(rows, kind="real", variation=v.name, **key)}
        if v.name != spec.baseline:
            against[f"baseline: {spec.baseline}"] = _values(rows, kind="synthetic", variation=spec.baseline, **key)
        for name, values in against.items():
            d = paired_difference(syn, values)
            if d is None:
                continue
            out.append({"variation": v.name, "budget_unit": unit, "budget": value, "eval_set": s.name,
                        "protocol": p, "against": name, "n_seeds": d["n_seeds"], "mean_diff": d["mean"],
                        "ci95": d["ci95"], "seeds_above": d["above"], "seeds_below": d["below"],
                        "per_seed": " ".join(f"{k}:{x:+.4f}" for k, x in d["per_seed"].items()),
                        "difference_points": f"{100 * d['mean']:+.2f}" + (
                            "" if d["ci95"] is None else f" ± {100 * d['ci95']:.2f}"),
                        "per_seed_points": " / ".join(f"{100 * x:+.2f}" for x in d["per_seed"].values()),
                        "verdict": d["verdict"]})
    return out


def markdown_paired(paired: list[dict[str, Any]]) -> str:
    """The paired differences as Markdown (points of top-1; per seed in the seeds' order), one row per variation x
    budget x set x protocol x against; empty without any."""
    if not paired:
        return ""
    lines = ["Paired by seed (variation minus reference or baseline, the same seeds; points of top-1, mean ± 95% "
             "interval):", "",
             "| variation | budget | set | protocol | minus | difference | per seed | seeds above | verdict |",
             "|" + "---|" * 9]
    for r in paired:
        lines.append(f"| {r['variation']} | {budget_label(r)} | {r['eval_set']} | {r['protocol']} | {r['against']} "
                     f"| {r['difference_points']} | {r['per_seed_points']} | {r['seeds_above']} of {r['n_seeds']} "
                     f"| {r['verdict']} |")
    return "\n".join(lines)


def fit_log_budget(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """top-1 = a + b ln(budget) per variation x set x protocol, least squares over the budgets' seed means (at least
    two budgets); b is the gain per e-fold of budget, b ln 2 per doubling."""
    groups: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for r in summary:
        if r["synthetic_mean"] is not None:
            groups.setdefault((r["variation"], r["eval_set"], r["protocol"]), []).append(
                (math.log(float(r["budget"])), r["synthetic_mean"]))
    out = []
    for (variation, eval_set, protocol), points in groups.items():
        if len({x for x, _ in points}) < 2:
            continue
        mx = sum(x for x, _ in points) / len(points)
        my = sum(y for _, y in points) / len(points)
        b = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
        out.append({"variation": variation, "eval_set": eval_set, "protocol": protocol, "n_budgets": len(points),
                    "a": round(my - b * mx, 6), "b": round(b, 6), "per_doubling": round(b * math.log(2), 6)})
    return out


def markdown_table(summary: list[dict[str, Any]]) -> str:
    """table.md: top-1 in %, mean ± 95% interval half-width over seeds; G; mean training seconds and images."""
    head = ("| variation | budget | set | protocol | seeds | synthetic | real-data reference | random init | G "
            "| train s | images | flagged |")
    lines = [head, "|" + "---|" * 12]
    for r in summary:
        g = "n/a" if r["gap_closed"] is None else f"{r['gap_closed']:.2f}"
        secs = "" if r["train_seconds_mean"] is None else f"{r['train_seconds_mean']:.0f}"
        images = "" if r["images_seen_mean"] is None else f"{r['images_seen_mean']:.0f}"
        flagged = f"{r['flagged_runs']}" + (f" ({r['failed_runs']} failed)" if r["failed_runs"] else "")
        lines.append(f"| {r['variation']} | {budget_label(r)} | {r['eval_set']} | {r['protocol']} | {r['n_seeds']} "
                     f"| {percent(r['synthetic_mean'], r['synthetic_ci95'])} "
                     f"| {percent(r['real_mean'], r['real_ci95'])} | {percent(r['random_mean'])} "
                     f"| {g} | {secs} | {images} | {flagged} |")
    if any(r["gap_closed"] is None and r["real_mean"] is not None and r["random_mean"] is not None for r in summary):
        lines += ["", "G n/a beside a reference: pretraining on the real images beat random init by half a point or "
                      "less, so the ratio would be noise (stats.gap_closed); compare the accuracies instead."]
    return "\n".join(lines)


def per_class_rows(spec: StudySpec, plan: Plan, out: Path) -> list[dict[str, Any]]:
    """per_class.csv rows (see the module doc) from the metrics.json of every done cell."""
    from synthsight.study.runner import cell_dir

    # (variation, kind, (budget unit, budget), set, protocol) -> seed -> per-class top-1
    table: dict[tuple, dict[int, list[float | None]]] = {}
    classes: dict[str, list[str]] = {}
    for use in plan.uses:
        metrics = _json(cell_dir(out, plan.cell(use.key)) / f"eval-{slug(use.eval_set)}" / "metrics.json")
        if not metrics:
            continue
        classes.setdefault(use.eval_set, metrics.get("classes") or [])
        budget = _budget_cells(use.budget)
        for p, r in metrics["encoders"][-1]["results"].items():
            if r.get("per_class") is not None:
                table.setdefault((use.variation, use.kind, budget, use.eval_set, p), {})[use.seed] = r["per_class"]
    return per_class_from_table(table, spec.baseline, classes)


def per_class_from_table(table: dict[tuple, dict[int, list[float | None]]], baseline: str,
                         classes: dict[str, list[str]]) -> list[dict[str, Any]]:
    """per_class.csv rows from (variation, kind, (budget unit, budget), set, protocol) -> seed -> per-class top-1
    (kind: synthetic, real or random; random's budget is ("", "")), the baselines taken at each variation's seeds (as
    in the summary)."""

    def mean(lists: dict[int, list[float | None]], c: int) -> float | None:
        vals = [x[c] for x in lists.values() if c < len(x) and x[c] is not None]
        return sum(vals) / len(vals) if vals else None

    rows = []
    for (variation, kind, budget, eval_set, p), lists in table.items():
        if kind != "synthetic":
            continue
        # the baselines at this variation's seeds, as in the summary
        rnd = _same_seeds(table.get((variation, "random", ("", ""), eval_set, p), {}), lists)
        ref = _same_seeds(table.get((variation, "real", budget, eval_set, p), {}), lists)
        base = _same_seeds(table.get((baseline, "synthetic", budget, eval_set, p), {}), lists)
        names = classes.get(eval_set) or []
        for c in range(max(len(x) for x in lists.values())):
            acc = mean(lists, c)
            r, f, b = (mean(d, c) for d in (rnd, ref, base))  # None where a baseline is missing
            rows.append({"variation": variation, "budget_unit": budget[0], "budget": budget[1], "eval_set": eval_set,
                         "protocol": p, "class_index": c, "class": names[c] if c < len(names) else str(c),
                         "n_seeds": len(lists), "top1": acc,
                         "minus_random": None if acc is None or r is None else round(acc - r, 6),
                         "minus_reference": None if acc is None or f is None else round(acc - f, 6),
                         "baseline": baseline,
                         "minus_baseline": None if acc is None or b is None else round(acc - b, 6)})
    return rows


def _csv(rows: list[dict[str, Any]], fields: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows([{k: ("" if v is None else v) for k, v in r.items()} for r in rows])
    return buf.getvalue()


def write_results(spec: StudySpec, plan: Plan, out: Path, report: bool = True, timings: Any = None) -> Path:
    """Write results.csv, summary.csv, paired.csv, table.md, per_class.csv, fits.csv (and with `report`, the plots and
    report.html)."""
    rows = collect_rows(spec, plan, out)
    summary = summarize(spec, rows)
    write_text_atomic(out / "results.csv", _csv(rows, RESULT_FIELDS))
    write_text_atomic(out / "summary.csv", _csv(summary, SUMMARY_FIELDS))
    paired = paired_rows(spec, rows)
    write_text_atomic(out / "paired.csv", _csv(paired, PAIRED_FIELDS))
    notes = "".join(f"\nNote: {n}" for n in plan.notes)
    extra = markdown_paired(paired)
    write_text_atomic(out / "table.md", markdown_table(summary) + "\n" + ("\n" + extra + "\n" if extra else "")
                      + notes + ("\n" if notes else ""))
    per_class = per_class_rows(spec, plan, out)
    fields = ["variation", "budget_unit", "budget", "eval_set", "protocol", "class_index", "class", "n_seeds", "top1",
              "minus_random", "minus_reference", "baseline", "minus_baseline"]
    write_text_atomic(out / "per_class.csv", _csv(per_class, fields))
    fits = fit_log_budget(summary)
    write_text_atomic(out / "fits.csv", _csv(fits, ["variation", "eval_set", "protocol", "n_budgets", "a", "b",
                                                    "per_doubling"]))
    if report:
        return build_study_report(spec, plan, out, rows, summary, per_class, timings, fits, paired)
    return out / "results.csv"
