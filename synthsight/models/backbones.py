"""Backbones chosen by name: a small fast ConvNet for CPU runs, and timm models (ResNet, ViT, ConvNeXt).

Every backbone maps Tensor[B, 3, H, W] (normalised, see `preprocess.normalize_images`) to features
Tensor[B, num_features]; `num_features` is an attribute of the returned module.

Example:
    >>> net = create_backbone("resnet18", small_stem=True)
    >>> net(torch.randn(2, 3, 32, 32)).shape      # torch.Size([2, 512])
"""

from __future__ import annotations

import inspect

import timm
import torch
from torch import nn

from synthsight.registry import BACKBONES

TIMM_PREFIX = "timm/"


class SmallConvNet(nn.Module):
    """Four conv-BN-ReLU stages with max-pooling, then global average pooling (~1.2M parameters at width 64).

    Trains ~6x faster than ResNet-18 on CPU at 32 px and beat it at equal minutes in our trials. The ReLU of a
    pooled stage comes after its max-pool: max(relu(a), relu(b)) = relu(max(a, b)) exactly (values and gradients),
    and the ReLU then touches a quarter of the activations (its forward and backward were ~20% of a CPU step).

    `norm_after_pool=True` (the `smallconv_fast` backbone) pools before batch norm: conv -> max-pool -> BN -> ReLU,
    as in fast CIFAR-10 training recipes (hlb-CIFAR10). Batch norm then normalises a quarter of the activations in
    the three pooled stages; its forward and backward were ~28% of a CPU step. A different network (BN's statistics
    and its sign-flipping scale see pooled values), so it is its own name and old `smallconv` runs keep their meaning.
    """

    def __init__(self, width: int = 64, norm_after_pool: bool = False) -> None:
        super().__init__()
        widths = [width // 2, width, 2 * width, 4 * width]
        layers: list[nn.Module] = []
        c_in = 3
        for i, c_out in enumerate(widths):
            conv, norm = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)
            if i == len(widths) - 1:
                layers += [conv, norm]
            elif norm_after_pool:
                layers += [conv, nn.MaxPool2d(2), norm]
            else:
                layers += [conv, norm, nn.MaxPool2d(2)]
            layers.append(nn.ReLU(inplace=True))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.num_features = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


@BACKBONES.register("smallconv")
def small_convnet(width: int = 64, small_stem: bool = True) -> nn.Module:
    """The small CPU ConvNet; `small_stem` is accepted for a uniform interface (it always keeps full resolution)."""
    return SmallConvNet(width=width)


@BACKBONES.register("smallconv_fast")
def small_convnet_fast(width: int = 64, small_stem: bool = True) -> nn.Module:
    """The small CPU ConvNet with batch norm after the max-pools (~1.45x faster CPU training step, same parameters)."""
    return SmallConvNet(width=width, norm_after_pool=True)


