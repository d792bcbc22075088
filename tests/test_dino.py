import math

import pytest
import torch
from torch import nn

from synthsight.analysis.attention import cls_attention_by_block, cls_attention_maps
from synthsight.augment.multicrop import MultiCropConfig, multi_crop
from synthsight.augment.ops import gaussian_blur, random_solarize
from synthsight.augment.rng import PerImageRandom
from synthsight.augment.views import ViewConfig
from synthsight.config import ConfigError, build_dataclass
from synthsight.losses.dino import dino_loss, entropy, teacher_probs, teacher_temperature, updated_centre
from synthsight.methods.dino import DINO, DINOConfig
from synthsight.models.backbones import create_backbone
from synthsight.registry import METHODS
from tests.conftest import kill_after_first_checkpoint

TINY_HEAD = dict(out_dim=32, hidden_dim=16, bottleneck_dim=8, local_size=8)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tiny_dino(backbone: str = "smallconv", **options) -> DINO:
    torch.manual_seed(0)
    net = create_backbone(backbone, width=8, image_size=16)
    return DINO(net, DINOConfig(**{**TINY_HEAD, **options}), ViewConfig(size=16))


# ------------------------------------------------------------------------------------------------ pure functions


def test_centre_update_matches_hand_computation():
    centre = torch.tensor([1.0, 0.0])
    logits = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # batch mean (2, 3)
    new = updated_centre(centre, logits, momentum=0.9)
    assert torch.allclose(new, torch.tensor([0.9 * 1 + 0.1 * 2, 0.9 * 0 + 0.1 * 3]))
    assert torch.equal(centre, torch.tensor([1.0, 0.0]))  # pure: the input is untouched
    with pytest.raises(ValueError):
        updated_centre(centre, logits, momentum=1.5)


def test_teacher_probs_centre_and_sharpen():
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    centre = torch.tensor([0.5, 0.5, 0.5])
    expected = torch.softmax((logits - centre) / 0.04, dim=-1)
    assert torch.allclose(teacher_probs(logits, centre, 0.04), expected)
    assert torch.allclose(teacher_probs(torch.zeros(2, 5), torch.zeros(5), 0.04), torch.full((2, 5), 0.2))


def test_teacher_temperature_warms_up_linearly():
    assert teacher_temperature(0, 100) == pytest.approx(0.04)
    assert teacher_temperature(50, 100) == pytest.approx(0.055)
    assert teacher_temperature(100, 100) == pytest.approx(0.07)
    assert teacher_temperature(10_000, 100) == pytest.approx(0.07)
    assert teacher_temperature(0, 0) == pytest.approx(0.07)
    assert teacher_temperature(5, 10, start=0.02, end=0.06) == pytest.approx(0.04)


def _ce(p: list[float], logits: list[float], temp: float) -> float:
    z = [v / temp for v in logits]
    log_norm = math.log(sum(math.exp(v) for v in z))
    return -sum(pk * (zk - log_norm) for pk, zk in zip(p, z))


def test_dino_loss_matches_hand_computation_and_skips_same_view():
    temp = 0.5
    student = [[0.2, -0.1], [1.0, 0.3], [-0.4, 0.9]]  # global 0, global 1, local
    teacher = [[0.7, 0.3], [0.1, 0.9]]  # probabilities of global 0 and global 1
    pairs = [(0, 1), (0, 2), (1, 0), (1, 2)]  # (teacher view, student view), s != t
    expected = sum(_ce(teacher[t], student[s], temp) for t, s in pairs) / len(pairs)
    loss = dino_loss([torch.tensor([s]) for s in student], [torch.tensor([t]) for t in teacher], temp)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    with_same = sum(_ce(teacher[t], student[s], temp) for t in range(2) for s in range(3)) / 6
    assert loss.item() != pytest.approx(with_same, rel=1e-3)


def test_uniform_teacher_and_student_give_ln_k():
    k, b = 16, 4
    probs = teacher_probs(torch.randn(1, k).expand(2 * b, k), torch.zeros(k), 1e6).chunk(2)  # ~uniform
    loss = dino_loss(list(torch.zeros(4 * b, k).chunk(4)), list(probs), 0.1)
    assert loss.item() == pytest.approx(math.log(k), rel=1e-4)
    assert entropy(torch.full((3, k), 1 / k)).item() == pytest.approx(math.log(k), rel=1e-6)
    assert entropy(torch.eye(k)).item() == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------------------------------------------------ multi-crop


