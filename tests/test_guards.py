"""Guards of the train loop: non-finite loss or gradient, out of memory, a disk that fills, speed switches."""

import errno

import pytest
import torch

import synthsight.checkpoint as checkpoint
from synthsight.checkpoint import CheckpointError, list_checkpoints, verify_checkpoint
from synthsight.methods.base import StepOutput
from synthsight.methods.simclr import SimCLR
from synthsight.train.loop import NonFiniteGradientError, TrainingOOMError, pretrain


def _patch_step(monkeypatch, faults):
    """Make training_step call number n (1-based) misbehave as faults[n] says."""
    real_step = SimCLR.training_step
    calls = {"n": 0}

    def step(self, images, g, labels=None):
        calls["n"] += 1
        fault = faults.get(calls["n"], faults.get("from") if calls["n"] >= faults.get("from_call", 1e9) else None)
        if fault == "nan_batch":  # a NaN batch: NaN loss, and the forward pass writes NaN into BatchNorm statistics
            images = images * float("nan")
        if fault == "inf_bn":  # BatchNorm statistics overflow, while losses and gradients stay finite
            with torch.no_grad():
                norm = next(m for m in self.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
                norm.running_var.fill_(float("inf"))
        out = real_step(self, images, g)
        if fault == "nan_loss":
            return StepOutput(out.loss * float("nan"), out.terms)
        if fault == "nan_grad":  # finite loss, NaN gradient
            loss = out.loss.clone()
            loss.register_hook(lambda grad: grad * float("nan"))
            return StepOutput(loss, out.terms)
        if fault == "oom":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return out

    monkeypatch.setattr(SimCLR, "training_step", step)


def test_nan_gradient_stops_with_step_parameters_and_last_checkpoint(tiny_config, tmp_path, monkeypatch):
    _patch_step(monkeypatch, {5: "nan_grad"})
    with pytest.raises(NonFiniteGradientError, match=r"gradient norm is nan at step 4 \(loss \d.*non-finite in "
                                                     r"backbone\.features\.0\.weight.*step-000003.*skip_nonfinite"):
        pretrain(tiny_config(), tmp_path / "run", progress=False)
    verify_checkpoint(tmp_path / "run" / "checkpoints" / "step-000003")


def test_skip_nonfinite_skips_counts_and_logs(tiny_config, tmp_path, monkeypatch, capsys):
    _patch_step(monkeypatch, {2: "nan_loss", 5: "nan_grad"})
    result = pretrain(tiny_config("trainer.skip_nonfinite=true"), tmp_path / "run", progress=False)
    assert result.skipped_steps == 2
    err = capsys.readouterr().err
    assert "step 1: loss is not finite" in err and "step 4: gradient is not finite" in err and "2 so far" in err
    log = (tmp_path / "run" / "train_log.csv").read_text().splitlines()
    assert log[-1].split(",")[log[0].split(",").index("skipped")] == "2"  # skipped column
    weights = checkpoint.load_file(str(result.checkpoint / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert verify_checkpoint(result.checkpoint)["skipped_steps"] == 2


def test_out_of_memory_suggests_a_smaller_batch(tiny_config, tmp_path, monkeypatch):
    _patch_step(monkeypatch, {4: "oom"})
    with pytest.raises(TrainingOOMError, match=r"ran out of memory at step 3 with 16 images .* lower "
                                               r"trainer.batch_size.*trainer.accumulate=2.*fewer/smaller crops.*"
                                               r"step-000003.*--resume"):
        pretrain(tiny_config(), tmp_path / "run", progress=False)


def test_disk_full_while_checkpointing_keeps_the_previous_one(tiny_config, tmp_path, monkeypatch):
    real_save_file = checkpoint.save_file
    calls = {"n": 0}

    def filling_disk(tensors, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the second checkpoint's weights: half a file, then ENOSPC
            with open(path, "wb") as f:
                f.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real_save_file(tensors, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_file", filling_disk)
    run = tmp_path / "run"
    with pytest.raises(CheckpointError, match=r"could not write checkpoint step-000006 .* the disk is full .*"
                                              r"step-000003 is intact and `latest` still points to it"):
        pretrain(tiny_config(), run, progress=False)
    assert (run / "checkpoints" / "latest").read_text() == "step-000003"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step-000003"]  # no leftovers
    verify_checkpoint(run / "checkpoints" / "step-000003")
    monkeypatch.setattr(checkpoint, "save_file", real_save_file)  # space freed: resume finishes the run
    assert pretrain(tiny_config(), run, resume=True, progress=False).checkpoint.name == "step-000006"


def test_compile_switch_compiles_the_method_parts_in_place(tiny_config, tmp_path, monkeypatch):
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(type(self).__name__))
    result = pretrain(tiny_config("trainer.compile=true", "trainer.steps=1"), tmp_path / "run", progress=False)
    assert compiled == ["SmallConvNet", "Sequential"]  # backbone and projector; names in checkpoints unchanged
    assert all(k.startswith(("backbone.", "projector.")) for k in checkpoint.load_file(
        str(result.checkpoint / "model.safetensors")))


@pytest.mark.slow
def test_compiled_training_matches_eager(tiny_config, tmp_path):
    eager = pretrain(tiny_config("trainer.steps=2"), tmp_path / "eager", progress=False)
    compiled = pretrain(tiny_config("trainer.steps=2", "trainer.compile=true"), tmp_path / "compiled", progress=False)
    a = checkpoint.load_file(str(eager.checkpoint / "model.safetensors"))
    b = checkpoint.load_file(str(compiled.checkpoint / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=1e-4, msg=k)


def test_speed_switches_train(tiny_config, tmp_path):
    for i, switches in enumerate([("trainer.amp=bf16",), ("trainer.amp=fp16",), ("trainer.channels_last=false",)]):
        result = pretrain(tiny_config("trainer.steps=2", *switches), tmp_path / f"run{i}", progress=False)
        assert torch.isfinite(torch.tensor(result.final_loss)), switches
        assert len(list_checkpoints(result.run_dir)) == 1


def _finite(ckpt) -> bool:
    return all(torch.isfinite(w).all() for w in checkpoint.load_file(str(ckpt / "model.safetensors")).values())


def test_non_finite_buffers_are_never_checkpointed_and_the_last_good_one_is_kept(tiny_config, tmp_path, monkeypatch):
    from synthsight.train.loop import NonFiniteWeightsError

    _patch_step(monkeypatch, {5: "inf_bn"})
    run = tmp_path / "run"
    with pytest.raises(NonFiniteWeightsError, match=r"NaN or Inf in backbone\.features\.\d+\.running_var at step 6 .*"
                                                    r"not saved, the last good checkpoint is .*step-000003"):
        pretrain(tiny_config("trainer.keep_checkpoints=1"), run, progress=False)
    assert [p.name for p in list_checkpoints(run)] == ["step-000003"]  # keep_checkpoints=1 did not delete it
    assert (run / "checkpoints" / "latest").read_text() == "step-000003"
    assert _finite(run / "checkpoints" / "step-000003")


def test_skip_nonfinite_undoes_the_buffers_of_a_skipped_step(tiny_config, tmp_path, monkeypatch):
    _patch_step(monkeypatch, {4: "nan_batch"})
    result = pretrain(tiny_config("trainer.skip_nonfinite=true"), tmp_path / "run", progress=False)
    assert result.skipped_steps == 1
    assert _finite(result.checkpoint)  # the NaN batch's BatchNorm update was rolled back with the step


def test_skip_nonfinite_stops_after_too_many_skips_in_a_row(tiny_config, tmp_path, monkeypatch):
    from synthsight.train.loop import NonFiniteError

    _patch_step(monkeypatch, {"from_call": 2, "from": "nan_loss"})
    with pytest.raises(NonFiniteError, match=r"3 steps in a row \(up to step 3\) had a non-finite loss.*"
                                             r"trainer.max_consecutive_skips=3.*last good checkpoint is .*step-000003"):
        pretrain(tiny_config("trainer.skip_nonfinite=true", "trainer.max_consecutive_skips=3"), tmp_path / "run",
                 progress=False)
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step-000003"]  # skipped steps left it finite
    assert _finite(tmp_path / "run" / "checkpoints" / "step-000003")
