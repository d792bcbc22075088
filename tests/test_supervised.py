"""Methods trained on the generators' class labels (supcon, ce), their losses, MixUp, and labelled streams."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from synthsight.augment.mixup import mixup, sample_mixup
from synthsight.augment.rng import PerImageRandom
from synthsight.checkpoint import list_checkpoints, verify_checkpoint
from synthsight.config import load_config
from synthsight.generators import create_generator
from synthsight.generators.stream import SyntheticStream
from synthsight.losses.ce import smooth_one_hot, soft_cross_entropy
from synthsight.losses.ntxent import nt_xent
from synthsight.losses.supcon import supcon_loss
from synthsight.train.build import build_method, build_optimizer, build_stream
from synthsight.train.loop import pretrain

TINY = [
    "data.render_size=32", "views.size=16", "model.width=8", "trainer.batch_size=8", "trainer.steps=2",
    "trainer.warmup_steps=1", "trainer.workers=0", "trainer.log_every=1", "trainer.checkpoint_every=1",
    "trainer.threads=1", "trainer.amp=none", "trainer.device=cpu",
]


def tiny(method: str, *extra: str, families: str = "[fractal_ifs/fractaldb]"):
    return load_config(None, TINY + [f"method.name={method}", f"data.families={families}", *extra])


# --- losses --------------------------------------------------------------------------------------------------


def test_supcon_loss_prefers_embeddings_grouped_by_class():
    torch.manual_seed(0)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    centres = torch.eye(16)[:4] * 5
    grouped = centres[labels] + 0.01 * torch.randn(8, 16)
    shuffled = grouped[torch.tensor([0, 2, 4, 6, 1, 3, 5, 7])]  # every pair of images now spans two classes
    good = supcon_loss(grouped, grouped + 0.01 * torch.randn(8, 16), labels, 0.1)
    bad = supcon_loss(shuffled, shuffled + 0.01 * torch.randn(8, 16), labels, 0.1)
    assert torch.isfinite(good) and good < bad


def test_supcon_with_one_class_per_image_is_nt_xent():
    z1, z2 = torch.randn(6, 8), torch.randn(6, 8)
    assert torch.allclose(supcon_loss(z1, z2, torch.arange(6), 0.2), nt_xent(z1, z2, 0.2), atol=1e-6)


def test_supcon_unlabelled_images_have_only_their_own_view_as_positive():
    """Label -1 = no class (dead leaves in a mixed stream, real images): all -1 is NT-Xent, and two unlabelled
    images are never each other's positives (the same loss as giving each a class of its own)."""
    z1, z2 = torch.randn(6, 8), torch.randn(6, 8)
    assert torch.allclose(supcon_loss(z1, z2, torch.full((6,), -1), 0.2), nt_xent(z1, z2, 0.2), atol=1e-6)
    mixed = torch.tensor([-1, 4, -1, 4, -1, 7])
    unique = torch.tensor([100, 4, 101, 4, 102, 7])
    assert torch.allclose(supcon_loss(z1, z2, mixed, 0.1), supcon_loss(z1, z2, unique, 0.1), atol=1e-6)
    halves = [supcon_loss(z1[s:s + 3], z2[s:s + 3], mixed[s:s + 3], 0.1, z1, z2, mixed, offset=s) for s in (0, 3)]
    assert torch.allclose(sum(halves) / 2, supcon_loss(z1, z2, mixed, 0.1), atol=1e-6)


def test_supcon_gathered_batch_equals_one_process_loss():
    torch.manual_seed(1)
    z1, z2, labels = torch.randn(8, 5), torch.randn(8, 5), torch.tensor([0, 1, 0, 2, 1, 1, 3, 0])
    whole = supcon_loss(z1, z2, labels, 0.1)
    halves = [supcon_loss(z1[s:s + 4], z2[s:s + 4], labels[s:s + 4], 0.1, z1, z2, labels, offset=s) for s in (0, 4)]
    assert torch.allclose(whole, torch.stack(halves).mean(), atol=1e-6)
    with pytest.raises(ValueError, match="all_labels"):
        supcon_loss(z1, z2, labels, 0.1, all_z1=z1, all_z2=z2)


