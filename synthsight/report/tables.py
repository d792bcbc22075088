"""HTML tables of an evaluation's metrics.json: headline numbers, every protocol's settings and numbers, per class.

Pure functions from the JSON written by `eval_run` (each result: protocol, top1, settings, n_train, n_test,
metrics, per_class, description) to escaped HTML strings. Missing numbers print as "n/a", never as an empty cell.

Example:
    >>> metrics = json.loads(Path("runs/demo/eval/metrics.json").read_text())
    >>> protocols_of(metrics)                  # ['knn', 'linear', 'kmeans', 'fewshot']
    >>> page = headline_table(metrics) + protocol_sections(metrics) + per_class_table(metrics, classes)
"""

from __future__ import annotations

import html
import re
from typing import Any

from synthsight.report.difference import differences, pick_pair, verdict_line

PROTOCOL_TITLES = {"knn": "k-NN", "linear": "linear probe", "kmeans": "k-means clustering",
                   "fewshot": "few-shot (nearest class mean)", "finetune": "fine-tuning"}
HEADLINE = {"kmeans": "k-means acc. (%)"}  # default: "<title> top-1 (%)"
MISSING = "n/a"
REPEATS_TOP1 = {"hungarian_acc"}  # metrics that repeat the top-1 column
RESULT_START = re.compile(r":\s+(top-1|NMI|\d+-shot)")  # where a description's numbers begin


def esc(value: Any) -> str:
    return html.escape(str(value))