def test_multi_crop_shapes_groups_and_range():
    images = torch.rand(3, 3, 32, 32)
    crops = multi_crop(images, gen(), MultiCropConfig(), ViewConfig())
    assert [tuple(x.shape) for x in crops.groups] == [(6, 3, 32, 32), (12, 3, 16, 16)]
    assert crops.counts == [2, 4]
    views = crops.views()
    assert len(views) == 6 and all(v.shape[0] == 3 for v in views)
    assert all(0 <= float(x.min()) and float(x.max()) <= 1 for x in crops.groups)
    same_side = multi_crop(images, gen(), MultiCropConfig(local_size=32, local_crops=2), ViewConfig())
    assert [tuple(x.shape) for x in same_side.groups] == [(12, 3, 32, 32)] and same_side.counts == [4]
    no_locals = multi_crop(images, gen(), MultiCropConfig(local_crops=0, blur=True), ViewConfig())
    assert [tuple(x.shape) for x in no_locals.groups] == [(6, 3, 32, 32)]


def test_multi_crop_is_deterministic_and_per_image():
    images = torch.rand(3, 3, 32, 32)
    cfg = MultiCropConfig(blur=True)
    a = multi_crop(images, gen(1), cfg, ViewConfig())
    b = multi_crop(images, gen(1), cfg, ViewConfig())
    c = multi_crop(images, gen(2), cfg, ViewConfig())
    assert all(torch.equal(x, y) for x, y in zip(a.groups, b.groups))
    assert not torch.equal(a.groups[1], c.groups[1])
    # with per-image randomness an image's crops do not depend on which other images share its batch
    whole = multi_crop(images, PerImageRandom.for_images(0, 5, [10, 11, 12]), cfg, ViewConfig()).views()
    part = multi_crop(images[1:], PerImageRandom.for_images(0, 5, [11, 12]), cfg, ViewConfig()).views()
    for v_whole, v_part in zip(whole, part):
        assert torch.allclose(v_whole[1:], v_part, atol=1e-6)


def test_blur_and_solarize():
    flat = torch.full((2, 3, 8, 8), 0.3)
    assert torch.allclose(gaussian_blur(flat, gen(), p=1.0), flat, atol=1e-6)  # a constant image stays constant
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(gaussian_blur(x, gen(), p=0.0), x)
    blurred = gaussian_blur(x, gen(), sigma=(2.0, 2.0), p=1.0)
    assert blurred.std() < x.std()
    assert torch.allclose(random_solarize(x, gen(), p=1.0), torch.where(x >= 0.5, 1 - x, x))
    assert torch.equal(random_solarize(x, gen(), p=0.0), x)


def test_multi_crop_options_are_validated():
    with pytest.raises(ConfigError, match="local_scale_min"):
        DINOConfig(local_scale_min=0.5, local_scale_max=0.4)
    with pytest.raises(ConfigError, match="method.student_temp"):
        DINOConfig(student_temp=0)
    with pytest.raises(ConfigError, match="unknown config key"):
        build_dataclass(DINOConfig, {"locals": 4}, "method")


# ------------------------------------------------------------------------------------------------ the method


def test_dino_is_registered_and_checkpoints_its_centre():
    assert METHODS.get("dino") is DINO
    state = tiny_dino().state_dict()
    assert state["centre"].shape == (32,) and "step_count" in state
    assert any(k.startswith("teacher_backbone.") for k in state) and any(k.startswith("teacher_head.") for k in state)
    assert all(not p.requires_grad for n, p in tiny_dino().named_parameters() if n.startswith("teacher_"))


def test_ema_teacher_update_matches_hand_computation():
    method = tiny_dino(momentum=0.9)
    with torch.no_grad():
        method.head.last_layer.weight.fill_(1.0)
        method.teacher_head.last_layer.weight.fill_(0.0)
    method.after_optimizer_step(0, 10)  # momentum 0.9 at step 0: teacher = 0.9 x 0 + 0.1 x 1
    assert torch.allclose(method.teacher_head.last_layer.weight, torch.full_like(method.head.last_layer.weight, 0.1))
    method.after_optimizer_step(9, 10)  # the last step: momentum 1, the teacher stays
    assert torch.allclose(method.teacher_head.last_layer.weight, torch.full_like(method.head.last_layer.weight, 0.1))


