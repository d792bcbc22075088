"""Distillation: soft targets from a teacher ensemble (no labels) and cosine feature matching, on synthetic images
only; the student's run folder is an ordinary one (eval, export, verify work on it)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from synthsight.cli import main
from synthsight.config import ConfigError, load_config
from synthsight.eval.run import load_backbone
from synthsight.losses.distill import cosine_feature_loss, ensemble_soft_targets, soft_target_loss
from synthsight.provenance import verify_provenance
from synthsight.runs import pretrain_run
from synthsight.train.build import load_teacher
from tests.conftest import TINY

STUDENT = [t for t in TINY if not t.startswith("method")] + ["model.width=4", "trainer.steps=4"]


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    root = tmp_path_factory.mktemp("teachers")
    a, b = root / "a", root / "b"
    pretrain_run(load_config("demo", TINY + ["trainer.steps=3"]), a, progress=False)
    pretrain_run(load_config("demo", TINY + ["trainer.steps=3", "method.proj_dim=8", "trainer.seed=1"]), b,
                 progress=False)
    return a, b


def test_soft_targets_are_averaged_distributions_and_losses_vanish_at_the_target():
    a, b = torch.randn(5, 7), torch.randn(5, 7)
    p = ensemble_soft_targets([a, b], temperature=2.0)
    torch.testing.assert_close(p.sum(dim=1), torch.ones(5))
    torch.testing.assert_close(p, (torch.softmax(a / 2, 1) + torch.softmax(b / 2, 1)) / 2)
    assert soft_target_loss(a, torch.softmax(a / 2, 1), temperature=2.0).abs() < 1e-6
    assert soft_target_loss(b, torch.softmax(a / 2, 1), temperature=2.0) > 0
    assert cosine_feature_loss(a, 3 * a).abs() < 1e-6 and cosine_feature_loss(a, -a) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="share one shape"):
        ensemble_soft_targets([a, torch.randn(5, 3)])


def test_distill_cli_trains_a_student_that_eval_and_verify_accept(teachers, tmp_path, capsys):
    a, _ = teachers
    run = tmp_path / "student"
    before = load_file(str(load_teacher(a).checkpoint / "model.safetensors"))
    assert main(["distill", "--teacher", str(a), *STUDENT, "--out", str(run)]) == 0
    assert f"run folder: {run}" in capsys.readouterr().out
    log = (run / "train_log.csv").read_text()
    assert "loss" in log
    weights = load_file(str(run / "checkpoints" / "step-000004" / "model.safetensors"))
    assert {k.split(".")[0] for k in weights} == {"backbone", "projector", "adapters"}  # teachers are not saved
    assert weights["projector.3.weight"].shape[0] == 16  # the student's head speaks the teacher's output space
    after = load_file(str(load_teacher(a).checkpoint / "model.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)  # teachers stay frozen
    backbone, cfg, _ = load_backbone(run)  # what `synthsight eval` loads
    assert cfg.method["name"] == "distill" and backbone(torch.rand(2, 3, 16, 16)).shape == (2, 16)
    record = json.loads((run / "provenance.json").read_text())
    assert record["teachers"][0]["weights_sha256"] and record["teachers"][0]["provenance"]["format"]
    assert verify_provenance(run).passed


def test_ensemble_with_different_head_widths_uses_feature_matching(teachers, tmp_path):
    a, b = teachers
    cfg = load_config("demo", STUDENT + ["method.name=distill", f"method.teachers=[{a}, {b}]", "trainer.steps=2"])
    cfg.method = {"name": "distill", "teachers": [str(a), str(b)]}
    result = pretrain_run(cfg, tmp_path / "ens", progress=False)
    weights = load_file(str(result.checkpoint / "model.safetensors"))
    assert not any(k.startswith("projector.") for k in weights)  # auto: widths 16 and 8 cannot be averaged
    assert weights["adapters.0.weight"].shape == (32, 16) and weights["adapters.1.weight"].shape == (32, 16)
    cfg.method = {"name": "distill", "teachers": [str(a), str(b)], "loss": "soft"}
    with pytest.raises(ConfigError, match="share one output width"):
        pretrain_run(cfg, tmp_path / "soft", progress=False)


def test_a_distilled_student_can_teach_in_turn(teachers, tmp_path):
    a, _ = teachers
    cfg = load_config("demo", STUDENT + ["trainer.steps=2"])
    cfg.method = {"name": "distill", "teachers": [str(a)]}
    pretrain_run(cfg, tmp_path / "s1", progress=False)
    teacher = load_teacher(tmp_path / "s1")  # built from its weights, without loading its own teacher
    assert teacher.out_dim == 16 and teacher.num_features == 16


def test_distill_without_teacher_is_a_clear_error(capsys):
    assert main(["distill", *STUDENT]) == 2
    assert "--teacher" in capsys.readouterr().err
