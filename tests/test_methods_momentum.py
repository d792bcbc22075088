"""MoCo v2, MoCo v3, BYOL and SimSiam: losses, EMA targets, the MoCo v2 queue, and a tiny pretraining run each."""

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from synthsight.augment.views import ViewConfig, two_views
from synthsight.checkpoint import list_checkpoints
from synthsight.losses.infonce import info_nce, info_nce_queue
from synthsight.losses.regression import negative_cosine, normalized_mse
from synthsight.methods import METHODS
from synthsight.methods.moco_v2 import MoCoV2, MoCoV2Config, grouped_forward
from synthsight.methods.momentum import cosine_momentum
from synthsight.models.backbones import create_backbone
from synthsight.models.preprocess import normalize_images
from synthsight.train.loop import pretrain

NAMES = ["moco_v2", "moco_v3", "byol", "simsiam"]
WITH_TARGET = ["moco_v2", "moco_v3", "byol"]
VIEWS = ViewConfig(size=16)


def make(name, seed=0, **options):
    torch.manual_seed(seed)
    cls = METHODS.get(name)
    return cls(create_backbone("smallconv", width=8), cls.config_class(proj_hidden=32, proj_dim=16, **options),
               views=VIEWS)


def batch():
    return torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def step_loss(method, images):
    return method.training_step(images, torch.Generator().manual_seed(0)).loss


def test_losses_at_known_points():
    x = torch.randn(8, 16)
    assert normalized_mse(x, 3 * x).item() == pytest.approx(0.0, abs=1e-6)
    assert normalized_mse(x, -x).item() == pytest.approx(4.0, abs=1e-5)
    assert negative_cosine(x, 2 * x).item() == pytest.approx(-1.0, abs=1e-6)
    q = F.normalize(torch.randn(4, 16), dim=1)
    # one query, its key and two negatives, by hand
    k, queue = F.normalize(torch.randn(4, 16), dim=1), F.normalize(torch.randn(2, 16), dim=1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.t()], 1) / 0.2
    expected = (torch.logsumexp(logits, 1) - logits[:, 0]).mean()
    assert info_nce_queue(q, k, queue, 0.2).item() == pytest.approx(expected.item(), rel=1e-5)
    # batch negatives: the full batch equals the gathered form with every rank's slice
    full = info_nce(q, k, 0.2)
    halves = (info_nce(q[:2], k[:2], 0.2, all_k=k, offset=0) + info_nce(q[2:], k[2:], 0.2, all_k=k, offset=2)) / 2
    assert full.item() == pytest.approx(halves.item(), rel=1e-5)
    with pytest.raises(ValueError, match="offset"):
        info_nce(q[:2], k[:2], 0.2, all_k=k, offset=3)


@pytest.mark.parametrize("name", NAMES)
def test_step_is_finite_with_detached_embeddings(name):
    method = make(name)
    out = method.training_step(batch(), torch.Generator().manual_seed(0))
    assert torch.isfinite(out.loss) and out.loss.requires_grad
    assert out.embeddings.shape == (16, 16) and not out.embeddings.requires_grad
    assert out.terms and all(isinstance(v, float) for v in out.terms.values())
    out.loss.backward()
    assert all(p.grad is None for n, p in method.named_parameters() if n.startswith("target_"))
    assert method.backbone.features[0].weight.grad is not None


@pytest.mark.parametrize("name", NAMES)
def test_sgd_steps_lower_the_loss_on_a_fixed_batch(name):
    method = make(name)
    images = batch()
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    before = step_loss(method, images).item()
    for _ in range(5):
        opt.zero_grad()
        step_loss(method, images).backward()
        opt.step()
    assert step_loss(method, images).item() < before


@pytest.mark.parametrize("name", WITH_TARGET)
def test_ema_target_moves_towards_online(name):
    method = make(name)
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.1)
    step_loss(method, batch()).backward()
    opt.step()
    online, target = method.backbone.features[0].weight, method.target_backbone.features[0].weight
    old, old_proj = target.detach().clone(), method.target_projector[0].weight.clone()
    gap = (online - old).norm()
    assert gap > 0  # the optimiser step moved the online network away from its copy
    method.after_optimizer_step(3, 10)
    m = method.cfg.momentum if name == "moco_v2" else cosine_momentum(3, 10, base=method.cfg.momentum)
    assert m > method.cfg.momentum or name == "moco_v2"
    torch.testing.assert_close(target, m * old + (1 - m) * online.detach())
    assert (online - target).norm() < gap
    assert not target.requires_grad
    torch.testing.assert_close(method.target_projector[0].weight,  # the projector's copy moves alongside
                               m * old_proj + (1 - m) * method.projector[0].weight.detach())


