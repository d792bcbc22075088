import json

import pytest
import torch
from torch import nn

from synthsight.checkpoint import (
    CheckpointError, latest_good_checkpoint, list_checkpoints, load_checkpoint, resolve_checkpoint, save_checkpoint,
    verify_checkpoint,
)


def _model_and_opt(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    return model, opt


def test_round_trip_restores_weights_and_optimizer(tmp_path):
    model, opt = _model_and_opt(0)
    ckpt = save_checkpoint(tmp_path, 10, model, opt, {"config": {"a": 1}})
    other, other_opt = _model_and_opt(1)
    meta = load_checkpoint(ckpt, other, other_opt)
    assert meta["step"] == 10 and meta["config"] == {"a": 1}
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    sa, sb = opt.state_dict()["state"], other_opt.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        for name in sa[k]:
            assert torch.equal(torch.as_tensor(sa[k][name]), torch.as_tensor(sb[k][name]))
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step-000010"


def test_keeps_only_the_newest(tmp_path):
    model, opt = _model_and_opt()
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, model, opt, {}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000003", "step-000004"]
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def test_corrupt_checkpoint_is_detected_and_resume_falls_back(tmp_path, capsys):
    model, opt = _model_and_opt()
    save_checkpoint(tmp_path, 1, model, opt, {}, keep=3)
    newest = save_checkpoint(tmp_path, 2, model, opt, {}, keep=3)
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-7])  # truncated, as by a full disk
    with pytest.raises(CheckpointError, match="does not match its SHA-256"):
        verify_checkpoint(newest)
    assert latest_good_checkpoint(tmp_path).name == "step-000001"
    assert "skipping" in capsys.readouterr().out
    assert resolve_checkpoint(tmp_path).name == "step-000001"


