"""One self-contained HTML page per run: tables with the protocols spelled out, plots inlined, the config.

No script and no external resource: images are embedded as data URIs, so the page reads offline.
"""

from __future__ import annotations

import base64
import csv
import html
import json
from pathlib import Path
from typing import Any

from synthsight.report.plots import plot_accuracy_bars, plot_loss_curve

STYLE = """
body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.35em .6em;text-align:left}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}pre{background:#f7f7f7;padding:1em;overflow:auto}
.small{color:#666;font-size:.9em}
"""


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(alt)}</figcaption></figure>'


def _read_log(run_dir: Path) -> tuple[list[int], list[float]]:
    path = run_dir / "train_log.csv"
    if not path.is_file():
        return [], []
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return [int(r["step"]) for r in rows], [float(r["loss"]) for r in rows]


def _results_section(metrics: dict[str, Any]) -> str:
    encoders = metrics["encoders"]
    protocols = list(encoders[0]["results"]) if encoders else []
    head = "".join(f"<th>{html.escape(p)} top-1 (%)</th>" for p in protocols)
    rows = []
    for e in encoders:
        cells = "".join(f'<td class="num">{100 * e["results"][p]["top1"]:.2f}</td>' for p in protocols)
        rows.append(f"<tr><td>{html.escape(e['name'])}</td>{cells}<td class='num'>{e['feature_dim']}</td></tr>")
    protocol_lines = []
    for e in encoders:
        for p in protocols:
            protocol_lines.append(f"<li><b>{html.escape(e['name'])}</b>: {html.escape(e['results'][p]['description'])}</li>")
    return (
        f"<p>Train: {html.escape(metrics['train_data'])}; test: {html.escape(metrics['test_data'])}; "
        f"checkpoint: <code>{html.escape(metrics['checkpoint'])}</code></p>"
        f"<table><tr><th>encoder</th>{head}<th>feature dim</th></tr>{''.join(rows)}</table>"
        f"<h3>Protocols, as run</h3><ul>{''.join(protocol_lines)}</ul>"
    )


def build_report(run_dir: Path) -> Path:
    """Write run_dir/report.html from what the run folder holds (config, log, eval metrics, PNGs)."""
    run_dir = Path(run_dir)
    parts = [f"<h1>synthsight run <code>{html.escape(run_dir.name)}</code></h1>",
             "<p class='small'>Pretrained on procedurally generated images only; evaluated on real images with "
             "frozen features. Baselines are computed by the same code in the same run.</p>"]
    metrics_path = run_dir / "eval" / "metrics.json"
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        parts.append("<h2>Real-data evaluation</h2>" + _results_section(metrics))
        table = {e["name"]: {p: 100 * r["top1"] for p, r in e["results"].items()} for e in metrics["encoders"]}
        parts.append(_img(plot_accuracy_bars(table, run_dir / "eval" / "accuracy.png"), "top-1 accuracy per encoder"))
    steps, losses = _read_log(run_dir)
    if steps:
        parts.append("<h2>Pretraining</h2>")
        parts.append(_img(plot_loss_curve(steps, losses, run_dir / "loss.png"), "pretraining loss per step"))
        summary = run_dir / "train_summary.json"
        if summary.is_file():
            parts.append(f"<pre>{html.escape(summary.read_text())}</pre>")
    for name, alt in (("samples.png", "synthetic training images (the stream's first images)"),
                      ("views.png", "augmented views fed to the network")):
        if (run_dir / name).is_file():
            parts.append(_img(run_dir / name, alt))
    config = run_dir / "config.json"
    if config.is_file():
        parts.append(f"<h2>Configuration</h2><pre>{html.escape(config.read_text())}</pre>")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>synthsight report {html.escape(run_dir.name)}"
            f"</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
    out = run_dir / "report.html"
    out.write_text(page)
    return out