def _timm_backbone(arch: str, small_stem: bool) -> nn.Module:
    net = timm.create_model(arch, pretrained=False, num_classes=0)
    if small_stem and arch.startswith("resnet"):
        # CIFAR-style stem: 3x3 stride-1 first convolution and no max-pool, for 32-64 px inputs.
        net.conv1 = nn.Conv2d(3, net.conv1.out_channels, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    return net


@BACKBONES.register("resnet18")
def resnet18(small_stem: bool = True, width: int = 64) -> nn.Module:
    """timm ResNet-18 with features of size 512; `small_stem` for small images."""
    return _timm_backbone("resnet18", small_stem)


@BACKBONES.register("resnet50")
def resnet50(small_stem: bool = False, width: int = 64) -> nn.Module:
    """timm ResNet-50 with features of size 2048."""
    return _timm_backbone("resnet50", small_stem)


VIT_POOLS = ("token", "avg")  # ViT features: the CLS token, or the mean of the patch tokens (after the final norm)
VIT_ARCHITECTURES = {"vit_tiny": "vit_tiny_patch16_224"}  # registered ViT names -> the timm architecture they build


def vit_timm_args(image_size: int, patch_size: int, pool: str = "token") -> dict:
    """The timm `create_model` arguments of synthsight's ViTs: the grid for `image_size` at `patch_size`, any input
    size (position embeddings interpolated), and the pooling. `fc_norm=False` keeps the final norm before the pool
    whichever pool is chosen, so both pools share one state dict and the pool can change after training."""
    if pool not in VIT_POOLS:
        raise ValueError(f"model.pool={pool!r} is not a ViT pooling; use one of {', '.join(VIT_POOLS)}")
    return {"img_size": image_size, "patch_size": patch_size, "dynamic_img_size": True, "global_pool": pool,
            "fc_norm": False}


def is_vit(net: nn.Module) -> bool:
    """Whether `net` is a timm VisionTransformer (what the masked-image-modelling methods need)."""
    from timm.models.vision_transformer import VisionTransformer

    return isinstance(net, VisionTransformer)


def _attention_kernel_for_input(attn: nn.Module, args: tuple) -> None:
    if torch.compiler.is_compiling():  # no attribute writes inside a torch.compile trace: the compiler decides
        return
    attn.fused_attn = args[0].device.type != "cpu"


def attention_by_device_(net: nn.Module) -> nn.Module:
    """Let every timm attention layer in `net` pick its kernel from its input's device, on each call: PyTorch's
    fused scaled_dot_product_attention on accelerators, the explicit softmax(q k^T / sqrt(d)) v on CPU. Under bf16
    autocast on CPU the fused kernel's forward + backward took 5-7x longer for ViT-Tiny's short sequences (17 and
    65 tokens, batch 64, one thread: 59 vs 9 ms and 200 vs 45 ms), which made ViT training ~2x slower. Same
    maths and weights either way. Returns `net`."""
    for module in net.modules():
        if hasattr(module, "fused_attn"):
            module.register_forward_pre_hook(_attention_kernel_for_input)
    return net


@BACKBONES.register("vit_tiny")
def vit_tiny(small_stem: bool = True, width: int = 64, image_size: int = 32, patch_size: int = 4,
             pool: str = "token") -> nn.Module:
    """timm ViT-Tiny (12 blocks, width 192, 3 heads, ~5.4M parameters; features of size 192) for small images:
    patch_size 4 gives an 8x8 grid at 32 px. `image_size` sets the position-embedding grid; other sizes
    (multi-crop's local crops, evaluation at another side) work too, the embeddings are interpolated. `pool`:
    features = the CLS token ("token") or the mean of the patch tokens ("avg", MAE's fine-tuning convention).
    `small_stem` and `width` are ignored."""
    if image_size % patch_size:
        raise ValueError(f"vit_tiny: image side {image_size} is not a multiple of model.patch_size={patch_size}")
    net = timm.create_model(VIT_ARCHITECTURES["vit_tiny"], pretrained=False, num_classes=0,
                            **vit_timm_args(image_size, patch_size, pool))
    return attention_by_device_(net)


def create_backbone(name: str, small_stem: bool = True, width: int = 64, image_size: int | None = None,
                    patch_size: int | None = None, pool: str | None = None) -> nn.Module:
    """A registered backbone, or any timm architecture as 'timm/<name>' (random init, no download).

    `image_size` (the training view side), `patch_size` and `pool` reach only the backbones whose factory takes
    them (the ViTs); None keeps the factory's default. CNNs always average-pool."""
    if name.startswith(TIMM_PREFIX):
        return _timm_backbone(name[len(TIMM_PREFIX):], small_stem)
    factory = BACKBONES.get(name)
    accepted = inspect.signature(factory).parameters
    options = {"image_size": image_size, "patch_size": patch_size, "pool": pool}
    extra = {k: v for k, v in options.items() if v is not None and k in accepted}
    return factory(small_stem=small_stem, width=width, **extra)
