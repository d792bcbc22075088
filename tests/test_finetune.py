"""Full fine-tuning: it learns an easy task, leaves the given backbone untouched, and rejects degenerate data."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from synthsight.eval.data import LabeledImages
from synthsight.eval.finetune import FinetuneSettings, finetune, make_head, random_crop_flip


def _bright_half(n: int, seed: int) -> LabeledImages:
    """Class 1 has a bright left half: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randint(0, 60, (n, 3, 12, 12), generator=g, dtype=torch.uint8)
    x[y == 1, :, :, :6] += 150
    return LabeledImages(x, y, ["dark", "bright"], "test")


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten())


def test_finetune_learns_and_leaves_the_backbone_alone() -> None:
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    run = finetune(net, _bright_half(64, 0), _bright_half(32, 1),
                   FinetuneSettings(epochs=8, batch_size=16, lr=1e-2, augment=False, amp=False))
    assert run.result.top1 >= 0.9 and len(run.history) == 8 and len(run.result.per_class) == 2
    assert run.history[-1]["train_loss"] < run.history[0]["train_loss"]
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert "AdamW" in run.result.describe() and "8 epochs x batch 16" in run.result.describe()


class _Offset(nn.Module):
    """Features with a large image-independent part, as short MAE runs' mean-pooled ViT features."""

    def __init__(self, net: nn.Module, offset: float) -> None:
        super().__init__()
        self.net, self.offset = net, offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) + self.offset * torch.linspace(-1, 1, 8)


def test_bn_head_ignores_an_image_independent_feature_part_and_still_learns() -> None:
    torch.manual_seed(0)
    f = torch.randn(16, 8)
    bn = make_head("bn", 8, 3).train()
    assert torch.allclose(bn(f), bn(f + 50 * torch.randn(8)), atol=1e-4)  # a constant vector is standardised away
    linear = make_head("linear", 8, 3)
    assert not torch.allclose(linear(f), linear(f + 50 * torch.randn(8)), atol=1e-4)
    run = finetune(_Offset(_net(), 200.0), _bright_half(64, 0), _bright_half(32, 1),
                   FinetuneSettings(epochs=8, batch_size=16, lr=1e-2, augment=False, amp=False, head="bn"))
    assert run.result.top1 >= 0.9 and run.result.settings["head"] == "bn"
    with pytest.raises(ValueError, match="head must be one of linear, bn"):
        FinetuneSettings(head="mlp")


def test_random_crop_flip_is_seeded_and_keeps_shape() -> None:
    x = torch.rand(5, 3, 16, 16)
    a = random_crop_flip(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, random_crop_flip(x, torch.Generator().manual_seed(0)))


def test_degenerate_inputs_are_clear_errors() -> None:
    one_class = LabeledImages(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.long), ["a"], "t")
    with pytest.raises(ValueError, match="two classes"):
        finetune(_net(), one_class, one_class)
    with pytest.raises(ValueError, match="epochs"):
        FinetuneSettings(epochs=0)
