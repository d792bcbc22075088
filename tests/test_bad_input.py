"""The bad-input catalogue (issue 6): each mistake gets a clear message, and finished work survives it.

Every test starts from a finished run folder and checks, after the mistake, that its files are byte-identical.
"""

import errno
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthsight.checkpoint import verify_checkpoint
from synthsight.cli import main
from tests.conftest import TINY

EVAL = ["--device", "cpu", "--k", "3", "--compare", "", "--protocols", "knn"]


def _fingerprint(run: Path) -> dict[str, str]:
    """SHA-256 of what pretraining finished: checkpoints, config, log, summary (eval and report may be rebuilt)."""
    files = [*sorted((run / "checkpoints").iterdir()), *(run / n for n in ("config.json", "train_log.csv",
                                                                             "train_summary.json"))]
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
            for f in files for p in ([f] if f.is_file() else sorted(f.rglob("*")))}


@pytest.fixture
def finished(tmp_path, capsys):
    """A finished pretraining run and a function that asserts it is untouched."""
    run = tmp_path / "run"
    assert main(["pretrain", *TINY, "--out", str(run)]) == 0
    capsys.readouterr()
    before = _fingerprint(run)

    def intact() -> None:
        assert _fingerprint(run) == before
        verify_checkpoint(run / "checkpoints" / "step-000006")

    return run, intact


def _error(capsys) -> str:
    return capsys.readouterr().err


