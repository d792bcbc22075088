import pytest
import torch

from synthsight.config import load_config

TINY = [
    "method=simclr",  # the demo preset trains supcon; most tests exercise the self-supervised path
    "data.families=[dead_leaves/mixed, spectrum/color]", "data.render_size=32", "views.size=16",
    "model.width=8", "method.proj_hidden=32", "method.proj_dim=16", "trainer.batch_size=16",
    "trainer.steps=6", "trainer.warmup_steps=2", "trainer.workers=0", "trainer.log_every=2",
    "trainer.checkpoint_every=3", "trainer.threads=1", "trainer.amp=none", "trainer.device=cpu", "trainer.split=fixed",
    "data.pool=null",  # the demo preset trains on a 1k pool; most tests exercise the stream (test_pool.py the rest)
]


@pytest.fixture
def tiny_config():
    """A config that pretrains in about a second on one CPU thread."""
    def make(*extra: str):
        return load_config("demo", TINY + list(extra))
    return make


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def two_class_npz(path, n=40, size=12, seed=0):
    """An .npz of n RGB images in two classes (class 1: a bright left half), labels 0/1 alternating."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.integers(0, 60, size=(n, size, size, 3), dtype=np.uint8)
    images[labels == 1, :, : size // 2] += 150  # class 1: a bright left half
    np.savez(path, images=images, labels=labels)
    return path


def kill_after_first_checkpoint(monkeypatch, cfg, run_dir) -> None:
    """Pretrain `cfg` into `run_dir` until its first checkpoint is written, then die there as a kill would; the
    folder is left for the caller to inspect and `--resume`."""
    import synthsight.train.loop as loop

    real_save = loop.save_checkpoint

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt("simulated kill after the first checkpoint")

    with monkeypatch.context() as patch:
        patch.setattr(loop, "save_checkpoint", save_then_die)
        with pytest.raises(KeyboardInterrupt):
            loop.pretrain(cfg, run_dir, progress=False)


def assert_resume_is_bit_exact(monkeypatch, cfg, tmp_path) -> None:
    """Pretrain `cfg` straight through, and again killed after its first checkpoint (step 3 of the tiny config) and
    resumed: the final weights must be equal bit for bit."""
    from safetensors.torch import load_file

    from synthsight.checkpoint import list_checkpoints
    from synthsight.train.loop import pretrain

    straight = pretrain(cfg, tmp_path / "a", progress=False)
    kill_after_first_checkpoint(monkeypatch, cfg, tmp_path / "b")
    assert [p.name for p in list_checkpoints(tmp_path / "b")] == ["step-000003"]
    resumed = pretrain(cfg, tmp_path / "b", resume=True, progress=False)
    a = load_file(str(straight.checkpoint / "model.safetensors"))
    b = load_file(str(resumed.checkpoint / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # bit for bit
