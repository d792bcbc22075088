"""Contract tests over every registered method (timm's test_models.py pattern): whatever is in METHODS is built
from a tiny config and must lower its loss in one SGD step on a fixed batch, stay finite, round-trip through a
checkpoint exactly, and report the embeddings the collapse alarm watches."""

from __future__ import annotations

import copy

import pytest
import torch

from synthsight.checkpoint import load_checkpoint, save_checkpoint
from synthsight.config import load_config
from synthsight.registry import METHODS
from synthsight.train.build import build_method, build_stream
from synthsight.train.loop import pretrain

# batch 16: MoCo v2's shuffle-BN splits the batch into 8 groups, and BatchNorm over single images says little
BASE = [
    "data.render_size=32", "views.size=16", "model.width=8", "trainer.batch_size=16", "trainer.workers=0",
    "trainer.threads=1", "trainer.amp=none", "trainer.device=cpu",
]
LABELLED = "data.families=[fractal_ifs/svd]"  # the fastest family with categories
VIT = "model.backbone=vit_tiny"  # masked image modelling (needs_vit): patch 4 at views.size=16, a 4x4 grid
UNLABELLED = "data.families=[dead_leaves/mixed, spectrum/color]"
LR = 0.005  # SGD without momentum: small enough to go downhill (DINO's head is steep), large enough to see
MAX_STEPS = 3  # a step must lower the loss; noisy methods get up to this many tries


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    """A tiny SimCLR run, the teacher of `distill`."""
    run = tmp_path_factory.mktemp("teacher") / "run"
    cfg = load_config(None, BASE + [UNLABELLED, "method.name=simclr", "method.proj_hidden=16", "method.proj_dim=8",
                                    "trainer.steps=1", "trainer.warmup_steps=0"])
    pretrain(cfg, run, progress=False)
    return run


def _config(name: str, request):
    overrides = BASE + [LABELLED if METHODS.get(name).needs_labels else UNLABELLED, f"method.name={name}"]
    if METHODS.get(name).needs_vit:
        overrides.append(VIT)
    if name == "distill":
        overrides.append(f"method.teachers=[{request.getfixturevalue('teacher_run')}]")
    return load_config(None, overrides)


def _batch(cfg):
    batch = next(iter(build_stream(cfg)))
    return batch[0], (batch[2] if len(batch) > 2 else None)


def _loss(method, images, labels, trained=None) -> float:
    """The loss with fixed augmentations, measured on a copy so that queues, centres and counters stay as they are.

    With `trained`, the copy takes that method's trainable parameters and keeps everything else (EMA targets,
    queues, centres, counters) as in `method`: what one optimisation step changed through the gradients alone. (A
    queue holding this very batch's keys as negatives would otherwise raise MoCo's loss on a fixed batch.)
    """
    probe = copy.deepcopy(method)
    if trained is not None:
        new = dict(trained.named_parameters())
        with torch.no_grad():
            for n, p in probe.named_parameters():
                if p.requires_grad:
                    p.copy_(new[n])
    torch.manual_seed(0)
    return probe.training_step(images, torch.Generator().manual_seed(0), labels).loss.item()


def _build(cfg, seed: int):
    torch.manual_seed(seed)
    return build_method(cfg)


@pytest.mark.parametrize("name", METHODS.names())
def test_one_step_lowers_the_loss_and_stays_finite(name, request):
    cfg = _config(name, request)
    method = _build(cfg, 0)
    images, labels = _batch(cfg)
    start = copy.deepcopy(method)
    before = _loss(start, images, labels)
    assert torch.isfinite(torch.tensor(before)), f"{name}: loss {before} at initialisation"
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=LR)
    losses = []
    for step in range(MAX_STEPS):
        torch.manual_seed(0)
        out = method.training_step(images, torch.Generator().manual_seed(0), labels)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        method.before_optimizer_step(step, 100)
        opt.step()
        method.after_optimizer_step(step, 100)
        losses.append(_loss(start, images, labels, trained=method))
        if losses[-1] < before:
            break
    assert all(torch.isfinite(p).all() for p in method.parameters()), f"{name}: non-finite weights"
    assert min(losses) < before, f"{name}: loss {before:.5f} -> {losses} after {len(losses)} SGD step(s)"


@pytest.mark.parametrize("name", METHODS.names())
def test_step_output_reports_detached_embeddings(name, request):
    cfg = _config(name, request)
    method = _build(cfg, 0)
    images, labels = _batch(cfg)
    out = method.training_step(images, torch.Generator().manual_seed(0), labels)
    z = out.embeddings
    assert isinstance(z, torch.Tensor), f"{name}: StepOutput.embeddings is not set (the collapse alarm needs it)"
    assert z.ndim == 2 and len(z) >= 2 and not z.requires_grad and torch.isfinite(z).all()
    if out.teacher_probs is not None:
        p = out.teacher_probs
        assert p.ndim == 2 and not p.requires_grad and torch.allclose(p.sum(1), torch.ones(len(p)), atol=1e-3)
    assert all(isinstance(v, float) for v in out.terms.values())


@pytest.mark.parametrize("name", METHODS.names())
def test_checkpoint_round_trip_restores_every_tensor(name, request, tmp_path):
    cfg = _config(name, request)
    method = _build(cfg, 0)
    images, labels = _batch(cfg)
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=LR, momentum=0.9)
    method.training_step(images, torch.Generator().manual_seed(0), labels).loss.backward()
    method.before_optimizer_step(0, 100)
    opt.step()
    method.after_optimizer_step(0, 100)  # moves EMA targets, queues and counters off their initial values
    ckpt = save_checkpoint(tmp_path, 1, method, opt, {"config": cfg.to_dict()})

    fresh = _build(cfg, 1)
    fresh_opt = torch.optim.SGD([p for p in fresh.parameters() if p.requires_grad], lr=LR, momentum=0.9)
    load_checkpoint(ckpt, fresh, fresh_opt)
    saved, loaded = method.state_dict(), fresh.state_dict()
    assert saved.keys() == loaded.keys()
    for key in saved:
        assert torch.equal(saved[key], loaded[key]), f"{name}: {key} differs after loading"
    assert fresh_opt.state_dict()["state"].keys() == opt.state_dict()["state"].keys()
    # everything the next step depends on was in the checkpoint: the restored method computes the same loss
    assert _loss(fresh, images, labels) == pytest.approx(_loss(method, images, labels), rel=1e-5, abs=1e-6)