def _folder(root: Path, n: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        for i in range(n):
            (root / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


def test_unknown_config_key_suggests_the_closest(finished, capsys):
    run, intact = finished
    assert main(["pretrain", "--resume", str(run), "trainer.stpes=9"]) == 2
    assert "unknown config key 'trainer.stpes'. Did you mean 'steps'?" in _error(capsys)
    intact()


@pytest.mark.parametrize("override, message", [
    ("trainer.steps=many", "trainer.steps = 'many': expected an integer"),
    ("trainer.steps=0", "trainer.steps = 0: must be >= 1"),
    ("trainer.lr=-0.1", "trainer.lr = -0.1: must be > 0"),
    ("trainer.batch_size=1", "trainer.batch_size = 1: must be >= 2"),
    ("views.grayscale_p=1.5", "views.grayscale_p = 1.5: must be in [0,1]"),
    ("trainer.amp=fp61", "trainer.amp = 'fp61': must be one of bf16, fp16, none. Did you mean 'fp16'?"),
    ("method.temperature=0", "method.temperature = 0.0: must be > 0"),
])
def test_wrong_type_or_out_of_range_value(finished, capsys, tmp_path, override, message):
    run, intact = finished
    assert main(["pretrain", "--resume", str(run), override]) == 2
    assert message in _error(capsys)
    assert main(["pretrain", *TINY, override, "--out", str(tmp_path / "new")]) == 2
    assert message in _error(capsys)
    assert not (tmp_path / "new").exists()
    intact()


def test_global_batch_that_does_not_split_over_accumulation(finished, capsys, tmp_path):
    run, intact = finished
    assert main(["pretrain", *TINY, "trainer.accumulate=3", "--out", str(tmp_path / "new")]) == 2
    assert "trainer.batch_size=16 (the global batch) must split evenly" in _error(capsys)
    assert not (tmp_path / "new").exists()
    intact()


def test_missing_or_empty_data_directory(finished, capsys, tmp_path):
    run, intact = finished
    assert main(["eval", str(run), "--data", str(tmp_path / "nowhere"), *EVAL]) == 2
    err = _error(capsys)
    assert "no such file or directory" in err and "nowhere" in err
    (tmp_path / "empty").mkdir()
    assert main(["eval", str(run), "--data", str(tmp_path / "empty"), *EVAL]) == 2
    assert "is empty; expected one sub-directory per class" in _error(capsys)
    intact()


def test_corrupt_file_in_image_folder_stops_with_its_path_or_is_skipped(finished, capsys, tmp_path):
    run, intact = finished
    folder = _folder(tmp_path / "imgs")
    (folder / "b" / "notes.png").write_text("not an image")
    args = ["eval", str(run), "--data", str(folder), "--test-data", str(folder), *EVAL]
    assert main(args) == 2
    err = _error(capsys)
    assert f"cannot read image {folder / 'b' / 'notes.png'}" in err and "--skip-bad" in err
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        assert main([*args, "--skip-bad"]) == 0
    assert "skipped 1 unreadable train and 1 unreadable test files" in capsys.readouterr().out
    intact()


def test_labels_that_do_not_match_images(finished, capsys, tmp_path):
    run, intact = finished
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "bad.npz", images=rng.integers(0, 256, (10, 8, 8), dtype=np.uint8), labels=np.arange(9) % 2)
    assert main(["eval", str(run), "--data", str(tmp_path / "bad.npz"), *EVAL]) == 2
    assert "images has 10 entries but labels has 9; they must match one to one" in _error(capsys)
    intact()


def test_output_directory_holding_a_different_run(finished, capsys):
    run, intact = finished
    assert main(["pretrain", *TINY, "trainer.lr=0.5", "--out", str(run)]) == 2
    assert "already holds a different run" in _error(capsys)
    assert main(["pretrain", *TINY, "--out", str(run)]) == 2
    assert "already holds this run's checkpoints; pass --resume" in _error(capsys)
    intact()


def test_disk_full_while_writing_a_checkpoint(finished, capsys, tmp_path, monkeypatch):
    import synthsight.checkpoint as checkpoint

    run, intact = finished
    real_save_file = checkpoint.save_file

    def full_after_first_checkpoint(tensors, path, *args, **kwargs):
        if "step-000006" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real_save_file(tensors, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_file", full_after_first_checkpoint)
    new = tmp_path / "new"
    assert main(["pretrain", *TINY, "--out", str(new)]) == 2
    err = _error(capsys)
    assert "could not write checkpoint step-000006" in err and "the disk is full" in err
    assert "step-000003 is intact and `latest` still points to it" in err and "--resume" in err
    assert (new / "checkpoints" / "latest").read_text() == "step-000003"
    verify_checkpoint(new / "checkpoints" / "step-000003")
    monkeypatch.setattr(checkpoint, "save_file", real_save_file)
    assert main(["pretrain", "--resume", str(new)]) == 0  # after freeing space the run finishes
    intact()


def _npz_data(path: Path, n: int = 24) -> Path:
    rng = np.random.default_rng(0)
    np.savez(path, images=rng.integers(0, 256, (n, 12, 12, 3), dtype=np.uint8), labels=np.arange(n) % 3)
    return path


def test_each_evaluation_gets_its_own_folder_and_none_is_overwritten_silently(finished, capsys, tmp_path):
    run, intact = finished
    data = str(_npz_data(tmp_path / "d.npz"))
    args = ["eval", str(run), "--data", data, "--test-data", data, *EVAL]
    assert main(args) == 0  # the first evaluation: RUN/eval, with its analysis, in the run's report
    first = (run / "eval" / "metrics.json").read_bytes()
    assert (run / "eval" / "analysis.json").is_file()
    capsys.readouterr()
    assert main(args) == 0  # the second: its own folder, the first untouched
    out = capsys.readouterr().out
    (second,) = [p for p in run.iterdir() if p.name.startswith("eval-d.npz-knn-")]
    assert f"this one goes to {second}" in out and (second / "metrics.json").is_file()
    assert (second / "report.html").is_file() and (run / "eval" / "metrics.json").read_bytes() == first
    assert main([*args, "--out", str(run / "eval"), "--no-analysis"]) == 2  # an explicit folder: refused
    assert "already holds an earlier evaluation (metrics.json); pass --overwrite" in _error(capsys)
    assert (run / "eval" / "metrics.json").read_bytes() == first
    assert main([*args, "--out", str(run / "eval"), "--no-analysis", "--overwrite"]) == 0
    assert not (run / "eval" / "analysis.json").exists()  # replaced as a whole: no figure of the first one
    assert not list((run / "eval").glob("*.png")) or {p.name for p in (run / "eval").glob("*.png")} == {
        "accuracy.png"}
    assert "No feature analysis in this evaluation" in (run / "report.html").read_text()
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no temporary folder left
    assert main([*args, "--out", str(run), "--overwrite"]) == 2  # the run folder itself is never replaced
    assert "is a run folder" in _error(capsys)
    intact()


def test_eval_and_export_refuse_a_checkpoint_with_non_finite_weights(finished, capsys, tmp_path):
    from safetensors.torch import load_file, save_file

    from synthsight.checkpoint import sha256_file

    run, intact = finished
    ckpt = run / "checkpoints" / "step-000006"
    weights = load_file(str(ckpt / "model.safetensors"))
    key = next(k for k in weights if k.endswith("running_var"))  # the first batch norm's
    weights[key][0] = float("inf")  # as an older version could have saved
    save_file(weights, str(ckpt / "model.safetensors"))
    meta = json.loads((ckpt / "meta.json").read_text())
    meta["sha256"]["model.safetensors"] = sha256_file(ckpt / "model.safetensors")
    (ckpt / "meta.json").write_text(json.dumps(meta))
    data = str(_npz_data(tmp_path / "d.npz"))
    assert main(["eval", str(ckpt), "--data", data, "--test-data", data, *EVAL, "--out", str(tmp_path / "e")]) == 2
    assert f"holds NaN or Inf in {key}" in _error(capsys)
    assert not (tmp_path / "e").exists()
    assert main(["export", str(ckpt), "--format", "safetensors", "--out", str(tmp_path / "x")]) == 2
    assert "holds NaN or Inf" in _error(capsys)


def test_disk_full_in_safetensors_is_the_clear_message(finished, capsys, tmp_path, monkeypatch):
    from safetensors import SafetensorError

    import synthsight.checkpoint as checkpoint

    run, intact = finished
    real_save_file = checkpoint.save_file

    def full(tensors, path, *args, **kwargs):  # what safetensors raises when the disk fills (os error 28)
        if "step-000006" in str(path):
            raise SafetensorError(f'Error while serializing: I/O error: No space left on device (os error 28) at '
                                  f'path "{path}.tmpXyZ"')
        return real_save_file(tensors, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_file", full)
    new = tmp_path / "new"
    assert main(["pretrain", *TINY, "--out", str(new)]) == 2
    err = _error(capsys)
    assert "could not write checkpoint step-000006" in err and "the disk is full" in err and "--resume" in err
    assert (new / "checkpoints" / "latest").read_text() == "step-000003"
    intact()


def test_provenance_is_written_before_optional_pictures(capsys, tmp_path, monkeypatch):
    import synthsight.runs as runs

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "samples.png"))

    monkeypatch.setattr(runs, "save_grid", full)
    run = tmp_path / "run"
    assert main(["pretrain", *TINY, "--out", str(run)]) == 2
    err = _error(capsys).splitlines()[-1]  # after the progress bar
    assert err.startswith("synthsight pretrain: error: the disk is full: could not write") and "samples.png" in err
    assert (run / "provenance.json").is_file() and (run / "train_summary.json").is_file()
    monkeypatch.undo()
    assert main(["verify", str(run)]) == 0


def test_corrupt_config_json_on_resume_is_named(finished, capsys):
    run, _ = finished
    (run / "config.json").write_text('{"trainer": {"steps": 6,')
    assert main(["pretrain", "--resume", str(run)]) == 2
    err = _error(capsys)
    assert f"{run / 'config.json'} is corrupt or unreadable" in err and err.count("\n") == 1


def test_verify_of_json_that_is_not_an_object(tmp_path, capsys):
    (tmp_path / "provenance.json").write_text("[1, 2, 3]")
    assert main(["verify", str(tmp_path)]) == 2
    assert "holds a JSON list, not a synthsight provenance record" in _error(capsys)


def test_out_on_an_existing_file_or_a_read_only_folder_is_one_line(tmp_path, capsys, monkeypatch):
    import os

    (tmp_path / "afile").write_text("x")
    for command in (["pretrain", *TINY], ["generate", "--family", "spectrum", "--n", "2"]):
        assert main([*command, "--out", str(tmp_path / "afile")]) == 2
        err = _error(capsys)
        assert "is an existing file, not a folder" in err and err.count("\n") == 1
        assert main([*command, "--out", str(tmp_path / "afile" / "run")]) == 2
        assert "is a file, so no folder can be created there" in _error(capsys)
    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path / "ro")  # as for a non-root user
    assert main(["pretrain", *TINY, "--out", str(tmp_path / "ro" / "run")]) == 2
    err = _error(capsys)
    assert f"{tmp_path / 'ro'} is read-only" in err and err.count("\n") == 1
    assert not (tmp_path / "ro" / "run").exists()


def test_unknown_device_and_huge_sizes_name_the_key(capsys, tmp_path):
    assert main(["pretrain", *TINY, "trainer.device=tpu", "--out", str(tmp_path / "a")]) == 2
    assert "trainer.device = 'tpu': must be one of auto, cpu, cuda, cuda:N" in _error(capsys)
    assert main(["generate", "--family", "spectrum", "--size", "5000", "--out", str(tmp_path / "g")]) == 2
    assert "--size 5000: must be in 1..4096" in _error(capsys)
    assert not (tmp_path / "a").exists() and not (tmp_path / "g").exists()
