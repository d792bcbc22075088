"""The collapse alarm (figures, warnings, the stop) and online k-NN evaluation during pretraining."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from synthsight.checkpoint import list_checkpoints, verify_checkpoint
from synthsight.eval.data import DatasetNotFoundError
from synthsight.methods.base import StepOutput
from synthsight.methods.simclr import SimCLR
from synthsight.models.backbones import create_backbone
from synthsight.train.collapse import (
    CollapseError, CollapseMonitor, argmax_share, effective_rank, embedding_std, mean_entropy,
)
from synthsight.train.loop import _read_log, pretrain
from synthsight.train.online_eval import OnlineKNN


def _log(run_dir) -> list[dict[str, str]]:
    with open(run_dir / "train_log.csv") as f:
        return list(csv.DictReader(f))


# --- figures on hand examples --------------------------------------------------------------------------------


def test_identical_rows_have_zero_std_and_rank_one():
    z = torch.tensor([[3.0, -1.0, 2.0, 0.5]]).repeat(10, 1)
    assert embedding_std(z) == pytest.approx(0.0, abs=1e-6)
    assert effective_rank(z) == pytest.approx(1.0, abs=1e-4)


def test_orthonormal_rows_have_full_rank_and_healthy_std():
    d = 16
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(0)))
    assert effective_rank(q) == pytest.approx(d, rel=1e-4)
    assert effective_rank(torch.eye(d)) == pytest.approx(d, rel=1e-4)
    assert embedding_std(torch.eye(d)) == pytest.approx(1 / math.sqrt(d), rel=1e-5)
    assert effective_rank(torch.eye(d)[:, :4].repeat(2, 1)) == pytest.approx(4, rel=1e-4)  # 4 directions


def test_entropy_uniform_is_ln_k_and_one_hot_is_zero():
    k = 37
    assert mean_entropy(torch.full((5, k), 1 / k)) == pytest.approx(math.log(k), rel=1e-5)
    one_hot = torch.eye(k)[torch.zeros(20, dtype=torch.long)]
    assert mean_entropy(one_hot) == pytest.approx(0.0, abs=1e-6) and argmax_share(one_hot) == 1.0
    assert argmax_share(torch.eye(4)) == 0.25


def test_monitor_names_each_kind_of_collapse():
    m = CollapseMonitor(min_std=0.1, min_rank=2.0, max_entropy=0.98, max_argmax_share=0.9, patience=3)
    healthy = m.measure(torch.randn(64, 32), torch.softmax(4 * torch.randn(64, 10), dim=1), step=1)
    assert not healthy.collapsed and healthy.as_log().keys() == {"emb_std", "eff_rank", "teacher_entropy"}
    point = m.measure(torch.ones(64, 32) + 1e-6 * torch.randn(64, 32), None, step=2)
    assert any("embedding std" in p for p in point.problems) and any("effective rank" in p for p in point.problems)
    uniform = m.measure(None, torch.full((64, 10), 0.1), step=3)
    assert uniform.problems and "ln K" in uniform.problems[0]
    one_hot = m.measure(None, torch.eye(10)[torch.zeros(64, dtype=torch.long)], step=4)
    assert one_hot.problems and "one-hot" in one_hot.problems[0]
    assert not m.measure(None, None, step=5).collapsed  # nothing to measure is not a collapse


def test_monitor_warns_then_raises_after_patience_and_resets_when_healthy(capsys):
    m = CollapseMonitor(patience=2)
    bad, good = StepOutput(torch.zeros(()), embeddings=torch.ones(8, 4)), StepOutput(torch.zeros(()))
    m.check(bad, step=10)
    assert "possible collapse" in capsys.readouterr().err and m.streak == 1
    m.check(good, step=20)
    assert m.streak == 0
    m.check(bad, step=30)
    with pytest.raises(CollapseError, match=r"embedding std .* at step 40.*step-000020.*lower trainer.lr"):
        m.check(bad, step=40, last_good=Path("run/checkpoints/step-000020"))


# --- in the train loop ---------------------------------------------------------------------------------------


def test_collapsed_run_stops_after_patience_keeping_the_last_good_checkpoint(tiny_config, tmp_path, monkeypatch):
    real_step = SimCLR.training_step
    calls = {"n": 0}

    def collapses_from_step_5(self, images, g, labels=None):
        calls["n"] += 1
        out = real_step(self, images, g)
        if calls["n"] >= 5:  # done = 5, 6, 7, ...: every image embedded at one point
            out.embeddings = torch.ones_like(out.embeddings)
        return out

    monkeypatch.setattr(SimCLR, "training_step", collapses_from_step_5)
    cfg = tiny_config("trainer.steps=12", "trainer.collapse_check_every=1", "trainer.collapse_patience=3")
    with pytest.raises(CollapseError, match=r"at step 7, 3 checks in a row.*last good checkpoint is \S*step-000003"):
        pretrain(cfg, tmp_path / "run", progress=False)
    # step 6's checkpoint was held back while the alarm counted: the last good one stays, nothing newer exists
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step-000003"]
    verify_checkpoint(tmp_path / "run" / "checkpoints" / "step-000003")
    rows = {int(r["step"]): r for r in _log(tmp_path / "run")}
    assert float(rows[4]["emb_std"]) > 0.02 and float(rows[6]["emb_std"]) < 1e-4  # the figures were logged
    assert [int(r["step"]) for r in _read_log(tmp_path / "run" / "train_log.csv", 3)] == [2, 3]  # resume point


def test_healthy_simclr_run_is_silent_and_logs_the_figures(tiny_config, tmp_path, capsys):
    result = pretrain(tiny_config("trainer.collapse_check_every=2"), tmp_path / "run", progress=False)
    assert "collapse" not in capsys.readouterr().err
    rows = _log(tmp_path / "run")
    checked = [r for r in rows if r["emb_std"]]
    assert [int(r["step"]) for r in checked] == [4, 6]  # after the 2 warm-up steps
    assert all(float(r["eff_rank"]) > 2 for r in checked) and rows[0]["knn"] == "" and rows[0]["emb_std"] == ""
    assert result.last_checks["collapse_check_step"] == 6 and "knn" not in result.last_checks


def test_resume_reads_logs_written_before_the_new_columns(tiny_config, tmp_path):
    cfg = tiny_config()
    pretrain(cfg, tmp_path / "a", progress=False)
    run = tmp_path / "b"
    pretrain(tiny_config("trainer.steps=3"), run, progress=False)
    old = "step,loss,lr,images_per_second,skipped\n2,4.0,0.001,100.0,0\n3,3.9,0.002,100.0,0\n"
    (run / "train_log.csv").write_text(old)  # an old-format log
    pretrain(cfg, run, resume=True, progress=False)
    rows = _log(run)
    assert [int(r["step"]) for r in rows] == [2, 3, 4, 6] and rows[0]["loss"] == "4.0" and rows[0]["knn"] == ""


# --- online evaluation ---------------------------------------------------------------------------------------


def _real_npz(tmp_path, n_per_class: int = 12) -> str:
    """Three classes a k-NN can tell apart: dark, mid-grey and bright noisy 12 x 12 images."""
    rng = np.random.default_rng(0)
    images, labels = [], []
    for c, level in enumerate((40, 128, 215)):
        images.append(np.clip(level + rng.normal(0, 12, (n_per_class, 12, 12)), 0, 255).astype(np.uint8))
        labels += [c] * n_per_class
    path = tmp_path / "real.npz"
    np.savez(path, images=np.concatenate(images), labels=np.array(labels))
    return str(path)


def test_online_knn_holds_out_a_test_part_and_leaves_the_backbone_as_it_was(tmp_path):
    online = OnlineKNN(_real_npz(tmp_path), size=16, train_limit=24, test_limit=9, k=5)
    assert len(online.train) == 24 and len(online.test) == 9  # 33 of 36 images: 9 held out, 24 the memory bank
    assert torch.bincount(online.test.labels).tolist() == [3, 3, 3]
    torch.manual_seed(0)
    backbone = create_backbone("smallconv", width=8).train()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    top1 = online.evaluate(backbone, torch.device("cpu"))
    assert 0.0 <= top1 <= 1.0 and top1 > 0.5  # brightness survives a random ConvNet
    assert backbone.training
    for k, v in backbone.state_dict().items():
        assert torch.equal(v, before[k]), k  # BatchNorm statistics untouched


def test_online_eval_is_logged_and_does_not_change_training(tiny_config, tmp_path):
    plain = pretrain(tiny_config(), tmp_path / "plain", progress=False)
    extra = [f"trainer.online_eval_data={_real_npz(tmp_path)}", "trainer.online_eval_every=3",
             "trainer.online_eval_limit=24", "trainer.online_eval_test_limit=9"]
    watched = pretrain(tiny_config(*extra), tmp_path / "watched", progress=False)
    knn = {int(r["step"]): r["knn"] for r in _log(tmp_path / "watched") if r["knn"]}
    assert sorted(knn) == [3, 6] and all(0 <= float(v) <= 1 for v in knn.values())
    assert watched.last_checks["knn_step"] == 6 and watched.last_checks["knn"] == pytest.approx(float(knn[6]))

    from safetensors.torch import load_file

    a = load_file(str(plain.checkpoint / "model.safetensors"))
    b = load_file(str(watched.checkpoint / "model.safetensors"))
    for k in a:
        assert torch.equal(a[k], b[k]), k  # evaluation in between changed nothing


def test_missing_online_eval_data_fails_at_the_start(tiny_config, tmp_path):
    cfg = tiny_config("trainer.online_eval_every=2", f"trainer.online_eval_data={tmp_path / 'nothing.npz'}")
    with pytest.raises(DatasetNotFoundError, match="nothing.npz"):
        pretrain(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