def test_step_updates_centre_and_reports_terms():
    method = tiny_dino()
    images = torch.rand(4, 3, 32, 32)
    out = method.training_step(images, gen())
    assert torch.isfinite(out.loss)
    assert set(out.terms) >= {"dino", "teacher_entropy", "teacher_temp"}
    assert 0 <= out.terms["teacher_entropy"] <= math.log(32) + 1e-5
    assert out.embeddings.shape == (4, 8) and not out.embeddings.requires_grad
    assert out.teacher_probs.shape == (4, 32) and torch.allclose(out.teacher_probs.sum(-1), torch.ones(4))
    assert method.centre.abs().sum() > 0  # moved towards the teacher's batch mean
    assert out.terms["teacher_temp"] == pytest.approx(0.04)
    method.before_optimizer_step(60, 100)
    assert method.training_step(images, gen()).terms["teacher_temp"] == pytest.approx(0.04 + 0.03 * 61 / 100)


def test_last_layer_gradients_dropped_while_frozen():
    method = tiny_dino(freeze_last_layer_steps=2)
    images = torch.rand(4, 3, 32, 32)
    for step, frozen in [(0, True), (1, True), (2, False)]:
        method.zero_grad(set_to_none=True)
        method.training_step(images, gen(step)).loss.backward()
        method.before_optimizer_step(step, 10)
        assert (method.head.last_layer.weight.grad is None) == frozen
        assert method.head.mlp[0].weight.grad is not None and method.backbone.features[0].weight.grad is not None


@pytest.mark.parametrize("backbone", ["smallconv", "vit_tiny"])
def test_dino_steps_lower_the_loss_on_a_fixed_batch(backbone):
    method = tiny_dino(backbone, freeze_last_layer_steps=0, local_crops=2)
    opt = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=1e-3)
    images = torch.rand(8, 3, 32, 32)
    losses = []
    for step in range(4):
        out = method.training_step(images, gen())
        assert torch.isfinite(out.loss)
        losses.append(out.loss.item())
        opt.zero_grad()
        out.loss.backward()
        method.before_optimizer_step(step, 20)
        opt.step()
        method.after_optimizer_step(step, 20)
    assert losses[-1] < losses[0]


# ------------------------------------------------------------------------------------------------ ViT + attention


def test_vit_tiny_backbone_sizes():
    net = create_backbone("vit_tiny", image_size=16, patch_size=4)
    assert net.num_features == 192
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 192)
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 192)  # local crops: position embeddings interpolated
    assert net.pos_embed.shape[1] == 1 + (16 // 4) ** 2
    with pytest.raises(ValueError, match="multiple"):
        create_backbone("vit_tiny", image_size=30, patch_size=4)
    assert create_backbone("smallconv", width=8, image_size=16).num_features == 32  # others ignore image_size


class _Recorder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x)
        return x


@pytest.mark.parametrize("block", [-1, 0, 5])
def test_attention_maps_match_timm_unfused_attention(block):
    torch.manual_seed(0)
    vit = create_backbone("vit_tiny", image_size=32).eval()
    images = torch.randn(2, 3, 32, 32)
    maps = cls_attention_maps(vit, images) if block == -1 else cls_attention_maps(vit, images, block=block)
    assert maps.shape == (2, 3, 8, 8)
    # reference: timm's own unfused path of that block, whose softmaxed weights pass through attn_drop
    attn = vit.blocks[block].attn
    attn.fused_attn, attn.attn_drop = False, _Recorder()
    with torch.no_grad():
        vit(images)
    full = attn.attn_drop.seen[0]  # Tensor[B, heads, N, N], rows sum to 1
    assert torch.allclose(maps.flatten(2), full[:, :, 0, 1:], atol=1e-5)
    # documented: the maps leave out the CLS token's attention to itself, so map + self-attention = 1
    assert torch.allclose(maps.sum((-2, -1)) + full[:, :, 0, 0], torch.ones(2, 3), atol=1e-5)
    small = cls_attention_maps(vit, torch.randn(1, 3, 16, 16))  # another input side: a 4x4 grid
    assert small.shape == (1, 3, 4, 4)
    # every block from one forward pass: the same maps, in the order asked
    every = cls_attention_by_block(vit, images)
    assert every.shape == (12, 2, 3, 8, 8) and torch.allclose(every[block], maps)
    assert torch.allclose(cls_attention_by_block(vit, images, [block, 0]), torch.stack([maps, every[0]]))


