"""Masked image modelling (MAE, data2vec): masking, the losses at hidden patches, the encoder that sees only
visible patches, the data2vec teacher, sin-cos positions, ViT pooling, and the CPU attention kernel."""

from __future__ import annotations

import pytest
import torch

from synthsight.augment.ops import random_resized_crop
from synthsight.augment.rng import PerImageRandom
from synthsight.augment.views import ViewConfig
from synthsight.config import ConfigError, load_config
from synthsight.losses.mim import (
    cls_targets, layer_average_targets, masked_pixel_loss, masked_regression_loss, patchify,
)
from synthsight.methods.data2vec import Data2Vec, Data2VecConfig
from synthsight.methods.mae import MAE, MAEConfig, one_view
from synthsight.methods.masking import embed_patches, encode_tokens, random_patch_mask, take_tokens, visible_count
from synthsight.methods.momentum import cosine_momentum
from synthsight.models.backbones import create_backbone
from synthsight.models.mim_decoder import sincos_2d
from synthsight.models.preprocess import normalize_images

VIEWS = ViewConfig(size=16)  # patch 4: a 4x4 grid of 16 patches


def vit(seed: int = 0, **kw):
    torch.manual_seed(seed)
    return create_backbone("vit_tiny", image_size=16, patch_size=4, **kw)


def images(n: int = 6, size: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------------ masking


@pytest.mark.parametrize("ratio", [0.5, 0.6, 0.75, 0.9])
def test_mask_hides_exactly_the_requested_fraction(ratio):
    n = 64
    m = random_patch_mask(torch.Generator().manual_seed(0), 8, n, ratio)
    v = int(n * (1 - ratio))
    assert m.keep.shape == (8, v) and m.restore.shape == (8, n) and m.mask.dtype == torch.bool
    assert (m.mask.sum(dim=1) == n - v).all()
    for b in range(8):  # the visible patches are exactly the unmasked ones, each once
        assert sorted(m.keep[b].tolist()) == torch.nonzero(~m.mask[b]).flatten().tolist()
    assert len({tuple(row) for row in m.mask.tolist()}) > 1  # images get their own masks


def test_unshuffling_restores_image_order():
    b, n, d = 4, 16, 5
    m = random_patch_mask(torch.Generator().manual_seed(3), b, n, 0.75)
    x = torch.randn(b, n, d)
    filled = torch.cat([take_tokens(x, m.keep), torch.full((b, n - m.keep.shape[1], d), 7.0)], dim=1)
    restored = take_tokens(filled, m.restore)  # what the decoder does with its mask tokens
    assert torch.equal(restored[~m.mask], x[~m.mask])  # every visible patch back at its own position
    assert (restored[m.mask] == 7.0).all()  # and a mask token at every hidden one


def test_a_mask_depends_on_the_image_not_on_the_batch_it_is_in():
    a = random_patch_mask(PerImageRandom.for_images(0, 5, [10, 11, 12]), 3, 16, 0.75)
    b = random_patch_mask(PerImageRandom.for_images(0, 5, [11, 12]), 2, 16, 0.75)
    assert torch.equal(a.mask[1:], b.mask)


def test_a_ratio_that_leaves_no_patch_is_refused():
    assert visible_count(64, 0.75) == 16
    for ratio in (0.0, 0.999):
        with pytest.raises(ValueError, match="mask_ratio"):
            visible_count(16, ratio)


# ------------------------------------------------------------------------------------------------- losses


def test_patchify_lays_out_row_major_patches():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    p = patchify(x, 4)
    assert p.shape == (2, 4, 48)
    # patch 1 is row 0, column 1: pixels [0:4, 4:8], flattened as (row, column, channel)
    assert torch.equal(p[1, 1], x[1, :, 0:4, 4:8].permute(1, 2, 0).flatten())
    with pytest.raises(ValueError, match="multiple"):
        patchify(torch.zeros(1, 3, 10, 10), 4)


@pytest.mark.parametrize("loss", ["pixel", "mse", "smooth_l1"])
def test_the_loss_ignores_visible_patches(loss):
    def value(pred, target, mask):
        if loss == "pixel":
            return masked_pixel_loss(pred, target, mask)
        return masked_regression_loss(pred, target, mask, loss)

    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 8, 12, generator=g), torch.randn(2, 8, 12, generator=g)
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[:, ::2] = True  # even patches hidden
    before = value(pred, target, mask)
    visible_changed = target.clone()
    visible_changed[:, 1] += 5 * torch.randn(2, 12, generator=g)
    assert value(pred, visible_changed, mask).item() == pytest.approx(before.item(), abs=1e-6)
    hidden_changed = target.clone()
    hidden_changed[:, 0] += 5 * torch.randn(2, 12, generator=g)
    assert abs(value(pred, hidden_changed, mask).item() - before.item()) > 1e-3


