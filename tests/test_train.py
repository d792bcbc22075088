import json

import pytest
import torch

from synthsight.checkpoint import list_checkpoints, verify_checkpoint
from synthsight.methods.base import StepOutput
from synthsight.methods.simclr import SimCLR
from synthsight.train.build import build_method, build_optimizer, build_stream
import synthsight.train.loop as loop
from synthsight.train.loop import NonFiniteLossError, RunFolderError, pretrain
from tests.conftest import assert_resume_is_bit_exact


def test_simclr_steps_lower_the_loss_on_a_fixed_batch(tiny_config):
    cfg = tiny_config("trainer.lr=0.003")
    torch.manual_seed(0)
    method = build_method(cfg)
    opt = build_optimizer(cfg, method)
    images, _ = next(iter(build_stream(cfg)))

    def loss():
        return method.training_step(images, torch.Generator().manual_seed(0)).loss

    before = loss()
    assert torch.isfinite(before)
    for _ in range(5):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < before.item()


def test_pretrain_writes_checkpoints_log_and_config(tiny_config, tmp_path):
    result = pretrain(tiny_config(), tmp_path / "run", progress=False)
    assert result.steps == 6 and torch.isfinite(torch.tensor(result.final_loss))
    ckpts = list_checkpoints(tmp_path / "run")
    assert [p.name for p in ckpts] == ["step-000003", "step-000006"]
    for c in ckpts:
        verify_checkpoint(c)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["trainer"]["steps"] == 6
    log = (tmp_path / "run" / "train_log.csv").read_text().splitlines()
    assert log[0] == "step,loss,lr,images_per_second,skipped,emb_std,eff_rank,teacher_entropy,knn" and len(log) == 4


def test_resume_after_interruption_matches_uninterrupted_run(tiny_config, tmp_path, monkeypatch):
    assert_resume_is_bit_exact(monkeypatch, tiny_config(), tmp_path)


def test_output_folder_with_a_different_run_is_refused(tiny_config, tmp_path):
    pretrain(tiny_config(), tmp_path / "run", progress=False)
    with pytest.raises(RunFolderError, match="already holds a different run"):
        pretrain(tiny_config("trainer.lr=0.5"), tmp_path / "run", progress=False)
    with pytest.raises(RunFolderError, match="--resume"):
        pretrain(tiny_config(), tmp_path / "run", progress=False)
    assert len(list_checkpoints(tmp_path / "run")) == 2  # finished work untouched


def test_nan_loss_stops_with_step_and_last_checkpoint(tiny_config, tmp_path, monkeypatch):
    real_step = SimCLR.training_step
    calls = {"n": 0}

    def sometimes_nan(self, images, g, labels=None):
        calls["n"] += 1
        out = real_step(self, images, g)
        return StepOutput(out.loss * float("nan"), out.terms) if calls["n"] == 5 else out

    monkeypatch.setattr(SimCLR, "training_step", sometimes_nan)
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 4.*step-000003"):
        pretrain(tiny_config(), tmp_path / "run", progress=False)
    verify_checkpoint(tmp_path / "run" / "checkpoints" / "step-000003")


def test_random_baseline_is_the_real_pretrains_starting_point(tiny_config, tmp_path, monkeypatch):
    """Evaluation's random init and fine-tuning from scratch use the weights the real pretrain() started from."""
    import synthsight.train.loop as loop
    from synthsight.eval.run import random_backbone

    cfg = tiny_config("trainer.seed=3", "trainer.steps=2")
    started = {}
    real_build = loop.build_training

    def capture(*args, **kwargs):
        method, optimizer, scaler = real_build(*args, **kwargs)
        started.update({k: v.detach().clone() for k, v in method.backbone.state_dict().items()})
        return method, optimizer, scaler

    monkeypatch.setattr(loop, "build_training", capture)
    torch.manual_seed(12345)  # whatever the global RNG held before, the start is the same
    pretrain(cfg, tmp_path / "run", progress=False)
    baseline = random_backbone(cfg).state_dict()
    assert started and started.keys() == baseline.keys()
    for k in started:
        assert torch.equal(started[k], baseline[k]), k
    other = random_backbone(tiny_config("trainer.seed=4")).state_dict()
    assert any(not torch.equal(started[k], other[k]) for k in started)