def test_smoothed_targets_and_soft_cross_entropy():
    t = smooth_one_hot(torch.tensor([2, 0]), 4, smoothing=0.2)
    assert torch.allclose(t.sum(1), torch.ones(2)) and t[0, 2] == pytest.approx(0.85) and t[0, 0] == pytest.approx(0.05)
    logits = torch.randn(2, 4)
    hard = smooth_one_hot(torch.tensor([2, 0]), 4)
    assert torch.allclose(soft_cross_entropy(logits, hard), F.cross_entropy(logits, torch.tensor([2, 0])))
    with pytest.raises(ValueError, match="0..3"):
        smooth_one_hot(torch.tensor([4]), 4)


# --- MixUp ---------------------------------------------------------------------------------------------------


def test_mixup_mixes_images_and_targets_with_the_same_weights():
    images = torch.rand(6, 3, 4, 4)
    targets = smooth_one_hot(torch.arange(6), 6)
    lam, partner = sample_mixup(torch.Generator().manual_seed(0), 6, alpha=1.0)
    assert sorted(partner.tolist()) == list(range(6)) and ((lam >= 0) & (lam <= 1)).all()
    mixed, mixed_t = mixup(images, targets, lam, partner)
    for i in range(6):
        j, w = int(partner[i]), float(lam[i])
        assert torch.allclose(mixed[i], w * images[i] + (1 - w) * images[j])
        expected = torch.zeros(6)
        expected[i] += w
        expected[j] += 1 - w
        assert torch.allclose(mixed_t[i], expected)
    assert torch.allclose(mixed_t.sum(1), torch.ones(6))


def test_mixup_weights_follow_beta_and_per_image_randomness():
    small = sample_mixup(torch.Generator().manual_seed(0), 4000, alpha=0.1)[0]
    assert ((small < 0.05) | (small > 0.95)).float().mean() > 0.6  # Beta(0.1, 0.1): mostly near 0 or 1
    uniform = sample_mixup(torch.Generator().manual_seed(0), 4000, alpha=1.0)[0]
    assert abs(uniform.mean() - 0.5) < 0.03 and abs(uniform.var() - 1 / 12) < 0.01
    a = sample_mixup(PerImageRandom.for_images(0, 3, [10, 11, 12]), 3, 0.4)
    b = sample_mixup(PerImageRandom.for_images(0, 3, [10, 11, 12]), 3, 0.4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="alpha"):
        sample_mixup(torch.Generator(), 3, 0.0)


# --- methods -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [[], ["method.mixup_alpha=0.4"]], ids=["plain", "mixup"])
def test_ce_steps_lower_the_loss_on_a_fixed_batch(extra):
    cfg = tiny("ce", "trainer.lr=0.01", *extra)
    torch.manual_seed(0)
    method = build_method(cfg)
    assert method.classifier.out_features == 1000
    opt = build_optimizer(cfg, method)
    images, _, labels = next(iter(build_stream(cfg)))

    def step():
        return method.training_step(images, torch.Generator().manual_seed(0), labels)

    first = step()
    assert first.embeddings is not None and first.embeddings.shape == (8, method.backbone.num_features)
    assert not first.embeddings.requires_grad
    before = first.loss.item()
    for _ in range(5):
        opt.zero_grad()
        step().loss.backward()
        opt.step()
    assert step().loss.item() < before