def test_normalised_pixel_targets_ignore_each_patchs_brightness_and_contrast():
    g = torch.Generator().manual_seed(1)
    pred, target = torch.randn(2, 4, 12, generator=g), torch.randn(2, 4, 12, generator=g)
    mask = torch.ones(2, 4, dtype=torch.bool)
    affine = 3.0 * target + torch.randn(2, 4, 1, generator=g)  # per patch: new contrast and brightness
    assert masked_pixel_loss(pred, affine, mask).item() == pytest.approx(masked_pixel_loss(pred, target, mask).item(),
                                                                        rel=1e-4)
    assert masked_pixel_loss(target, target, mask, norm_pix=False).item() == 0.0


def test_layer_targets_are_the_mean_of_instance_normalised_blocks():
    g = torch.Generator().manual_seed(2)
    layers = [3 * torch.randn(2, 16, 8, generator=g) + 5, torch.randn(2, 16, 8, generator=g)]
    one = layer_average_targets(layers[:1])
    assert one.mean(dim=1).abs().max() < 1e-5  # every channel: zero mean over one image's tokens
    assert torch.allclose(one.var(dim=1, unbiased=False), torch.ones(2, 8), atol=1e-3)  # and unit variance
    both = layer_average_targets(layers)
    assert torch.allclose(both, (one + layer_average_targets(layers[1:])) / 2, atol=1e-6)
    ln = layer_average_targets(layers, layer_norm=True)
    assert ln.mean(dim=-1).abs().max() < 1e-5


# ------------------------------------------------------------------------------------------------ methods


def test_the_encoder_sees_only_the_visible_patches():
    net = vit().eval()
    x = images(2)
    m = random_patch_mask(torch.Generator().manual_seed(0), 2, 16, 0.75)

    def encoded(img):
        prefix, patches, grid = embed_patches(net, normalize_images(img))
        assert grid == (4, 4) and patches.shape == (2, 16, 192)
        tokens, _ = encode_tokens(net, torch.cat([prefix, take_tokens(patches, m.keep)], dim=1))
        return tokens

    before = encoded(x)
    assert before.shape == (2, 1 + 4, 192)
    hidden, visible = int(torch.nonzero(m.mask[0])[0]), int(m.keep[0, 0])
    for patch, same in ((hidden, True), (visible, False)):
        changed = x.clone()
        r, c = divmod(patch, 4)
        changed[0, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4] = torch.rand(3, 4, 4)
        assert torch.allclose(encoded(changed), before, atol=1e-6) == same


def test_the_encoder_on_every_patch_is_the_backbone_itself():
    net = vit(pool="avg").eval()
    x = normalize_images(images(2))
    prefix, patches, _ = embed_patches(net, x)
    tokens, blocks = encode_tokens(net, torch.cat([prefix, patches], dim=1), collect=3)
    assert len(blocks) == 3 and torch.allclose(net.norm(blocks[-1]), tokens)
    with torch.no_grad():
        torch.testing.assert_close(net(x), tokens[:, 1:].mean(dim=1), rtol=1e-5, atol=1e-5)


def test_mae_positions_are_fixed_sincos_and_the_decoder_is_separate():
    method = MAE(vit(), MAEConfig(decoder_dim=32, decoder_depth=1, decoder_heads=2), views=VIEWS)
    pos = method.backbone.pos_embed
    assert not pos.requires_grad and torch.equal(pos[0, 0], torch.zeros(192))
    torch.testing.assert_close(pos[0, 1:], sincos_2d(192, 4, 4))
    assert len({tuple(r) for r in sincos_2d(16, 4, 4).tolist()}) == 16  # every position its own code
    out = method.training_step(images(4, size=24), torch.Generator().manual_seed(0))
    out.loss.backward()
    assert pos.grad is None and method.decoder.mask_token.grad is not None
    assert method.backbone.blocks[0].attn.qkv.weight.grad is not None
    assert out.embeddings.shape == (4, 192) and not out.embeddings.requires_grad


