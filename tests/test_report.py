"""The HTML report: one self-contained page (no script, no external resource) with every table and plot."""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from synthsight.cli import main
from synthsight.report.html import build_report
from tests.conftest import TINY

ANALYSIS_FIGURES = {"embedding", "units_selectivity", "units_top", "retrieval", "retrieval_baseline", "per_class"}


class Page(HTMLParser):
    """Tables (rows of cell texts), images (src, alt), tag names and every attribute value of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.images: list[tuple[str, str]] = []
        self.tags: set[str] = set()
        self.attributes: list[str] = []
        self.headings: list[str] = []
        self._cell: list[str] | None = None
        self._heading: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attributes += [v or "" for _, v in attrs]
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            a = dict(attrs)
            self.images.append((a.get("src", ""), a.get("alt", "")))
        elif tag in ("h2", "h3", "h4"):
            self._heading = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag in ("h2", "h3", "h4") and self._heading is not None:
            self.headings.append("".join(self._heading).strip())
            self._heading = None

    def handle_data(self, data):
        for part in (self._cell, self._heading):
            if part is not None:
                part.append(data)


def _npz(path, n=60, size=12, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = rng.integers(0, 140, size=(n, size, size, 3), dtype=np.uint8)
    for c in range(1, classes):
        images[labels == c, : c * size // classes] += 40  # class c: a faint band whose height grows with c
    np.savez(path, images=images, labels=labels, classes=np.array(["plain", "band", "wide band"]))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return _npz(root / "train.npz"), _npz(root / "test.npz", seed=1)


def _run(tmp_path, *extra):
    run = tmp_path / "run"
    assert main(["pretrain", *TINY, *extra, "--out", str(run)]) == 0
    return run


def _eval(run, data, *extra):
    train, test = data
    assert main(["eval", str(run), "--data", str(train), "--test-data", str(test), "--k", "5", "--compare",
                 "random,pixels", "--protocols", "knn,linear,kmeans,fewshot", "--device", "cpu", *extra]) == 0


def _check_page(path) -> Page:
    text = path.read_text()
    page = Page()
    page.feed(text)
    assert "script" not in page.tags and "<script" not in text.lower()
    assert "link" not in page.tags and "iframe" not in page.tags
    assert not re.search(r"https?://", text), "the page must not reference any external resource"
    assert not [a for a in page.attributes if a.startswith(("http:", "https:", "//"))]
    assert page.tables, "expected at least one table"
    for rows in page.tables:
        assert len(rows) >= 2, "a table needs a header and at least one row"
        for row in rows:
            assert row and all(cell for cell in row), f"empty cell in row {row}"
    for src, alt in page.images:
        assert src.startswith("data:image/png;base64,"), f"image {alt!r} is not an inline PNG"
        try:
            raw = base64.b64decode(src.split(",", 1)[1], validate=True)
        except binascii.Error as err:  # pragma: no cover - the assertion message is the point
            raise AssertionError(f"image {alt!r}: bad base64") from err
        with Image.open(io.BytesIO(raw)) as im:
            assert im.format == "PNG" and im.width > 10 and im.height > 10
    return page


def _alts(page: Page) -> str:
    return "\n".join(alt for _, alt in page.images)


def test_report_of_an_evaluated_run_has_every_table_and_plot(tmp_path, data):
    run = _run(tmp_path)
    _eval(run, data)
    summary = json.loads((run / "eval" / "analysis.json").read_text())
    assert {f["name"] for f in summary["figures"]} == ANALYSIS_FIGURES
    assert summary["units"]["random init (same architecture)"]["n_units"] == 32  # smallconv width 8: 4 x 8 units
    assert any("attention maps: skipped" in n for n in summary["notes"])  # a ConvNet has no attention

    page = _check_page(run / "report.html")
    alts = _alts(page)
    for f in summary["figures"]:
        assert f["caption"] in alts, f"figure {f['name']} missing from the report"
    assert "pretraining loss per step" in alts and "top-1 accuracy per encoder" in alts
    for heading in ("Real-data evaluation", "Protocols, as run", "k-NN", "linear probe", "k-means clustering",
                    "few-shot (nearest class mean)", "Per-class accuracy", "Feature analysis", "Unit selectivity",
                    "Attention maps", "Pretraining", "Configuration", "Provenance"):
        assert heading in page.headings, heading
    cells = [c for rows in page.tables for row in rows for c in row]
    assert "NMI" in cells and "ARI" in cells and any("±" in c for c in cells)  # k-means and few-shot spelled out
    assert "top-1 k=5 (%)" in cells and "top-1 k=60 (%)" in cells  # k-NN at k and at 200 (clamped to 60)
    assert {"plain", "band", "wide band"} <= set(cells)  # the per-class table names the classes

    assert build_report(run) == run / "report.html"  # `synthsight report` rebuilds the same page
    assert main(["report", str(run)]) == 0


def test_report_of_an_eval_folder_and_of_a_run_without_eval(tmp_path, data):
    run = _run(tmp_path)
    page = _check_page(build_report(run))
    assert "Real-data evaluation" not in page.headings and "Configuration" in page.headings
    assert "collapse monitor" not in _alts(page)  # the tiny run logs no collapse figures: no empty plot

    log = run / "train_log.csv"  # columns from the online k-NN and the collapse monitor, some rows empty
    log.write_text("step,loss,lr,emb_std,eff_rank,knn,my_metric\n2,3.1,0.1,0.9,5.0,,1\n4,2.9,0.1,,,0.41,2\n"
                   "6,2.7,0.1,0.8,4.5,0.45,3\n")
    alts = _alts(_check_page(build_report(run)))
    assert "online k-NN" in alts and "collapse monitor" in alts and "other columns of train_log.csv" in alts

    out = tmp_path / "elsewhere"
    _eval(run, data, "--out", str(out), "--no-analysis")
    assert not (out / "analysis.json").exists()
    page = _check_page(out / "report.html")
    for heading in ("Real-data evaluation", "Feature analysis", "Configuration", "Provenance"):
        assert heading in page.headings
    assert "--no-analysis" in (out / "report.html").read_text()


def test_report_of_a_vit_run_shows_attention_maps(tmp_path, data):
    run = _run(tmp_path, "model.backbone=vit_tiny")
    _eval(run, data, "--protocols", "knn")
    summary = json.loads((run / "eval" / "analysis.json").read_text())
    assert "attention" in {f["name"] for f in summary["figures"]}
    assert summary["attention"]["heads"] == 3 and summary["attention"]["grid"] == [4, 4]  # 16 px, patch 4
    focus = summary["attention"]["focus"]  # share of the attention on the object (analysis/attention_focus.py)
    assert 0 <= focus["attention_share"] <= 1 and 0 < focus["area_share"] < 1 and focus["images"] > 0
    page = _check_page(run / "report.html")
    assert any("CLS-token attention" in alt for _, alt in page.images)


def test_report_of_an_empty_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "neither a run folder" in capsys.readouterr().err
