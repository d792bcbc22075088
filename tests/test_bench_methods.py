"""The pure helpers of benchmarks/methods.py: gap closed, budget -> steps, probe rate, the plan's arithmetic."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "methods.py"
_spec = importlib.util.spec_from_file_location("bench_methods", _PATH)
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # dataclasses look their module up while the script is being executed
_spec.loader.exec_module(bench)


def test_gap_closed() -> None:
    assert bench.gap_closed(0.80, 0.90, 0.70) == pytest.approx(0.5)
    assert bench.gap_closed(0.90, 0.90, 0.70) == pytest.approx(1.0)
    assert bench.gap_closed(0.60, 0.90, 0.70) == pytest.approx(-0.5)  # worse than random init
    assert bench.gap_closed(0.95, 0.90, 0.70) == pytest.approx(1.25)  # better than the real reference
    assert bench.gap_closed(0.80, 0.70, 0.70) is None  # real pretraining did not beat random: no ratio
    assert bench.gap_closed(0.80, 0.65, 0.70) is None
    assert bench.gap_closed(0.80, 0.703, 0.70) is None  # within noise of random init (half a point)


def test_budget_to_steps_and_probe_rate() -> None:
    assert bench.steps_for_budget(5, 2.0) == 600
    assert bench.steps_for_budget(0.5, 1.5) == 45
    assert bench.steps_for_budget(0.01, 0.1) == 1  # never zero steps
    with pytest.raises(ValueError):
        bench.steps_for_budget(5, 0)
    # 3 warm-up steps (ignored), then two steps of 0.5 s and two of 1 s at batch 256: 4 steps in 3 s
    rows = [{"step": s, "images_per_second": ips} for s, ips in
            [(1, 10), (2, 10), (3, 10), (4, 512), (5, 512), (6, 256), (7, "256.0")]]
    assert bench.probe_rate(rows, warmup=3, batch_size=256) == pytest.approx(4 / 3)
    with pytest.raises(ValueError):
        bench.probe_rate(rows[:3], warmup=3, batch_size=256)


def test_plan_arithmetic() -> None:
    plan = bench.Plan.of(n_self_supervised=6, n_supervised=2, minutes=5.5, limit=None)  # the defaults
    assert (plan.runs, plan.evals) == (14, 15)
    per_eval = bench.EVAL_MINUTES_FIXED + 60 * bench.EVAL_MINUTES_PER_1K  # all 60,000 training images
    expected = 14 * (5.5 + bench.PROBE_MINUTES + bench.RUN_OVERHEAD_MINUTES) + 15 * per_eval
    assert plan.total == pytest.approx(expected)
    assert plan.total <= 100  # the default budget keeps the whole benchmark within ~100 minutes
    assert bench.eval_minutes(20000) == pytest.approx(bench.EVAL_MINUTES_FIXED + 20 * bench.EVAL_MINUTES_PER_1K)


def test_options_rows_and_table() -> None:
    opts, overrides, skipped = bench.split_options(["local_crops", "temperature"],
                                                   {"local_crops": 2, "trainer.lr": 0.001, "out_dim": 4096})
    assert opts == {"local_crops": 2} and overrides == ["trainer.lr=0.001"] and skipped == ["out_dim"]
    assert bench.parse_options(["dino.local_crops=4", "byol.trainer.lr=1e-3"]) == {
        "dino": {"local_crops": 4}, "byol": {"trainer.lr": 1e-3}}
    random = {"knn": 0.6, "linear": 0.7}
    runs = {"synthetic": {"steps": 100, "top1": {"knn": 0.7, "linear": 0.75}},
            "real": {"steps": 120, "top1": {"knn": 0.8, "linear": 0.8}}}
    ssl = bench.result_row("simclr", False, runs, random)
    assert ssl["gap_closed"] == {"knn": pytest.approx(0.5), "linear": pytest.approx(0.5)}
    sup = bench.result_row("ce", True, {"synthetic": runs["synthetic"]}, random)
    assert sup["real"] is None and sup["gap_closed"] == {"knn": None, "linear": None}
    table = bench.markdown_table([ssl, sup])
    assert "| simclr | self-supervised | 100 / 120 | 70.00 | 75.00 | 80.00 | 80.00 | 60.00 | 70.00 | 0.50 | 0.50 |" \
        in table
    assert "| ce | supervised | 100 / n/a | 70.00 | 75.00 | n/a | n/a | 60.00 | 70.00 | n/a | n/a |" in table
    failed = bench.result_row("dino", False, {"synthetic": runs["synthetic"], "real": {"error": "CollapseError"}},
                              random)
    assert failed["steps"] == {"synthetic": 100, "real": "failed"} and failed["real"] is None
    assert failed["gap_closed"] == {"knn": None, "linear": None}
    assert "| dino | self-supervised | 100 / failed | 70.00 |" in bench.markdown_table([failed])