def test_data2vec_teacher_moves_only_by_ema_and_its_targets_carry_no_gradient():
    method = Data2Vec(vit(), Data2VecConfig(top_k_blocks=3, decoder_dim=32, decoder_depth=1, decoder_heads=2,
                                            momentum=0.9), views=VIEWS)
    teacher = method.teacher_backbone
    assert all(not p.requires_grad for p in teacher.parameters())
    x = normalize_images(images(4))
    target = method.targets(x)[0]
    assert target.shape == (4, 16, 192) and not target.requires_grad and target.grad_fn is None
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.1)
    old = {n: p.clone() for n, p in teacher.named_parameters()}
    method.training_step(images(4), torch.Generator().manual_seed(0)).loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    opt.step()  # the optimiser moves the student only
    assert all(torch.equal(p, old[n]) for n, p in teacher.named_parameters())
    student = dict(method.backbone.named_parameters())
    assert not torch.equal(student["blocks.0.attn.qkv.weight"], old["blocks.0.attn.qkv.weight"])
    method.after_optimizer_step(3, 10)
    m = cosine_momentum(3, 10, base=0.9)
    for n, p in teacher.named_parameters():  # teacher <- m x teacher + (1 - m) x student, nothing else
        torch.testing.assert_close(p, m * old[n] + (1 - m) * student[n].detach(), rtol=1e-5, atol=1e-6)


def d2v(**kw) -> Data2Vec:
    return Data2Vec(vit(), Data2VecConfig(top_k_blocks=3, decoder_dim=32, decoder_depth=1, decoder_heads=2, **kw),
                    views=VIEWS)


def student_pass(method: Data2Vec, g: torch.Generator):
    """The step's student side redone by hand with the same randomness: one view of images(4), its patch mask, and
    the tokens of the CLS + visible patches; (x, tokens, mask, grid)."""
    x = method.network_input(one_view(images(4), g, VIEWS))
    prefix, patches, grid = embed_patches(method.backbone, x)
    mask = random_patch_mask(g, len(x), patches.shape[1], 0.75)
    tokens, _ = encode_tokens(method.backbone, torch.cat([prefix, take_tokens(patches, mask.keep)], dim=1))
    return x, tokens, mask, grid


def test_cls_targets_are_the_patch_mean_or_the_teachers_normalised_cls_token():
    method = d2v(cls_weight=1.0, layer_norm_targets=True)
    x = normalize_images(images(4))
    target, cls, _ = method.targets(x)
    torch.testing.assert_close(cls, target.mean(dim=1))  # data2vec 2.0: the mean of the patch targets
    assert cls.abs().mean() > 1e-3  # not the zero that instance-normalised targets alone would average to
    method = d2v(cls_weight=1.0, cls_target="teacher_cls")
    cls = method.targets(x).cls
    prefix, patches, _ = embed_patches(method.teacher_backbone, x)
    _, blocks = encode_tokens(method.teacher_backbone, torch.cat([prefix, patches], dim=1), 3)
    expected = torch.nn.functional.layer_norm(torch.stack([b[:, 0] for b in blocks]).mean(0), (192,))
    torch.testing.assert_close(cls, expected)
    assert not cls.requires_grad and d2v().targets(x)[1] is None  # no CLS target without the CLS loss
    with pytest.raises(ValueError, match="patch_mean or teacher_cls"):
        cls_targets("cls", target, [])


