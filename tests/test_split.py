"""trainer.split=auto: the split rule (pure) and the probe in a real run (chosen once, kept on resume)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthsight.train import loop
from synthsight.train.loop import pretrain
from synthsight.train.split import pick_split


def test_cheap_rendering_stays_in_the_training_process():
    # the demo's figures on 2 cores: render 0.06 s, step 0.21 s on 2 threads, 0.32 s on 1
    split = pick_split(2, render_all=0.06, render_one=0.067, step_all=0.21, step_but_one=0.32)
    assert (split.workers, split.threads) == (0, 2) and split.expected_step == pytest.approx(0.27)


def test_costly_rendering_goes_to_workers_and_as_many_as_it_needs():
    # StyleGAN-like: a batch renders in 1.5 s whatever the threads (per-image loops), a step takes 0.2 s
    split = pick_split(2, render_all=1.5, render_one=1.5, step_all=0.2, step_but_one=0.3)
    assert (split.workers, split.threads) == (1, 1) and split.expected_step == pytest.approx(1.5)
    many = pick_split(8, render_all=0.5, render_one=1.2, step_all=0.1, step_but_one=0.11)
    assert many.workers + many.threads == 8 and many.workers >= 4  # rendering bound: most cores render
    assert many.expected_step == pytest.approx(max(0.11 * 7 / many.threads, 1.2 / many.workers))


def test_auto_split_is_probed_once_and_kept_on_resume(tiny_config, tmp_path: Path, monkeypatch):
    cfg = tiny_config("trainer.split=auto", "trainer.steps=2", "trainer.checkpoint_every=1", "trainer.workers=3",
                      "trainer.threads=5")
    run = tmp_path / "run"
    pretrain(cfg, run, progress=False)
    trainer = json.loads((run / "config.json").read_text())["trainer"]
    assert trainer["split"] == "auto" and (trainer["workers"], trainer["threads"]) != (3, 5)  # the probe's choice
    assert trainer["workers"] in (0, 1) and trainer["threads"] >= 1

    def no_probe(*args, **kwargs):
        raise AssertionError("a resumed run must keep the split written in its config, not probe again")

    monkeypatch.setattr(loop, "probe_split", no_probe)
    resumed = tiny_config("trainer.split=auto", "trainer.steps=3", "trainer.checkpoint_every=1",
                          f"trainer.workers={trainer['workers']}", f"trainer.threads={trainer['threads']}")
    pretrain(resumed, run, resume=True, progress=False)
    assert json.loads((run / "config.json").read_text())["trainer"]["workers"] == trainer["workers"]
