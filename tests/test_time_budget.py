"""trainer.minutes: a run trains for a wall-clock budget, its schedules follow the share of the budget spent, and a
paused or killed run resumes with the seconds it has left (the clock is faked: one optimisation step = one second)."""

import csv
import json

import pytest

import synthsight.train.loop as loop
from synthsight.checkpoint import read_meta
from synthsight.config import ConfigError
from synthsight.methods.base import Method
from synthsight.runs import pretrain_run
from synthsight.schedules import budget_position, warmup_cosine
from synthsight.train.loop import RunFinishedError

BUDGET = ["trainer.minutes=0.1", "trainer.steps=40", "trainer.warmup_steps=8", "trainer.log_every=1",
          "trainer.checkpoint_every=4", "trainer.collapse_check_every=0"]  # 6 s; at most 40 steps


@pytest.fixture
def step_clock(monkeypatch):
    """time.perf_counter in the train loop advances one second per optimisation step, nothing else."""
    clock = {"now": 1000.0}
    real_step = loop.forward_backward

    def one_second_step(*args, **kwargs):
        clock["now"] += 1.0
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "forward_backward", one_second_step)
    monkeypatch.setattr(loop.time, "perf_counter", lambda: clock["now"])
    return clock


def _log(run):
    with open(run / "train_log.csv") as f:
        return list(csv.DictReader(f))


def test_budget_position_is_the_share_of_the_budget_in_steps():
    assert budget_position(0, 60, 100) == 0
    assert budget_position(15, 60, 100) == 25
    assert budget_position(90, 60, 100) == 100  # past the budget: the schedule's end, not beyond
    with pytest.raises(ValueError, match="budget_seconds"):
        budget_position(1, 0, 100)


def test_a_run_with_minutes_stops_on_time_and_its_schedule_follows_the_clock(tiny_config, tmp_path, step_clock,
                                                                            monkeypatch):
    cfg = tiny_config(*BUDGET)
    hooks = []  # the methods' own schedules (EMA momentum, temperatures) see the same position
    monkeypatch.setattr(Method, "after_optimizer_step", lambda self, step, total: hooks.append((step, total)))
    result = pretrain_run(cfg, tmp_path / "run", progress=False)
    assert result.steps == 6 and not result.paused  # 6 s of 1-second steps, far below the 40-step cap
    rows = _log(tmp_path / "run")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    # step s starts after s seconds: the schedule stands at 40 * s / 6 of its 40 steps (warm-up 8 of them)
    expected = [warmup_cosine(40 * s / 6, 40, cfg.trainer.lr, 8) for s in range(6)]
    assert [float(r["lr"]) for r in rows] == pytest.approx(expected, rel=1e-4)
    assert hooks == [(int(40 * s / 6), 40) for s in range(6)]
    assert read_meta(tmp_path / "run" / "checkpoints" / "step-000006")["train_seconds"] == pytest.approx(6)
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())  # records of a finished run
    assert summary["steps"] == 6
    provenance = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert provenance["training"]["steps_done"] == 6  # not the 40-step cap


def test_a_paused_run_resumes_with_the_seconds_it_has_left(tiny_config, tmp_path, step_clock):
    straight = pretrain_run(tiny_config(*BUDGET), tmp_path / "straight", progress=False)
    paused = pretrain_run(tiny_config(*BUDGET), tmp_path / "paused", progress=False, stop_at=4)
    assert paused.paused and paused.steps == 4 and not (tmp_path / "paused" / "train_summary.json").exists()
    step_clock["now"] += 500.0  # time between the two calls is not training time
    resumed = pretrain_run(tiny_config(*BUDGET), tmp_path / "paused", resume=True, progress=False)
    assert resumed.steps == straight.steps == 6 and not resumed.paused
    assert [r["lr"] for r in _log(tmp_path / "paused")] == [r["lr"] for r in _log(tmp_path / "straight")]
    with pytest.raises(RunFinishedError, match="trainer.minutes"):
        pretrain_run(tiny_config(*BUDGET), tmp_path / "paused", resume=True, progress=False)


def test_the_step_cap_ends_a_run_before_its_minutes_with_a_warning(tiny_config, tmp_path, step_clock, capsys):
    result = pretrain_run(tiny_config(*BUDGET, "trainer.steps=3", "trainer.warmup_steps=1"), tmp_path / "run",
                          progress=False)
    assert result.steps == 3 and not result.paused
    assert "raise trainer.steps" in capsys.readouterr().err
    assert (tmp_path / "run" / "train_summary.json").is_file()


def test_negative_minutes_are_refused(tiny_config):
    with pytest.raises(ConfigError, match="trainer.minutes"):
        tiny_config("trainer.minutes=-1")