def test_moco_v2_enqueues_the_keys_of_the_batch_and_advances_the_pointer():
    method = make("moco_v2", queue_size=40)
    images = batch()
    start = method.queue.clone()
    out = method.training_step(images, torch.Generator().manual_seed(0))
    torch.testing.assert_close(method.queue, start)  # nothing enqueued before the optimiser step
    # the keys by hand: view 2 through the (not yet updated) key encoder, in Shuffle-BN groups
    _, v2 = two_views(images, torch.Generator().manual_seed(0), VIEWS)
    with torch.no_grad():
        keys = F.normalize(grouped_forward(method._key, normalize_images(v2), 8, strided=True), dim=1)
    out.loss.backward()
    method.after_optimizer_step(0, 10)
    assert int(method.queue_ptr) == 16
    torch.testing.assert_close(method.queue[:16], keys)
    torch.testing.assert_close(method.queue[16:], start[16:])
    for _ in range(2):
        method.training_step(images, torch.Generator().manual_seed(0))
        method.after_optimizer_step(1, 10)
    assert int(method.queue_ptr) == 48 % 40  # wrapped
    torch.testing.assert_close(method.queue.norm(dim=1), torch.ones(40))


def test_moco_v2_enqueue_wraps_keeps_the_newest_and_skips_nonfinite_rows():
    method = make("moco_v2", queue_size=10)
    keys = [F.normalize(torch.randn(4, 16), dim=1) for _ in range(3)]
    for k in keys:
        method.enqueue(k)
    assert int(method.queue_ptr) == 2
    torch.testing.assert_close(method.queue[[8, 9, 0, 1]], keys[2])
    torch.testing.assert_close(method.queue[4:8], keys[1])
    many = F.normalize(torch.randn(25, 16), dim=1)  # more keys than rows: the last 10 stay, in ring order
    method.enqueue(many)
    assert int(method.queue_ptr) == (2 + 25) % 10
    rows = [(2 + 15 + j) % 10 for j in range(10)]
    torch.testing.assert_close(method.queue[rows], many[15:])
    before = method.queue.clone()
    bad = F.normalize(torch.randn(2, 16), dim=1)
    bad[1, 0] = float("nan")
    method.enqueue(bad)
    torch.testing.assert_close(method.queue[7], bad[0])
    torch.testing.assert_close(method.queue[8], before[8])
    assert torch.isfinite(method.queue).all()


def test_grouped_forward_keeps_order_and_normalises_within_groups():
    x = torch.randn(10, 6)
    linear = torch.nn.Linear(6, 3)
    for strided in (False, True):
        torch.testing.assert_close(grouped_forward(linear, x, 3, strided), linear(x))  # no cross-image mixing
    centre = lambda t: t - t.mean(0, keepdim=True)  # noqa: E731  (stands in for BatchNorm)
    out = grouped_forward(centre, x, 3, strided=True)
    torch.testing.assert_close(out[0::3], centre(x[0::3]))
    torch.testing.assert_close(out[2::3], centre(x[2::3]))
    out = grouped_forward(centre, x, 3, strided=False)
    torch.testing.assert_close(out[:4], centre(x[:4]))


def test_moco_v2_state_dict_round_trip_keeps_the_queue():
    a = make("moco_v2", seed=0, queue_size=40)
    a.enqueue(F.normalize(torch.randn(7, 16), dim=1))
    b = make("moco_v2", seed=1, queue_size=40)
    assert not torch.equal(a.queue, b.queue)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.queue, b.queue) and int(b.queue_ptr) == 7
    assert "queue" in a.state_dict() and "target_backbone.features.0.weight" in a.state_dict()


def test_config_ranges_are_checked():
    from synthsight.config import ConfigError

    with pytest.raises(ConfigError, match="momentum"):
        MoCoV2Config(momentum=1.5)
    with pytest.raises(ConfigError, match="queue_size"):
        MoCoV2Config(queue_size=0)
    assert MoCoV2(create_backbone("smallconv", width=8), MoCoV2Config(queue_size=8, proj_dim=4)).queue.shape == (8, 4)


@pytest.mark.parametrize("name", NAMES)
def test_tiny_pretrain_run(name, tiny_config, tmp_path):
    cfg = tiny_config("trainer.steps=3", "trainer.checkpoint_every=3")
    cfg.method = {"name": name, "proj_hidden": 32, "proj_dim": 16}  # the demo preset's options are SimCLR's
    if name == "moco_v2":
        cfg.method["queue_size"] = 40
    result = pretrain(cfg, tmp_path / "run", progress=False)
    assert result.steps == 3 and math.isfinite(result.final_loss)
    weights = load_file(str(list_checkpoints(tmp_path / "run")[-1] / "model.safetensors"))
    if name in WITH_TARGET:
        assert any(k.startswith("target_backbone.") for k in weights)
    if name == "moco_v2":  # 3 steps x 16 keys went into a queue of 40
        assert int(weights["queue_ptr"]) == 48 % 40 and weights["queue"].shape == (40, 16)