def test_missing_and_invalid_paths_have_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="holds no valid checkpoint"):
        resolve_checkpoint(tmp_path)
    bad = tmp_path / "checkpoints" / "step-000001"
    bad.mkdir(parents=True)
    (bad / "meta.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        verify_checkpoint(bad)


def test_meta_is_plain_json(tmp_path):
    model, opt = _model_and_opt()
    ckpt = save_checkpoint(tmp_path, 3, model, opt, {"note": "x"})
    meta = json.loads((ckpt / "meta.json").read_text())
    assert set(meta["sha256"]) == {"model.safetensors", "optimizer.safetensors"}


def test_disk_full_leaves_previous_checkpoint_and_latest(tmp_path, monkeypatch):
    import errno

    import synthsight.checkpoint as checkpoint

    model, opt = _model_and_opt()
    save_checkpoint(tmp_path, 1, model, opt, {})

    def full(tensors, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"\0" * 10)  # a partial file, as a full disk leaves
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(checkpoint, "save_file", full)
    with pytest.raises(CheckpointError, match=r"step-000002 .* the disk is full \(No space left on device\); the "
                                              r"previous checkpoint .*step-000001 is intact.*Free some space"):
        save_checkpoint(tmp_path, 2, model, opt, {})
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-000001"]
    assert (root / "latest").read_text() == "step-000001"
    verify_checkpoint(root / "step-000001")


def test_renames_are_made_durable_by_fsyncing_the_directory(tmp_path, monkeypatch):
    import synthsight.checkpoint as checkpoint

    synced = []
    real = checkpoint._fsync_dir
    monkeypatch.setattr(checkpoint, "_fsync_dir", lambda p: (synced.append(p), real(p)))
    model, opt = _model_and_opt()
    save_checkpoint(tmp_path, 1, model, opt, {})
    assert synced.count(tmp_path / "checkpoints") == 2  # after the checkpoint rename and after `latest`


def test_loading_never_unpickles(tmp_path, monkeypatch):
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint load unpickled something")

    model, opt = _model_and_opt()
    ckpt = save_checkpoint(tmp_path, 1, model, opt, {"note": "x"})
    for module, name in ((pickle, "load"), (pickle, "loads"), (torch, "load")):
        monkeypatch.setattr(module, name, refuse)
    other, other_opt = _model_and_opt(1)
    assert load_checkpoint(ckpt, other, other_opt)["note"] == "x"


def test_rewriting_a_step_replaces_it_and_stale_temporaries_are_removed(tmp_path):
    from synthsight.checkpoint import remove_stale_temporaries

    model, opt = _model_and_opt()
    save_checkpoint(tmp_path, 1, model, opt, {"n": 1})
    save_checkpoint(tmp_path, 1, model, opt, {"n": 2})  # e.g. after resuming from an earlier one
    assert verify_checkpoint(tmp_path / "checkpoints" / "step-000001")["n"] == 2
    (tmp_path / "checkpoints" / ".tmp-step-000002-123").mkdir()  # a kill in the middle of a write
    remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step-000001"]


def test_a_checkpoint_missing_its_weights_file_is_refused_and_skipped(tmp_path, capsys):
    model, opt = _model_and_opt()
    save_checkpoint(tmp_path, 1, model, opt, {}, keep=3)
    newest = save_checkpoint(tmp_path, 2, model, opt, {}, keep=3)
    (newest / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors"):
        verify_checkpoint(newest)
    with pytest.raises(CheckpointError):
        load_checkpoint(newest, _model_and_opt(1)[0])
    assert latest_good_checkpoint(tmp_path).name == "step-000001"


def test_a_checkpoint_without_its_sha256_entries_is_refused(tmp_path, capsys):
    model, opt = _model_and_opt()
    save_checkpoint(tmp_path, 1, model, opt, {}, keep=3)
    for step, drop in ((2, ["model.safetensors"]), (3, None)):  # one entry missing; the whole table missing
        ckpt = save_checkpoint(tmp_path, step, model, opt, {}, keep=3)
        meta = json.loads((ckpt / "meta.json").read_text())
        if drop:
            for name in drop:
                del meta["sha256"][name]
        else:
            del meta["sha256"]
        (ckpt / "meta.json").write_text(json.dumps(meta))
        with pytest.raises(CheckpointError, match=r"records no SHA-256 for model.safetensors.*refused"):
            verify_checkpoint(ckpt)
        with pytest.raises(CheckpointError, match="records no SHA-256"):
            load_checkpoint(ckpt, *_model_and_opt(1))
    assert latest_good_checkpoint(tmp_path).name == "step-000001"  # resume and eval fall back to a checked one


def test_non_finite_state_is_never_saved_nor_loaded(tmp_path):
    from safetensors.torch import save_file

    from synthsight.checkpoint import NonFiniteStateError, load_weights, sha256_file

    model, opt = _model_and_opt()
    save_checkpoint(tmp_path, 1, model, opt, {}, keep=1)
    model[1].running_var[3] = float("inf")  # BatchNorm statistics, not a parameter
    with pytest.raises(NonFiniteStateError, match=r"refusing to save checkpoint step-000002: NaN or Inf in 1.running_var"):
        save_checkpoint(tmp_path, 2, model, opt, {}, keep=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000001"]  # keep=1 deleted nothing
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))
    # a checkpoint written with NaN weights (by an older version) verifies, but its weights are refused
    ckpt = tmp_path / "checkpoints" / "step-000001"
    weights = load_weights(ckpt)
    weights["0.weight"][0, 0] = float("nan")
    save_file(weights, str(ckpt / "model.safetensors"))
    meta = json.loads((ckpt / "meta.json").read_text())
    meta["sha256"]["model.safetensors"] = sha256_file(ckpt / "model.safetensors")
    (ckpt / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(NonFiniteStateError, match=r"holds NaN or Inf in 0.weight"):
        load_checkpoint(ckpt, *_model_and_opt(1))


def test_safetensors_write_errors_become_os_errors_and_files_get_the_usual_mode(tmp_path):
    import errno
    import os

    from synthsight.checkpoint import save_tensors

    with pytest.raises(OSError) as info:  # a real safetensors failure (its own exception type), not a simulated one
        save_tensors({"a": torch.zeros(2)}, tmp_path / "missing" / "x.safetensors")
    assert info.value.errno == errno.ENOENT and info.value.filename.endswith("x.safetensors")
    save_tensors({"a": torch.zeros(2)}, tmp_path / "x.safetensors")
    (tmp_path / "plain.txt").write_text("x")
    mode = os.stat(tmp_path / "x.safetensors").st_mode & 0o777
    assert mode == os.stat(tmp_path / "plain.txt").st_mode & 0o777  # safetensors alone leaves 0600
