"""Contract tests over every registered backbone, and the two small ConvNets' layer orders."""

import pytest
import torch

from synthsight.models.backbones import SmallConvNet, create_backbone
from synthsight.registry import BACKBONES


@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_backbone_maps_images_to_num_features_and_trains(name):
    torch.manual_seed(0)
    net = create_backbone(name, width=8, image_size=32).train()
    x = torch.randn(2, 3, 32, 32)
    features = net(x)
    assert features.shape == (2, net.num_features)
    assert torch.isfinite(features).all()
    features.square().mean().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def _same_weights(src: SmallConvNet, dst: SmallConvNet) -> None:
    """Copy src's parameters and statistics into dst layer by layer (their Sequential indices differ)."""
    with torch.no_grad():
        for a, b in zip(src.state_dict().values(), dst.state_dict().values()):
            assert a.shape == b.shape
            b.copy_(a)


def test_smallconv_fast_is_smallconv_with_batch_norm_after_the_pool():
    """In eval mode batch norm is an affine map per channel; with a positive scale it is increasing and commutes
    with the max-pool, so both orders compute the same features from the same weights. A negative scale does not
    commute (max becomes min): that tells the orders apart, and training-mode statistics differ anyway."""
    torch.manual_seed(0)
    slow, fast = SmallConvNet(width=8), SmallConvNet(width=8, norm_after_pool=True)
    with torch.no_grad():
        for m in slow.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    _same_weights(slow, fast)
    x = torch.randn(4, 3, 32, 32)
    slow.eval(), fast.eval()
    torch.testing.assert_close(fast(x), slow(x))
    assert [type(m).__name__ for m in fast.features[:4]] == ["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"]
    assert [type(m).__name__ for m in slow.features[:4]] == ["Conv2d", "BatchNorm2d", "MaxPool2d", "ReLU"]

    with torch.no_grad():
        slow.features[1].weight.neg_()
    _same_weights(slow, fast)
    assert not torch.allclose(fast(x), slow(x), atol=1e-3)


def test_smallconv_fast_normalises_pooled_activations_in_training():
    seen = []
    net = create_backbone("smallconv_fast", width=8).train()
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape[-1]))
    net(torch.randn(2, 3, 32, 32))
    assert seen == [16, 8, 4, 4]  # smallconv's are [32, 16, 8, 4]