def test_attention_maps_refuse_non_vit_and_missing_blocks():
    with pytest.raises(ValueError, match="Vision Transformer"):
        cls_attention_maps(create_backbone("smallconv", width=8), torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="block 12 does not exist: this ViT has 12 blocks"):
        cls_attention_maps(create_backbone("vit_tiny", image_size=16), torch.randn(1, 3, 16, 16), block=12)
    assert cls_attention_maps(tiny_dino("vit_tiny"), torch.randn(1, 3, 16, 16)).shape == (1, 3, 4, 4)


# ------------------------------------------------------------------------------------------------ end to end


def test_pretrain_dino_vit_and_load_for_eval(tiny_config, tmp_path):
    from safetensors.torch import load_file

    from synthsight.eval.run import load_backbone
    from synthsight.train.loop import pretrain

    cfg = tiny_config("model.backbone=vit_tiny", "trainer.steps=2", "trainer.batch_size=8",
                      "trainer.checkpoint_every=2", "trainer.grad_clip=3.0")
    cfg.method = {"name": "dino", **TINY_HEAD, "local_crops": 2, "freeze_last_layer_steps": 1}
    result = pretrain(cfg, tmp_path / "run", progress=False)
    assert result.steps == 2 and math.isfinite(result.final_loss)
    weights = load_file(str(result.checkpoint / "model.safetensors"))
    assert weights["centre"].abs().sum() > 0 and int(weights["step_count"]) == 2
    backbone, run_cfg, _ = load_backbone(tmp_path / "run")
    assert run_cfg.method["name"] == "dino"
    assert torch.equal(backbone.pos_embed, weights["backbone.pos_embed"])
    assert backbone.eval()(torch.rand(2, 3, 16, 16)).shape == (2, 192)


def test_dino_resume_continues_bit_for_bit(tiny_config, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    import synthsight.train.loop as loop

    cfg = tiny_config("trainer.steps=4", "trainer.batch_size=8", "trainer.checkpoint_every=2")
    cfg.method = {"name": "dino", **TINY_HEAD, "local_crops": 1, "freeze_last_layer_steps": 1,
                  "warmup_teacher_temp_steps": 3}
    straight = loop.pretrain(cfg, tmp_path / "a", progress=False)
    kill_after_first_checkpoint(monkeypatch, cfg, tmp_path / "b")
    resumed = loop.pretrain(cfg, tmp_path / "b", resume=True, progress=False)
    a = load_file(str(straight.checkpoint / "model.safetensors"))
    b = load_file(str(resumed.checkpoint / "model.safetensors"))
    assert a.keys() == b.keys() and "centre" in a
    for k in a:
        assert torch.equal(a[k], b[k]), k  # teacher, centre and temperature step included


def test_a_full_step_moves_every_teacher_parameter_by_ema():
    """Backbone AND head of the teacher follow the student by EMA after an optimiser step (not only the head)."""
    method = tiny_dino(momentum=0.9)
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.5)
    teacher_before = {n: p.detach().clone() for n, p in method.named_parameters() if n.startswith("teacher_")}
    method.training_step(torch.rand(4, 3, 32, 32), gen()).loss.backward()
    method.before_optimizer_step(0, 10)
    opt.step()
    method.after_optimizer_step(0, 10)
    params = dict(method.named_parameters())
    moved = 0
    for name, before in teacher_before.items():
        student = params[name.replace("teacher_", "", 1)].detach()
        assert torch.allclose(params[name], 0.9 * before + 0.1 * student, atol=1e-6), name
        moved += not torch.equal(params[name], before)
    assert any(n.startswith("teacher_backbone.") for n in teacher_before) and moved > len(teacher_before) // 2


def test_the_loss_subtracts_the_centre_from_before_the_step(monkeypatch):
    """The centre is updated after the loss (DINO's reference): the step must use the previous centre."""
    import synthsight.methods.dino as dino_module

    method = tiny_dino()
    with torch.no_grad():
        method.centre.copy_(torch.linspace(-2.0, 2.0, 32))
    before = method.centre.clone()
    seen = []
    real = dino_module.teacher_probs
    monkeypatch.setattr(dino_module, "teacher_probs", lambda logits, centre, temp: seen.append(centre.clone())
                        or real(logits, centre, temp))
    method.training_step(torch.rand(4, 3, 32, 32), gen())
    assert len(seen) == 1 and torch.equal(seen[0], before)
    assert not torch.equal(method.centre, before)  # and it did move afterwards