def test_supcon_step_gives_embeddings_and_treats_missing_labels_as_unlabelled():
    cfg = tiny("supcon", "method.proj_hidden=16", "method.proj_dim=8")
    method = build_method(cfg)
    images, _, labels = next(iter(build_stream(cfg)))
    out = method.training_step(images, torch.Generator().manual_seed(0), labels)
    assert torch.isfinite(out.loss) and out.embeddings.shape == (8, 8) and "supcon" in out.terms
    none = method.training_step(images, torch.Generator().manual_seed(0)).loss  # real images: no labels
    unlabelled = method.training_step(images, torch.Generator().manual_seed(0), torch.full_like(labels, -1)).loss
    one_class = method.training_step(images, torch.Generator().manual_seed(0), torch.zeros_like(labels)).loss
    assert torch.allclose(none, unlabelled) and not torch.allclose(none, one_class)


def test_pretrain_ce_end_to_end(tmp_path):
    result = pretrain(tiny("ce", "method.mixup_alpha=0.2"), tmp_path / "run", progress=False)
    assert result.steps == 2 and torch.isfinite(torch.tensor(result.final_loss))
    for ckpt in list_checkpoints(tmp_path / "run"):
        verify_checkpoint(ckpt)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["method"]["name"] == "ce"


def test_unlabelled_family_is_refused_clearly_by_ce(tmp_path):
    cfg = tiny("ce", families="[fractal_ifs/svd, dead_leaves/mixed]")
    with pytest.raises(ValueError, match=r"dead_leaves/mixed has no categories.*fractal_ifs, contours, programs"):
        pretrain(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # refused before the run folder is made


def test_supcon_trains_on_a_mix_of_labelled_and_unlabelled_families(tmp_path):
    """The hybrid: dead leaves (no categories) get label -1 in the stream, fractals their classes."""
    cfg = tiny("supcon", "method.proj_hidden=16", "method.proj_dim=8", families="[fractal_ifs/svd, dead_leaves/mixed]")
    stream = build_stream(cfg)
    images, indices, labels = next(iter(stream))
    families = torch.tensor([stream.family_of(int(i)) for i in indices])
    assert set(families.tolist()) == {0, 1}
    assert ((labels == -1) == (families == 1)).all() and (labels[families == 0] >= 0).all()
    result = pretrain(cfg, tmp_path / "run", progress=False)
    assert result.steps == 2 and torch.isfinite(torch.tensor(result.final_loss))


@pytest.mark.parametrize("preset", ["supervised_fractals", "supcon_cpu"])
def test_presets_build(preset):
    cfg = load_config(preset, ["model.width=8"])
    method = build_method(cfg)
    assert method.needs_labels and build_stream(cfg, num_batches=0).num_classes >= 1000


# --- labelled streams ----------------------------------------------------------------------------------------


def test_stream_labels_are_offset_per_family_and_match_the_generators():
    gens = [create_generator("fractal_ifs", "svd", 16), create_generator("contours", "rcdb", 16)]
    stream = SyntheticStream(gens, seed=3, batch_size=12, with_labels=True)
    assert stream.label_offsets == [0, 1000] and stream.num_classes == 2000
    images, indices, labels = next(iter(stream))
    assert labels.dtype == torch.int64 and labels.shape == (12,)
    families = [stream.family_of(int(i)) for i in indices]
    assert set(families) == {0, 1}  # both families present in this batch
    for f, gen in enumerate(gens):
        rows = [k for k, fam in enumerate(families) if fam == f]
        own_images, own_labels = gen.generate_with_labels([int(indices[k]) for k in rows], seed=3)
        assert torch.equal(labels[rows], own_labels + stream.label_offsets[f])
        assert torch.allclose(images[rows], own_images)
    assert ((labels >= 0) & (labels < stream.num_classes)).all()


def test_stream_without_labels_yields_pairs_and_unlabelled_family_raises():
    gens = [create_generator("fractal_ifs", "svd", 16), create_generator("spectrum", None, 16)]
    assert len(next(iter(SyntheticStream(gens, seed=0, batch_size=2)))) == 2
    with pytest.raises(ValueError, match="spectrum/.* has no categories"):
        SyntheticStream(gens, seed=0, batch_size=2, with_labels=True)