@pytest.mark.parametrize("kind", ["patch_mean", "teacher_cls"])
def test_data2vec_cls_loss_regresses_the_students_cls_output_on_the_masked_view(kind):
    """loss = masked loss + cls_weight x MSE(student CLS output of the masked view, CLS target), recomputed here
    step by step with the same randomness."""
    kw = dict(cls_target=kind, layer_norm_targets=True)
    method, plain = d2v(cls_weight=0.5, **kw), d2v(**kw)
    out = method.training_step(images(4), torch.Generator().manual_seed(0))
    base = plain.training_step(images(4), torch.Generator().manual_seed(0))
    x, tokens, _, _ = student_pass(method, torch.Generator().manual_seed(0))
    expected = (tokens[:, 0].float() - method.targets(x)[1]).pow(2).mean()
    torch.testing.assert_close(torch.tensor(out.terms["cls"]), expected.detach())
    torch.testing.assert_close(out.loss, base.loss + 0.5 * expected, rtol=1e-5, atol=1e-6)
    out.loss.backward()
    assert method.backbone.cls_token.grad is not None and all(
        p.grad is None for p in method.teacher_backbone.parameters())


def assert_teacher_head_follows_by_ema(method: Data2Vec) -> None:
    """After an optimiser step (gradients present) and after_optimizer_step, the teacher head is m x its old self +
    (1 - m) x the student head, nothing else."""
    old = {n: q.clone() for n, q in method.teacher_head.named_parameters()}
    torch.optim.SGD([q for q in method.parameters() if q.requires_grad], lr=0.1).step()
    method.after_optimizer_step(3, 10)
    m = cosine_momentum(3, 10, base=0.996)
    student = dict(method.head.named_parameters())
    for n, q in method.teacher_head.named_parameters():
        torch.testing.assert_close(q, m * old[n] + (1 - m) * student[n].detach())


