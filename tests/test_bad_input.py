"""The bad-input catalogue (issue 6): each mistake gets a clear message, and finished work survives it.

Every test starts from a finished run folder and checks, after the mistake, that its files are byte-identical.
"""

import errno
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthsight.cli import main
from synthsight.train.checkpoint import verify_checkpoint
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
    import synthsight.train.checkpoint as checkpoint

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
