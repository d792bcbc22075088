import pytest
import torch

from synthsight.config import load_config

TINY = [
    "data.families=[dead_leaves/mixed, spectrum/color]", "data.render_size=32", "views.size=16",
    "model.width=8", "method.proj_hidden=32", "method.proj_dim=16", "trainer.batch_size=16",
    "trainer.steps=6", "trainer.warmup_steps=2", "trainer.workers=0", "trainer.log_every=2",
    "trainer.checkpoint_every=3", "trainer.threads=1", "trainer.amp=none", "trainer.device=cpu",
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
