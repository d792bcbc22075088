"""Data parallelism: 2 processes with gloo on CPU against 1 process with the same global batch, and the pieces."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from synthsight.augment.rng import PerImageRandom
from synthsight.augment.views import ViewConfig, two_views
from synthsight.config import ConfigError
from synthsight.losses.ntxent import nt_xent
from synthsight.train.checkpoint import list_checkpoints, verify_checkpoint
from synthsight.train.distributed import SyncBatchNorm, convert_sync_batchnorm
from synthsight.train.loop import micro_batch_size, pretrain
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


def test_two_gloo_processes_match_one_process_and_see_disjoint_images(tiny_config, tmp_path):
    overrides = ["trainer.steps=2", "trainer.checkpoint_every=1", "trainer.keep_checkpoints=0", "trainer.sync_bn=true"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "tests" / "ddp_worker.py"), str(tmp_path), "pretrain", *TINY, *overrides,
           "--out", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    single = pretrain(tiny_config(*overrides), tmp_path / "single", progress=False)

    # The ranks rendered disjoint halves of each global batch, together exactly the one-process stream.
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0 == list(range(0, 8)) + list(range(16, 24)) and rank1 == list(range(8, 16)) + list(range(24, 32))
    assert not set(rank0) & set(rank1)

    # Only rank 0 wrote; after each step the parameters equal the one-process run's within float tolerance.
    assert [p.name for p in list_checkpoints(tmp_path / "ddp")] == ["step-000001", "step-000002"]
    for step in (1, 2):
        a = load_file(str(tmp_path / "ddp" / "checkpoints" / f"step-{step:06d}" / "model.safetensors"))
        b = load_file(str(single.run_dir / "checkpoints" / f"step-{step:06d}" / "model.safetensors"))
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=f"step {step}: {k}")
        assert verify_checkpoint(tmp_path / "ddp" / "checkpoints" / f"step-{step:06d}")["world_size"] == 2
    ddp_log = (tmp_path / "ddp" / "train_log.csv").read_text().splitlines()
    single_log = (single.run_dir / "train_log.csv").read_text().splitlines()
    assert [r.split(",")[1] for r in ddp_log] == [r.split(",")[1] for r in single_log]  # same global loss
    assert "pretrained 2 steps" in proc.stdout and proc.stdout.count("run folder:") == 1  # rank 0 reports


def test_nt_xent_with_gathered_negatives_splits_the_global_loss_and_gradient():
    torch.manual_seed(0)
    z1, z2 = torch.randn(8, 16, requires_grad=True), torch.randn(8, 16, requires_grad=True)
    full = nt_xent(z1, z2, 0.3)
    (g1_full, g2_full) = torch.autograd.grad(full, (z1, z2))
    # Two "ranks" of 4 pairs each: local anchors, all 16 pairs as candidates; the mean of their losses is the loss.
    parts = [nt_xent(z1[r * 4:(r + 1) * 4], z2[r * 4:(r + 1) * 4], 0.3, z1, z2, offset=r * 4) for r in (0, 1)]
    split = (parts[0] + parts[1]) / 2
    torch.testing.assert_close(split, full)
    (g1, g2) = torch.autograd.grad(split, (z1, z2))
    torch.testing.assert_close(g1, g1_full)
    torch.testing.assert_close(g2, g2_full)
    with pytest.raises(ValueError, match="offset"):
        nt_xent(z1[:4], z2[:4], 0.3, z1, z2, offset=6)


def test_augmentation_of_an_image_does_not_depend_on_its_batch():
    images = torch.rand(6, 3, 20, 20)
    cfg = ViewConfig(size=12)
    whole = two_views(images, PerImageRandom.for_images(0, 5, range(100, 106)), cfg)
    halves = [two_views(images[i:i + 3], PerImageRandom.for_images(0, 5, range(100 + i, 103 + i)), cfg) for i in (0, 3)]
    for v in (0, 1):
        torch.testing.assert_close(torch.cat([halves[0][v], halves[1][v]]), whole[v])
    other_step = two_views(images, PerImageRandom.for_images(0, 6, range(100, 106)), cfg)
    assert not torch.equal(other_step[0], whole[0])


def test_micro_batch_size_splits_the_global_batch():
    assert micro_batch_size(256, 4, 2) == 32
    with pytest.raises(ConfigError, match=r"trainer.batch_size=100 .* multiple of 8"):
        micro_batch_size(100, 4, 2)


def test_sync_batchnorm_keeps_state_and_acts_as_batchnorm_in_one_process():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2), nn.BatchNorm1d(2))
    net(torch.randn(4, 3, 6, 6))
    reference = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(5, 3, 6, 6)
    expected = net(x)
    net.load_state_dict(reference)
    synced = convert_sync_batchnorm(net)
    assert isinstance(synced[1], SyncBatchNorm) and isinstance(synced[4], SyncBatchNorm)
    assert synced.state_dict().keys() == reference.keys()
    synced.load_state_dict(reference)
    torch.testing.assert_close(synced(x), expected)
