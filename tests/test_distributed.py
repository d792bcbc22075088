"""Data parallelism: 2 processes with gloo on CPU against 1 process with the same global batch, and the pieces."""

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from synthsight.augment.rng import PerImageRandom
from synthsight.augment.views import ViewConfig, two_views
from synthsight.checkpoint import list_checkpoints, verify_checkpoint
from synthsight.config import ConfigError
from synthsight.losses.ntxent import nt_xent
from synthsight.methods.byol import BYOL, BYOLConfig
from synthsight.models.backbones import create_backbone
from synthsight.registry import METHODS
from synthsight.train.distributed import (
    CPUSyncBatchNorm, convert_sync_batchnorm, data_parallel, no_sync,
)
from synthsight.train.loop import micro_batch_size, pretrain
from tests.conftest import TINY
from tests.test_methods import _batch, _build, _config, teacher_run  # noqa: F401  (teacher_run: a fixture)

ROOT = Path(__file__).resolve().parents[1]


def _torchrun_pretrain(tmp_path: Path, overrides: list[str], resume: Path | None = None,
                       **env_vars: str) -> subprocess.CompletedProcess:
    """`synthsight pretrain` of the TINY config + overrides in 2 gloo processes into tmp_path/ddp, or `--resume` a
    run folder; each rank records its images in tmp_path."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), **env_vars)
    where = ["--resume", str(resume)] if resume else [*TINY, *overrides, "--out", str(tmp_path / "ddp")]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "tests" / "ddp_worker.py"), str(tmp_path), "pretrain", *where]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _assert_same_checkpoints(a_dir: Path, b_dir: Path, steps: tuple[int, ...]) -> None:
    for step in steps:
        a = load_file(str(a_dir / "checkpoints" / f"step-{step:06d}" / "model.safetensors"))
        b = load_file(str(b_dir / "checkpoints" / f"step-{step:06d}" / "model.safetensors"))
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=f"step {step}: {k}")


def test_two_gloo_processes_match_one_process_and_see_disjoint_images(tiny_config, tmp_path):
    overrides = ["trainer.steps=2", "trainer.checkpoint_every=1", "trainer.keep_checkpoints=0", "trainer.sync_bn=true"]
    proc = _torchrun_pretrain(tmp_path, overrides)
    single = pretrain(tiny_config(*overrides), tmp_path / "single", progress=False)

    # The ranks rendered disjoint halves of each global batch, together exactly the one-process stream.
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0 == list(range(0, 8)) + list(range(16, 24)) and rank1 == list(range(8, 16)) + list(range(24, 32))
    assert not set(rank0) & set(rank1)

    # Only rank 0 wrote; after each step the parameters equal the one-process run's within float tolerance.
    assert [p.name for p in list_checkpoints(tmp_path / "ddp")] == ["step-000001", "step-000002"]
    _assert_same_checkpoints(tmp_path / "ddp", single.run_dir, (1, 2))
    for step in (1, 2):
        assert verify_checkpoint(tmp_path / "ddp" / "checkpoints" / f"step-{step:06d}")["world_size"] == 2
    ddp_log = (tmp_path / "ddp" / "train_log.csv").read_text().splitlines()
    single_log = (single.run_dir / "train_log.csv").read_text().splitlines()
    assert [r.split(",")[1] for r in ddp_log] == [r.split(",")[1] for r in single_log]  # same global loss
    assert "pretrained 2 steps" in proc.stdout and proc.stdout.count("run folder:") == 1  # rank 0 reports


def test_two_gloo_processes_on_the_clock_stop_after_the_same_step(tmp_path):
    # trainer.minutes: rank 0's clock decides when the run ends, so no rank waits for a step the other never takes
    # (rank 1's clock runs 3x fast here: on its own it would stop at a third of the steps)
    _torchrun_pretrain(tmp_path, ["trainer.minutes=0.04", "trainer.steps=100000", "trainer.checkpoint_every=100000"],
                       FAST_CLOCK_RANK="1")
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    (last,) = list_checkpoints(tmp_path / "ddp")
    steps = int(last.name.split("-")[1])
    assert 0 < steps < 100000 and len(rank0) == len(rank1) == steps * 8  # 8 images per rank and step
    assert json.loads((tmp_path / "ddp" / "train_summary.json").read_text())["steps"] == steps


def test_two_gloo_processes_with_accumulation_and_a_momentum_target_match_one_process_and_resume_exactly(
        tiny_config, tmp_path):
    # BYOL: an EMA target outside DDP, BatchNorm in its heads; 2 micro-batches per step (DDP's no_sync, no static
    # graph); each micro-batch of 8 images is split over the 2 processes, and sync_bn normalises over all 8. SGD, as
    # AdamW would turn the rounding noise of a gradient that is zero in exact arithmetic (the projector's last bias,
    # which the predictor's BatchNorm subtracts again) into a full step of either sign.
    overrides = ["method=byol", "method.pred_hidden=32", "trainer.optimizer=sgd", "trainer.lr=0.05",
                 "trainer.accumulate=2", "trainer.steps=2",
                 "trainer.checkpoint_every=1", "trainer.keep_checkpoints=0", "trainer.sync_bn=true"]
    _torchrun_pretrain(tmp_path, overrides)
    single = pretrain(tiny_config(*overrides), tmp_path / "single", progress=False)
    _assert_same_checkpoints(tmp_path / "ddp", single.run_dir, (1, 2))  # target_* tensors included

    # Resumed from step 1 in 2 processes, step 2 comes out bit for bit as in the uninterrupted run.
    shutil.copytree(tmp_path / "ddp", tmp_path / "resumed")
    shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "step-000002")
    _torchrun_pretrain(tmp_path, [], resume=tmp_path / "resumed")
    a = load_file(str(tmp_path / "ddp" / "checkpoints" / "step-000002" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "checkpoints" / "step-000002" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _no_sync_worker(rank: int, init_file: str) -> None:
    """One of 2 gloo ranks: DDP around BYOL with 2 micro-batches against an unwrapped copy on the same images."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)  # the same initial weights on both ranks
        cfg = BYOLConfig(proj_hidden=16, proj_dim=8, pred_hidden=16)
        method = BYOL(create_backbone("smallconv", width=8), cfg, ViewConfig(size=16))
        reference = copy.deepcopy(method)
        model = data_parallel(method, accumulate=2)
        assert isinstance(model, DistributedDataParallel)
        frozen = {f"method.{n}" for n, p in method.named_parameters() if not p.requires_grad}
        assert frozen and set(model.parameters_to_ignore) == frozen  # the momentum target is outside DDP
        trained = [p for p in method.parameters() if p.requires_grad]
        ref_trained = [p for p in reference.parameters() if p.requires_grad]
        images = [torch.rand(4, 3, 20, 20, generator=torch.Generator().manual_seed(10 * rank + i)) for i in (0, 1)]

        def backward(net, i: int) -> None:
            net.training_step(images[i], torch.Generator().manual_seed(i)).loss.backward()

        with no_sync(model):
            backward(model, 0)
        backward(reference, 0)
        for p, r in zip(trained, ref_trained):  # the first micro-batch's gradients stayed on this rank
            torch.testing.assert_close(p.grad, r.grad, rtol=0, atol=0)
        flat = torch.cat([r.grad.flatten() for r in ref_trained])
        both = [torch.empty_like(flat) for _ in range(2)]
        dist.all_gather(both, flat)
        assert not torch.equal(both[0], both[1])  # the ranks' gradients differ, so an average would show

        backward(model, 1)
        backward(reference, 1)
        for p, r in zip(trained, ref_trained):  # now: the mean over ranks of both micro-batches' sums
            expected = r.grad.clone()
            dist.all_reduce(expected)
            torch.testing.assert_close(p.grad, expected / 2, rtol=1e-6, atol=1e-7)
        assert all(p.grad is None for p in method.parameters() if not p.requires_grad)
    finally:
        dist.destroy_process_group()


