"""One self-contained HTML page per run or evaluation: tables with the protocols spelled out, plots inlined.

No script and no external resource: images are embedded as data URIs, so the page reads offline. The page has
a section per thing the folder holds, each optional:

    Real-data evaluation   headline table, accuracy chart, every protocol's settings and numbers, per-class table
    Feature analysis       analysis.json's figures (embedding, unit selectivity, retrieval, attention, per class)
    Pretraining            loss curve, online k-NN and collapse-monitor figures, sample and view grids
    Configuration          config.json
    Provenance             provenance.json: code, data, sample hashes

`build_report` takes a run folder (its evaluation in run/eval) or an evaluation folder (`synthsight eval --out`;
the run's config and provenance are found through the checkpoint it names) and writes report.html into it.

Example:
    >>> find_sources(Path("runs/demo"))              # Sources(folder, run_dir=runs/demo, eval_dir=runs/demo/eval)
    >>> build_report(Path("runs/demo"))              # runs/demo/report.html
    >>> build_report(Path("runs/eval-20250101"))     # an eval folder: runs/eval-20250101/report.html
"""

from __future__ import annotations

import base64
import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthsight.report.plots import plot_accuracy_bars, plot_log_panels, plot_loss_curve
from synthsight.report.tables import (esc, headline_table, per_class_table, percent, protocol_sections, protocols_of,
                                      table)

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.35em .6em;text-align:left}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}pre{background:#f7f7f7;padding:1em;overflow:auto}
h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}.small{color:#666;font-size:.9em}
figure{margin:1em 0}figcaption{color:#444;font-size:.9em}
"""
COLLAPSE_COLUMNS = ("emb_std", "eff_rank", "teacher_entropy")  # train_log.csv columns of the collapse monitor
KNOWN_LOG_COLUMNS = ("step", "loss", "lr", "images_per_second", "skipped", "knn", *COLLAPSE_COLUMNS)
ANALYSIS_SECTIONS = {  # analysis.json figure sections, in page order, with their headings
    "embedding": "2-D embedding of real test features",
    "units": "Unit selectivity",
    "retrieval": "Nearest-neighbour retrieval",
    "attention": "Attention maps",
    "per_class": "Per-class accuracy against the baseline",
}


@dataclass
class Sources:
    """Where the page's material lies: the report folder, the run folder and the evaluation folder (each optional)."""

    folder: Path
    run_dir: Path | None
    eval_dir: Path | None


def find_sources(folder: Path) -> Sources:
    """A run folder (config.json, train_log.csv, eval/) or an evaluation folder (metrics.json)."""
    folder = Path(folder)
    if (folder / "metrics.json").is_file():
        metrics = _json(folder / "metrics.json") or {}
        ckpt = Path(str(metrics.get("checkpoint", "")))
        candidates = [ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt, folder.parent]
        run_dir = next((c for c in candidates if str(c) not in ("", ".") and (c / "config.json").is_file()), None)
        return Sources(folder, run_dir, folder)
    if any((folder / name).is_file() for name in ("config.json", "train_log.csv", "train_summary.json")):
        eval_dir = folder / "eval"
        return Sources(folder, folder, eval_dir if (eval_dir / "metrics.json").is_file() else None)
    raise FileNotFoundError(f"{folder} is neither a run folder (config.json, train_log.csv) nor an evaluation folder "
                            "(metrics.json)")


def build_report(folder: Path) -> Path:
    """Write folder/report.html from what the run or evaluation folder holds; returns its path."""
    src = find_sources(Path(folder))
    config = _json(src.run_dir / "config.json") if src.run_dir else None
    real = ((config or {}).get("data") or {}).get("real")
    origin = f"real images ({esc(real)}, labels unused)" if real else "procedurally generated images only"
    kind = "run" if src.folder == src.run_dir else "evaluation"
    sections = [_evaluation(src), _analysis(src), _pretraining(src, real), _configuration(config),
                _provenance(src)]
    sections = [s for s in sections if s]
    toc = "".join(f"<li><a href='#{anchor}'>{esc(title)}</a></li>" for anchor, title, _ in sections)
    body = [f"<h1>synthsight {kind} <code>{esc(src.folder.name)}</code></h1>",
            f"<p class='small'>Pretrained on {origin}; evaluated on real images with frozen features. Baselines are "
            "computed by the same code in the same run.</p>",
            f"<ul>{toc}</ul>" if toc else "<p>This folder holds nothing to report yet.</p>"]
    body += [f"<h2 id='{anchor}'>{esc(title)}</h2>{content}" for anchor, title, content in sections]
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>synthsight report {esc(src.folder.name)}"
            f"</title><style>{STYLE}</style></head><body>{''.join(body)}</body></html>")
    out = src.folder / "report.html"
    out.write_text(page)
    return out


# ------------------------------------------------------------------------------------------------ sections


def _evaluation(src: Sources) -> tuple[str, str, str] | None:
    metrics = _json(src.eval_dir / "metrics.json") if src.eval_dir else None
    if not metrics or not metrics.get("encoders"):
        return None
    analysis = _json(src.eval_dir / "analysis.json") or {}
    classes = metrics.get("classes") or analysis.get("classes")
    parts = [f"<p>Train: {esc(metrics.get('train_data', '?'))}; test: {esc(metrics.get('test_data', '?'))}; "
             f"checkpoint: <code>{esc(metrics.get('checkpoint', '?'))}</code></p>",
             "<h3>Headline numbers</h3>", headline_table(metrics)]
    chart = {e["name"]: {p: 100 * r["top1"] for p, r in e["results"].items()} for e in metrics["encoders"]}
    if protocols_of(metrics):
        parts.append(_img(plot_accuracy_bars(chart, src.eval_dir / "accuracy.png"), "top-1 accuracy per encoder"))
    parts.append("<h3>Protocols, as run</h3>" + protocol_sections(metrics))
    per_class = per_class_table(metrics, classes, analysis.get("ours"), analysis.get("baseline"))
    if per_class:
        parts.append("<h3>Per-class accuracy</h3>" + per_class)
    return "evaluation", "Real-data evaluation", "".join(parts)


def _analysis(src: Sources) -> tuple[str, str, str] | None:
    if src.eval_dir is None:
        return None
    summary = _json(src.eval_dir / "analysis.json")
    if summary is None:
        return ("analysis", "Feature analysis", "<p>No feature analysis in this evaluation (it was run with "
                "--no-analysis, or before analyses existed): rerun <code>synthsight eval</code> to add it.</p>")
    parts = [f"<p>Pretrained encoder: <b>{esc(summary.get('ours'))}</b>; baseline: "
             f"<b>{esc(summary.get('baseline') or 'none')}</b>; {esc(summary.get('n_test', '?'))} real test images; "
             f"{esc(summary.get('seconds', '?'))} s.</p>"]
    figures = summary.get("figures", [])
    for section, title in ANALYSIS_SECTIONS.items():
        shown = [f for f in figures if f.get("section") == section and (src.eval_dir / f["file"]).is_file()]
        extra = _analysis_table(section, summary)
        if not shown and not extra:
            continue
        parts.append(f"<h3>{esc(title)}</h3>{extra}")
        parts += [_img(src.eval_dir / f["file"], f["caption"]) for f in shown]
    if summary.get("notes"):
        parts.append("<h3>Notes</h3><ul>" + "".join(f"<li>{esc(n)}</li>" for n in summary["notes"]) + "</ul>")
    return "analysis", "Feature analysis", "".join(parts)


def _analysis_table(section: str, summary: dict[str, Any]) -> str:
    if section == "units" and summary.get("units"):
        rows = [[esc(name), esc(u["n_selective"]), esc(u["n_units"]), f"{100 * u['fraction_selective']:.1f}",
                 f"{u['mean_index']:.3f}", f"{u['median_index']:.3f}", esc(u.get("n_shifted", 0))]
                for name, u in summary["units"].items()]
        threshold = next(iter(summary["units"].values()))["threshold"]
        return (f"<p>Class-selectivity index per unit (Morcos et al. 2018) of the last feature layer on real test "
                f"images; a unit is class-selective when SI &gt; {threshold:g} (its preferred class drives it at "
                "least 3x the other classes' mean). Units with negative activations are shifted to a zero minimum "
                "first (count in the last column).</p>"
                + table(["encoder", "selective units", "units", "selective (%)", "mean SI", "median SI",
                         "shifted units"], rows))
    if section == "retrieval" and summary.get("retrieval", {}).get("precision"):
        r = summary["retrieval"]
        rows = [[esc(name), percent(p)] for name, p in r["precision"].items()]
        return (f"<p>One test query per class; its {r['k']} nearest {esc(r['bank'])} images by cosine similarity. "
                f"Precision: the share of retrieved images of the query's class.</p>"
                + table(["encoder", f"precision@{r['k']} (%)"], rows))
    if section == "embedding" and summary.get("embedding"):
        e = summary["embedding"]
        return (f"<p>{esc(e['method'])} of L2-normalised features (PCA to 50 dimensions first) of {esc(e['n_points'])} "
                "stratified test images, seeded; colours are the true classes, which neither encoder was trained "
                "on.</p>")
    if section == "attention" and not summary.get("attention"):
        notes = [n for n in summary.get("notes", []) if n.startswith("attention")]
        return "".join(f"<p>{esc(n)}</p>" for n in notes)
    return ""


def _pretraining(src: Sources, real: str | None) -> tuple[str, str, str] | None:
    if src.run_dir is None:
        return None
    parts = []
    columns = _read_log(src.run_dir / "train_log.csv")
    if "loss" in columns:
        steps, losses = columns["loss"]
        parts.append(_img(plot_loss_curve(steps, losses, src.folder / "loss.png"), "pretraining loss per step"))
    if "knn" in columns:
        parts.append(_img(plot_log_panels({"knn": columns["knn"]}, src.folder / "online_knn.png",
                                          "online k-NN top-1 on real images during pretraining", ("knn",)),
                          "online k-NN top-1 (%) on a small real subset, measured during pretraining"))
    collapse = {c: columns[c] for c in COLLAPSE_COLUMNS if c in columns}
    if collapse:
        parts.append(_img(plot_log_panels(collapse, src.folder / "collapse.png", "collapse monitor"),
                          "collapse monitor: embedding std, effective rank and teacher entropy per logged step"))
    others = {c: v for c, v in columns.items() if c not in KNOWN_LOG_COLUMNS}
    if others:
        parts.append(_img(plot_log_panels(others, src.folder / "train_log_other.png", "other logged values"),
                          "other columns of train_log.csv"))
    summary = src.run_dir / "train_summary.json"
    if summary.is_file():
        parts.append(f"<h3>Summary</h3><pre>{esc(summary.read_text())}</pre>")
    for name, alt in (("samples.png", f"{'real' if real else 'synthetic'} training images (the stream's first "
                                      "images)"),
                      ("views.png", "augmented views fed to the network")):
        if (src.run_dir / name).is_file():
            parts.append(_img(src.run_dir / name, alt))
    return ("pretraining", "Pretraining", "".join(parts)) if parts else None


def _configuration(config: dict[str, Any] | None) -> tuple[str, str, str] | None:
    if config is None:
        return None
    return "configuration", "Configuration", f"<pre>{esc(json.dumps(config, indent=1))}</pre>"


def _provenance(src: Sources) -> tuple[str, str, str] | None:
    path = next((d / "provenance.json" for d in (src.folder, src.run_dir) if d and (d / "provenance.json").is_file()),
                None)
    record = _json(path) if path else None
    if record is None:
        return None
    code, data, sample = record.get("code", {}), record.get("data", {}), record.get("sample", {})
    facts = [("code", f"{code.get('package', '?')} {code.get('version', '?')}, commit {code.get('git_commit')}"
                      f"{' (uncommitted changes)' if code.get('git_dirty') else ''}"),
             ("created", record.get("created")),
             ("training images", f"{data.get('images', '?')} in ranges {data.get('image_ranges', '?')}"),
             ("sample check", f"{len(sample.get('images', []))} images, SHA-256 "
                              f"{str(sample.get('sha256', '?'))[:16]}..."),
             ("weights files", ", ".join(record.get("weights", {})) or "none")]
    rows = [[esc(k), esc(v if v is not None else "n/a")] for k, v in facts]
    return ("provenance", "Provenance",
            f"<p>Re-check with <code>synthsight verify {esc(path)}</code>: it regenerates the sampled training "
            "images and compares their hashes.</p>" + table(["item", "value"], rows, numeric_from=2)
            + f"<details><summary>provenance.json</summary><pre>{esc(json.dumps(record, indent=1))}</pre></details>")


# ------------------------------------------------------------------------------------------------ helpers


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<figure><img alt="{esc(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{esc(alt)}</figcaption></figure>")


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def _read_log(path: Path) -> dict[str, tuple[list[int], list[float]]]:
    """Every numeric column of train_log.csv -> (steps, values), skipping empty cells; columns never filled drop out."""
    if not path.is_file():
        return {}
    with open(path) as f:
        rows = list(csv.DictReader(f))
    out: dict[str, tuple[list[int], list[float]]] = {}
    for row in rows:
        try:
            step = int(row["step"])
        except (KeyError, TypeError, ValueError):
            continue
        for name, value in row.items():
            if name in (None, "step") or value in (None, ""):
                continue
            try:
                number = float(value)
            except ValueError:
                continue
            steps, values = out.setdefault(name, ([], []))
            steps.append(step)
            values.append(number)
    return out