def table(head: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    """An HTML table; cells are given as HTML (escape before); columns from `numeric_from` are right-aligned."""
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td class='num'>{c}</td>" if i >= numeric_from else f"<td>{c}</td>"
                         for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def protocols_of(metrics: dict[str, Any]) -> list[str]:
    """Protocol names in the order evaluation ran them, over all encoders."""
    seen: dict[str, None] = {}
    for e in metrics.get("encoders", []):
        seen.update(dict.fromkeys(e.get("results", {})))
    return list(seen)


def percent(x: Any, ci: Any = None) -> str:
    """A fraction as a percentage with two decimals, `± ci` when given; None or "" (a CSV's empty cell) is n/a."""
    if x is None or x == "":
        return MISSING
    return f"{100 * float(x):.2f}" + (f" ± {100 * float(ci):.2f}" if ci not in (None, "") else "")


def headline_table(metrics: dict[str, Any]) -> str:
    """One row per encoder, the headline top-1 (%) of each protocol, and the feature dimension; then a row with
    the pretrained encoder's difference from its baseline (points, 95% interval) and a one-line verdict."""
    protocols = protocols_of(metrics)
    titles = [headline_title(metrics, p) for p in protocols]
    head = ["encoder", *titles, "feature dim"]
    rows = []
    for e in metrics.get("encoders", []):
        res = e.get("results", {})
        rows.append([esc(e["name"])] + [percent(res[p]["top1"]) if p in res else MISSING for p in protocols]
                    + [esc(e.get("feature_dim", MISSING))])
    diffs, pair = differences(metrics), pick_pair(metrics)
    if diffs and pair is not None:
        rows.append([esc(f"difference: {pair[0]['name']} - {pair[1]['name']} (points, 95% interval)")]
                    + [esc(f"{diffs[p].points:+.2f} [{diffs[p].low:+.2f}, {diffs[p].high:+.2f}]")
                       if p in diffs else MISSING for p in protocols] + ["–"])
    verdict = verdict_line(metrics, {p: PROTOCOL_TITLES.get(p, p) for p in protocols})
    return table([esc(h) for h in head], rows) + (f"<p><b>Verdict</b>: {esc(verdict)}</p>" if verdict else "")


def headline_title(metrics: dict[str, Any], protocol: str) -> str:
    if protocol == "fewshot":
        shots = next((e["results"][protocol].get("settings", {}).get("shots") for e in metrics.get("encoders", [])
                      if protocol in e.get("results", {})), None)
        if shots:
            return f"few-shot top-1, {max(shots)} per class (%)"
    return HEADLINE.get(protocol, f"{PROTOCOL_TITLES.get(protocol, protocol)} top-1 (%)")


def metric_columns(results: list[dict[str, Any]]) -> list[str]:
    """The metric keys to show (a key with a matching `<key>_std` absorbs it as ±), in first-seen order."""
    keys: dict[str, None] = {}
    for r in results:
        keys.update(dict.fromkeys(r.get("metrics") or {}))
    return [k for k in keys if k not in REPEATS_TOP1 and not (k.endswith("_std") and k[: -len("_std")] in keys)]


def metric_title(key: str) -> str:
    if key.startswith("top1_k") and key[len("top1_k"):].isdigit():
        return f"top-1 k={key[len('top1_k'):]} (%)"
    if key.startswith("top1_") and key.endswith("shot"):
        return f"{key[len('top1_'):-len('shot')]}-shot top-1 (%)"
    if key in ("nmi", "ari"):
        return key.upper()
    return key.replace("_", " ") + (" (%)" if key.startswith("top1") else "")


def metric_cell(metrics: dict[str, Any], key: str) -> str:
    value = metrics.get(key)
    if value is None:
        return MISSING
    if not key.startswith("top1"):
        return f"{float(value):.3f}"
    std = metrics.get(f"{key}_std")
    return percent(value, std)


def setting_cell(value: Any) -> str:
    """A setting as a table cell: numbers in short form (weight decay 1e-05, not 1.0000000000000001e-05)."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def protocol_sections(metrics: dict[str, Any]) -> str:
    """Per protocol: a heading, its settings spelled out, and a table of every number it produced per encoder.

    Settings that differ between encoders (the linear probe's chosen weight decay, ...) get a column each."""
    parts = []
    for p in protocols_of(metrics):
        runs = [(e["name"], e["results"][p]) for e in metrics.get("encoders", []) if p in e.get("results", {})]
        results = [r for _, r in runs]
        keys = metric_columns(results)
        settings = [r.get("settings") or {} for r in results]
        varying = [k for k in dict.fromkeys(k for st in settings for k in st)  # one column each; a mapping or
                   if len({repr(st.get(k)) for st in settings}) > 1  # list (a validation curve) is not a cell
                   and not any(isinstance(st.get(k), (dict, list)) for st in settings)]
        head = ["encoder", "top-1 (%)" if p != "kmeans" else "Hungarian-matched acc. (%)"] + \
            [metric_title(k) for k in keys] + [k.replace("_", " ") for k in varying] + ["train images", "test images"]
        rows = [[esc(name), percent(r.get("top1"))] + [metric_cell(r.get("metrics") or {}, k) for k in keys]
                + [esc(setting_cell(st.get(k, MISSING))) for k in varying]
                + [esc(r.get("n_train", MISSING)), esc(r.get("n_test", MISSING))]
                for (name, r), st in zip(runs, settings)]
        shared = {k: setting_cell(v) for k, v in settings[0].items()
                  if len({repr(st.get(k)) for st in settings}) == 1}
        described = results[0].get("description", "")
        cut = RESULT_START.search(described)
        how = described[: cut.start()] if cut else described  # the sentence without its numbers
        if varying:
            how = f"As run for {runs[0][0]}: {how}"
        parts.append(
            f"<h4>{esc(PROTOCOL_TITLES.get(p, p))}</h4><p>{esc(how)}.</p>"
            + (f"<p class='small'>settings: {esc(', '.join(f'{k}={v}' for k, v in shared.items()))}</p>"
               if shared else "")
            + table([esc(h) for h in head], rows)
        )
    return "".join(parts)


def per_class_protocol(metrics: dict[str, Any]) -> str | None:
    """The protocol whose per-class accuracies every encoder has: linear if possible, else k-NN, else any."""
    encoders = metrics.get("encoders", [])
    candidates = [p for p in ("linear", "knn", *protocols_of(metrics))
                  if encoders and all((e.get("results", {}).get(p) or {}).get("per_class") for e in encoders)]
    return candidates[0] if candidates else None


def per_class_table(metrics: dict[str, Any], classes: list[str] | None, ours: str | None = None,
                    baseline: str | None = None) -> str:
    """Rows: classes; columns: each encoder's accuracy (%) on that class, and ours minus baseline (points)."""
    protocol = per_class_protocol(metrics)
    if protocol is None:
        return ""
    encoders = metrics["encoders"]
    names = [e["name"] for e in encoders]
    ours = ours if ours in names else names[-1]
    baseline = baseline if baseline in names and baseline != ours else next((n for n in names if n != ours), None)
    values = {e["name"]: e["results"][protocol]["per_class"] for e in encoders}
    n = max(len(v) for v in values.values())
    head = ["class"] + [f"{esc(nm)} (%)" for nm in names]
    if baseline:
        head.append(f"difference (points): {esc(ours)} - {esc(baseline)}")
    rows = []
    for c in range(n):
        cells = [_class_label(classes, c)] + [percent(_at(values[nm], c)) for nm in names]
        if baseline:
            a, b = _at(values[ours], c), _at(values[baseline], c)
            cells.append(MISSING if a is None or b is None else f"{100 * (a - b):+.2f}")
        rows.append(cells)
    return (f"<p>Top-1 accuracy on each class's test images, {esc(PROTOCOL_TITLES.get(protocol, protocol))} "
            "protocol.</p>" + table(head, rows))


def _at(values: list, i: int) -> float | None:
    return values[i] if i < len(values) else None


def _class_label(classes: list[str] | None, i: int) -> str:
    return esc(classes[i]) if classes and i < len(classes) else f"class {i}"