def test_data_parallel_keeps_micro_batches_local_and_averages_the_sum_once(tmp_path):
    # fork: the 2 ranks start in a second instead of importing torch again (as DataLoader workers do on Linux)
    torch.multiprocessing.start_processes(_no_sync_worker, args=(str(tmp_path / "init"),), nprocs=2,
                                          start_method="fork")


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
    synced = convert_sync_batchnorm(net, torch.device("cpu"))
    assert isinstance(synced[1], CPUSyncBatchNorm) and isinstance(synced[4], CPUSyncBatchNorm)
    assert synced.state_dict().keys() == reference.keys()
    synced.load_state_dict(reference)
    torch.testing.assert_close(synced(x), expected)


@pytest.mark.parametrize("name", METHODS.names())
def test_every_trainable_parameter_gets_a_gradient_in_every_step(name, request):
    # Under torchrun with trainer.accumulate > 1, DDP runs without a static graph and without searching for unused
    # parameters (data_parallel), so a method must use every trainable parameter in each training_step.
    cfg = _config(name, request)
    method = _build(cfg, 0)
    images, labels = _batch(cfg)
    method.training_step(images, torch.Generator().manual_seed(0), labels).loss.backward()
    unused = [n for n, p in method.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, f"{name}: no gradient for {unused}"
