"""A pretraining run killed with SIGKILL and resumed with --resume ends exactly where an uninterrupted run ends."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from synthsight.checkpoint import list_checkpoints, verify_checkpoint
from synthsight.cli import main
from synthsight.train.loop import pretrain
from tests.conftest import TINY, kill_after_first_checkpoint

ROOT = Path(__file__).resolve().parents[1]
LONG = ["trainer.steps=120", "trainer.checkpoint_every=10", "trainer.log_every=5", "trainer.keep_checkpoints=3"]


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return load_file(str(ckpt / "model.safetensors"))


def _loss_column(run: Path) -> list[str]:
    return [line.split(",")[1] for line in (run / "train_log.csv").read_text().splitlines()]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_then_resume_matches_an_uninterrupted_run(tiny_config, tmp_path):
    run = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "synthsight", "pretrain", *TINY, *LONG, "--out", str(run)],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    latest = run / "checkpoints" / "latest"
    deadline = time.monotonic() + 120
    while not latest.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)  # as a pre-empted node or the OOM killer would
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, f"the run ended by itself before the kill: {err.decode()[-2000:]}"
    killed_at = latest.read_text()
    assert killed_at != "step-000120", "killed too late to test anything"

    assert main(["pretrain", "--resume", str(run)]) == 0
    straight = pretrain(tiny_config(*LONG), tmp_path / "straight", progress=False)

    a, b = _weights(straight.checkpoint), _weights(run / "checkpoints" / "step-000120")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resuming from {killed_at}"
    assert _loss_column(run) == _loss_column(straight.run_dir)  # the log continues seamlessly too
    for ckpt in list_checkpoints(run):
        verify_checkpoint(ckpt)
    assert (run / "checkpoints" / "latest").read_text() == "step-000120"
    assert not [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]  # no half-written leftovers


def test_accumulation_sees_the_same_global_batches_and_resumes_exactly(tiny_config, tmp_path, monkeypatch):
    import synthsight.train.loop as loop

    seen = []
    real_for_images = loop.PerImageRandom.for_images

    def recording(seed, step, indices, salt="augment"):
        seen.append((step, list(indices)))
        return real_for_images(seed, step, indices, salt)

    monkeypatch.setattr(loop.PerImageRandom, "for_images", staticmethod(recording))
    straight = pretrain(tiny_config("trainer.accumulate=2"), tmp_path / "a", progress=False)
    assert [s for s, _ in seen] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]  # two micro-batches of 8 per step
    assert [i for _, idx in seen[:2] for i in idx] == list(range(16))  # step 0 is global batch 0, as without

    kill_after_first_checkpoint(monkeypatch, tiny_config("trainer.accumulate=2"), tmp_path / "b")
    resumed = pretrain(tiny_config("trainer.accumulate=2"), tmp_path / "b", resume=True, progress=False)
    a, b = _weights(straight.checkpoint), _weights(resumed.checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fp16_loss_scaler_state_is_checkpointed_and_restored(tiny_config, tmp_path, monkeypatch):
    import synthsight.train.loop as loop

    cfg = tiny_config("trainer.amp=fp16")
    straight = pretrain(cfg, tmp_path / "a", progress=False)
    kill_after_first_checkpoint(monkeypatch, cfg, tmp_path / "b")
    assert verify_checkpoint(tmp_path / "b" / "checkpoints" / "step-000003")["scaler"]["scale"] > 0
    resumed = pretrain(cfg, tmp_path / "b", resume=True, progress=False)
    a, b = _weights(straight.checkpoint), _weights(resumed.checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a)


HOLD_LOCK = """
import sys, time
from pathlib import Path
from synthsight.run_lock import run_lock
with run_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_second_writer_is_refused_and_a_dead_holders_lock_is_stale(tmp_path, capsys):
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["pretrain", *TINY, "--out", str(run)]) == 2
        err = capsys.readouterr().err
        assert f"{run} is in use by another synthsight process (pid {holder.pid} on host" in err
        assert err.count("\n") == 1 and "choose another --out" in err
        assert [p.name for p in run.iterdir()] == [".lock"]  # nothing of the refused run was written
    finally:
        holder.send_signal(signal.SIGKILL)  # dies holding the lock, as a crashed run would
        holder.communicate(timeout=30)
    assert (run / ".lock").is_file()  # left behind, but the kernel released the lock with the process
    assert main(["pretrain", *TINY, "--out", str(run)]) == 0
    assert not (run / ".lock").exists()  # released on exit


def test_a_refused_resume_writes_nothing(tiny_config, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    kill_after_first_checkpoint(monkeypatch, tiny_config(), run)
    config = (run / "config.json").read_bytes()
    assert main(["pretrain", "--resume", str(run), "model.width=16"]) == 2  # another architecture
    err = capsys.readouterr().err
    assert "cannot resume from" in err and "step-000003" in err and "model.width: 8 -> 16" in err
    assert (run / "config.json").read_bytes() == config
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.json", "train_log.csv"]
    assert main(["pretrain", "--resume", str(run)]) == 0  # the run still resumes
    capsys.readouterr()
    assert main(["pretrain", "--resume", str(run), "trainer.lr=0.5"]) == 2  # finished: refused, untouched
    assert "already finished 6 of 6 steps" in capsys.readouterr().err
    assert (run / "config.json").read_bytes() == config
    assert main(["verify", str(run)]) == 0


def test_resume_of_a_finished_run_without_provenance_writes_it(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["pretrain", *TINY, "--out", str(run)]) == 0
    config = (run / "config.json").read_bytes()
    (run / "provenance.json").unlink()  # the disk filled up after the last checkpoint
    assert main(["pretrain", "--resume", str(run)]) == 0
    assert "had already finished its 6 steps; wrote its missing provenance.json" in capsys.readouterr().out
    assert (run / "config.json").read_bytes() == config
    assert main(["verify", str(run)]) == 0
    assert main(["pretrain", "--resume", str(run)]) == 2  # now complete: refused as before
