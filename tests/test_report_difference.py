"""The report's difference from the baseline (95% interval), its verdict, the linear probe's settings cells."""

import math

import pytest

from synthsight.report.difference import difference, differences, verdict_line
from synthsight.report.tables import headline_table, protocol_sections


def test_interval_matches_the_binomial_formula_by_hand():
    d = difference(0.86, 0.84, 10000)
    half = 100 * 1.959964 * math.sqrt((0.86 * 0.14 + 0.84 * 0.16) / 10000)
    assert d.points == pytest.approx(2.0) and d.low == pytest.approx(2.0 - half) and d.high == pytest.approx(2.0 + half)
    assert d.verdict == "better"
    assert difference(0.84, 0.86, 10000).verdict == "worse"
    assert difference(0.845, 0.84, 1000).verdict == "not distinguishable"  # 0.5 points on 1,000 images
    assert difference(0.845, 0.84, 1_000_000).verdict == "better"  # the same 0.5 points on a million


def _metrics():
    def enc(name, knn, lin, wd):
        return {"name": name, "results": {
            "knn": {"top1": knn, "n_test": 10000, "settings": {"k": 20}},
            "linear": {"top1": lin, "n_test": 10000, "description": "linear: top-1 0.5",
                       "settings": {"weight_decay": wd, "val_top1": {str(wd): 0.8}, "seed": 0}}}}
    return {"encoders": [enc("raw pixels", 0.85, 0.84, 1e-5), enc("random init (same architecture)", 0.827, 0.845, 1e-4),
                         enc("synthsight pretrained (synthetic only)", 0.822, 0.861, 1.0000000000000001e-05)]}


def test_ours_is_compared_with_random_init_not_with_the_first_encoder():
    d = differences(_metrics())
    assert d["knn"].points == pytest.approx(-0.5) and d["linear"].points == pytest.approx(1.6)
    line = verdict_line(_metrics(), {"knn": "k-NN", "linear": "linear probe"})
    assert line.startswith("synthsight pretrained (synthetic only): k-NN: not distinguishable from random init")
    assert "linear probe: better than random init (same architecture), +1.60 points" in line


def test_headline_table_has_the_difference_row_and_verdict():
    page = headline_table(_metrics())
    assert "difference: synthsight pretrained (synthetic only) - random init" in page
    assert "+1.60 [" in page and "<b>Verdict</b>" in page


def test_linear_table_shows_the_chosen_weight_decay_not_a_raw_mapping():
    page = protocol_sections(_metrics())
    assert "1e-05" in page and "0.0001" in page and "1.0000000000000001e-05" not in page
    assert "{" not in page  # no dict printed into a cell or the settings line