def test_prototype_cls_loss_is_ibots_cross_entropy_to_the_centred_sharpened_teacher():
    """cls_target=prototypes: loss = masked loss + w x CE(softmax(student head(CLS) / 0.1), softmax((teacher head(
    teacher's final CLS) - centre) / 0.04)), recomputed here; the centre then moves towards the teacher's mean."""
    method, plain = d2v(cls_weight=0.5, cls_target="prototypes", cls_prototypes=16), d2v()
    method.centre.fill_(0.25)
    out = method.training_step(images(4), torch.Generator().manual_seed(0))
    base = plain.training_step(images(4), torch.Generator().manual_seed(0))
    x, tokens, _, _ = student_pass(method, torch.Generator().manual_seed(0))
    t_prefix, t_patches, _ = embed_patches(method.teacher_backbone, x)
    t_final, _ = encode_tokens(method.teacher_backbone, torch.cat([t_prefix, t_patches], dim=1))
    t_scores = method.teacher_head(t_final[:, 0])
    p = torch.softmax((t_scores - 0.25) / 0.04, dim=-1)
    expected = -(p * torch.log_softmax(method.head(tokens[:, 0]) / 0.1, dim=-1)).sum(-1).mean()
    torch.testing.assert_close(torch.tensor(out.terms["cls"]), expected.detach())
    torch.testing.assert_close(out.loss, base.loss + 0.5 * expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(method.centre, 0.9 * 0.25 + 0.1 * t_scores.mean(0))
    out.loss.backward()
    assert method.head.mlp[0].weight.grad is not None and method.backbone.cls_token.grad is not None
    assert all(p.grad is None and not p.requires_grad for p in method.teacher_head.parameters())
    assert_teacher_head_follows_by_ema(method)


def test_patch_prototype_loss_is_ibots_cross_entropy_at_the_hidden_patches():
    """patch_proto_weight: loss = masked loss + w x mean over hidden patches of CE(softmax(head(decoder prediction)
    / 0.1), softmax((teacher head(teacher's final patch token) - patch centre) / 0.04)), recomputed here; the patch
    centre moves towards the teacher's mean scores there, the CLS centre stays, and one head serves both losses."""
    method, plain = d2v(patch_proto_weight=0.5, cls_prototypes=16), d2v()
    method.patch_centre.fill_(0.25)
    out = method.training_step(images(4), torch.Generator().manual_seed(0))
    base = plain.training_step(images(4), torch.Generator().manual_seed(0))
    x, tokens, mask, grid = student_pass(method, torch.Generator().manual_seed(0))
    hidden = method.decoder(tokens, mask.restore, grid)[mask.mask]
    t_prefix, t_patches, _ = embed_patches(method.teacher_backbone, x)
    t_final, _ = encode_tokens(method.teacher_backbone, torch.cat([t_prefix, t_patches], dim=1))
    t_scores = method.teacher_head(t_final[:, 1:][mask.mask])
    assert hidden.shape == (4 * 12, 192) and t_scores.shape == (4 * 12, 16)  # 12 of 16 patches hidden per image
    p = torch.softmax((t_scores - 0.25) / 0.04, dim=-1)
    expected = -(p * torch.log_softmax(method.head(hidden) / 0.1, dim=-1)).sum(-1).mean()
    torch.testing.assert_close(torch.tensor(out.terms["patch_proto"]), expected.detach())
    torch.testing.assert_close(out.loss, base.loss + 0.5 * expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(method.patch_centre, 0.9 * 0.25 + 0.1 * t_scores.mean(0))
    assert torch.equal(method.centre, torch.zeros(16)) and "cls" not in out.terms
    out.loss.backward()
    assert method.head.mlp[0].weight.grad is not None and method.decoder.mask_token.grad is not None
    both = d2v(patch_proto_weight=0.5, cls_weight=1.0, cls_target="prototypes", cls_prototypes=16)
    terms = both.training_step(images(4), torch.Generator().manual_seed(0)).terms
    assert {"cls", "patch_proto"} <= set(terms) and not hasattr(both, "cls_head")  # one shared head
    assert_teacher_head_follows_by_ema(method)  # with the patch loss alone


def test_cross_view_cls_loss_predicts_the_other_views_target():
    """cross_view: two views per image (view by view in one batch), the patch loss in each, and the CLS output of
    view 1 regresses view 2's target and the other way round."""
    method = d2v(cls_weight=1.0, cls_target="teacher_cls", cross_view=True)
    out = method.training_step(images(4), torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    xs, cls_out, losses = [], [], []
    for _ in range(2):  # view 1 and its mask, then view 2 and its mask: the step's order of draws
        x, tokens, mask, grid = student_pass(method, g)
        losses.append(masked_regression_loss(method.decoder(tokens, mask.restore, grid), method.targets(x)[0],
                                             mask.mask))
        xs.append(x)
        cls_out.append(tokens[:, 0])
    assert not torch.equal(xs[0], xs[1])
    t1, t2 = method.targets(xs[0])[1], method.targets(xs[1])[1]
    expected = torch.cat([cls_out[0] - t2, cls_out[1] - t1]).pow(2).mean()
    torch.testing.assert_close(torch.tensor(out.terms["cls"]), expected.detach())
    torch.testing.assert_close(out.loss, (losses[0] + losses[1]) / 2 + expected, rtol=1e-5, atol=1e-6)
    assert out.embeddings.shape == (4, 192)


def test_local_crops_predict_the_global_views_cls_target():
    """local_crops: after the view and its mask, N small crops of every image (student only, every patch): the CLS
    loss is the mean over the masked view's CLS against its target and every local crop's CLS against the target
    of its image, recomputed here with the same randomness; with cross_view each crop predicts each view's target."""
    method = d2v(cls_weight=0.5, cls_target="teacher_cls", local_crops=3, local_size=8)
    plain = d2v(cls_weight=0.5, cls_target="teacher_cls")
    out = method.training_step(images(4), torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    x, tokens, _, _ = student_pass(method, g)
    target = method.targets(x)[1]
    crops = [random_resized_crop(images(4), 8, g, scale=(0.05, 0.4), flip_p=VIEWS.flip_p) for _ in range(3)]
    local = [encode_tokens(method.backbone, torch.cat(embed_patches(method.backbone, method.network_input(c))[:2],
                                                      dim=1))[0][:, 0] for c in crops]
    assert local[0].shape == (4, 192) and crops[0].shape == (4, 3, 8, 8)
    expected = torch.cat([tokens[:, 0] - target] + [cls - target for cls in local]).pow(2).mean()
    torch.testing.assert_close(torch.tensor(out.terms["cls"]), expected.detach())
    base = plain.training_step(images(4), torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.loss - 0.5 * out.terms["cls"], base.loss - 0.5 * base.terms["cls"],
                               rtol=1e-5, atol=1e-6)  # the patch loss is untouched
    out.loss.backward()
    assert method.backbone.cls_token.grad is not None
    both = d2v(cls_weight=1.0, cls_target="prototypes", cls_prototypes=16, cross_view=True, local_crops=2,
               local_size=8)
    both.training_step(images(4), torch.Generator().manual_seed(0))  # 2 views x (4 + 2 x 4) pairs, one centre step
    g = torch.Generator().manual_seed(0)
    xs = [student_pass(both, g)[0] for _ in range(2)]
    scores = both.teacher_head(encode_tokens(both.teacher_backbone, torch.cat(
        embed_patches(both.teacher_backbone, torch.cat(xs))[:2], dim=1))[0][:, 0])
    torch.testing.assert_close(both.centre, 0.1 * scores.mean(0))  # every view's target as often: the plain mean


def test_data2vec_cls_loss_settings_are_checked():
    with pytest.raises(ConfigError, match="layer_norm_targets=true"):
        Data2VecConfig(cls_weight=1.0)  # instance-normalised targets alone average to zero over the patches
    with pytest.raises(ConfigError, match="cls_target"):
        Data2VecConfig(cls_weight=1.0, cls_target="mean")
    with pytest.raises(ConfigError, match="cls_weight"):
        Data2VecConfig(cls_weight=-1.0)
    with pytest.raises(ConfigError, match="method.cls_weight > 0"):
        Data2VecConfig(cross_view=True)  # two views and no loss that compares them
    with pytest.raises(ConfigError, match="cls_teacher_temp"):
        Data2VecConfig(cls_weight=1.0, cls_target="prototypes", cls_teacher_temp=0.0)
    Data2VecConfig(cls_weight=1.0, cls_target="prototypes")  # a softmax target needs no layer-normalised patches
    with pytest.raises(ConfigError, match="patch_proto_weight"):
        Data2VecConfig(patch_proto_weight=-0.1)
    with pytest.raises(ConfigError, match="method.cls_weight > 0"):
        Data2VecConfig(local_crops=4)  # local crops only feed the CLS loss
    with pytest.raises(ConfigError, match="local_scale_min"):
        Data2VecConfig(cls_weight=1.0, cls_target="teacher_cls", local_crops=4, local_scale_min=0.5)
    with pytest.raises(ConfigError, match="multiple of the patch size 4"):
        d2v(cls_weight=1.0, cls_target="teacher_cls", local_crops=2, local_size=6)
    assert Data2VecConfig(patch_proto_weight=0.1).prototype_head and not Data2VecConfig().prototype_head


def test_masked_modelling_needs_a_vit_and_says_so():
    for cls, cfg in ((MAE, MAEConfig()), (Data2Vec, Data2VecConfig())):
        with pytest.raises(ConfigError, match="model.backbone=vit_tiny"):
            cls(create_backbone("smallconv", width=8), cfg)
    with pytest.raises(ConfigError, match="top_k_blocks"):
        Data2Vec(vit(), Data2VecConfig(top_k_blocks=13))
    with pytest.raises(ConfigError, match="method.loss"):
        Data2VecConfig(loss="l1")


# ------------------------------------------------------------------------------------------ ViT plumbing


def test_vit_pool_choice_changes_features_not_weights():
    token, avg = vit(0, pool="token").eval(), vit(0, pool="avg").eval()
    assert token.state_dict().keys() == avg.state_dict().keys()
    avg.load_state_dict(token.state_dict())
    x = normalize_images(images(2))
    with torch.no_grad():
        tokens = token.forward_features(x)
        torch.testing.assert_close(token(x), tokens[:, 0])
        torch.testing.assert_close(avg(x), tokens[:, 1:].mean(dim=1))
    with pytest.raises(ConfigError, match="model.pool"):
        load_config(None, ["model.pool=max"])


def test_vit_attention_uses_the_explicit_kernel_on_cpu_with_the_same_result():
    net = vit().eval()
    x = normalize_images(images(2))
    attn = net.blocks[0].attn
    with torch.no_grad():
        y = net(x)
        assert attn.fused_attn is False  # chosen from the input's device on the call
        handles = list(attn._forward_pre_hooks)
        for block in net.blocks:
            block.attn._forward_pre_hooks.clear()
            block.attn.fused_attn = True
        torch.testing.assert_close(net(x), y, rtol=1e-4, atol=1e-5)
    assert handles
