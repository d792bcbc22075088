"""Self-attention maps of a Vision Transformer's CLS token (as in DINO, Caron et al. 2021, Fig. 1 and 3).

For a timm `VisionTransformer`, the last block's (or any chosen block's) attention from the CLS token to every
patch, one map per head: Tensor[B, 3, H, W] (normalised network input) -> Tensor[B, heads, H / p, W / p] for patch
side p.

timm computes attention with a fused kernel that never materialises the weights, so they are recomputed here from
the block's own layers (norm1, qkv, q_norm, k_norm, scale), with its input captured by a forward hook; timm is
not modified. Each map holds the CLS row of softmax(q k^T / sqrt(d)) restricted to the patch tokens: the CLS
token's attention to itself (and to register tokens, if any) is left out, so a map sums to 1 minus that share,
not to 1. Divide by `maps.sum((-2, -1), keepdim=True)` for maps that sum to 1.

Example:
    >>> backbone, cfg, _ = load_backbone(Path("runs/dino"))
    >>> maps = cls_attention_maps(backbone.eval(), normalize_images(images))   # Tensor[B, 3, 8, 8] for 32 px
    >>> up = F.interpolate(maps, size=images.shape[-2:], mode="nearest")
    >>> first = cls_attention_maps(backbone.eval(), normalize_images(images), block=0)   # the first block's
    >>> every = cls_attention_by_block(backbone.eval(), normalize_images(images))       # Tensor[12, B, 3, 8, 8]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _vision_transformer(model: nn.Module) -> nn.Module:
    """The timm ViT itself, or the `.backbone` of a method wrapping one; ValueError for anything else."""
    from timm.models.vision_transformer import VisionTransformer

    for candidate in (model, getattr(model, "backbone", None)):
        if isinstance(candidate, VisionTransformer):
            return candidate
    raise ValueError(
        f"cls_attention_maps needs a Vision Transformer (a timm VisionTransformer, e.g. model.backbone=vit_tiny); "
        f"got {type(model).__name__}, which has no CLS-token self-attention"
    )


@torch.no_grad()
def cls_attention_maps(model: nn.Module, images: torch.Tensor, block: int = -1) -> torch.Tensor:
    """Attention of the CLS token to each patch in block `block` (default the last; negative counts from the end),
    per head: Tensor[B, heads, H / p, W / p].

    `model`: a timm VisionTransformer (or a module whose `.backbone` is one); `images`: normalised network input,
    Tensor[B, 3, H, W] with H and W multiples of the patch side. Runs in the model's current mode (call `.eval()`).
    """
    return cls_attention_by_block(model, images, [block])[0]


@torch.no_grad()
def cls_attention_by_block(model: nn.Module, images: torch.Tensor,
                           blocks: Sequence[int] | None = None) -> torch.Tensor:
    """The CLS maps of several blocks (default every block, first to last) from one forward pass:
    Tensor[len(blocks), B, heads, H / p, W / p], in the order of `blocks`. Arguments as for cls_attention_maps."""
    vit = _vision_transformer(model)
    if images.ndim != 4:
        raise ValueError(f"images must be Tensor[B, 3, H, W], got shape {tuple(images.shape)}")
    depth = len(vit.blocks)
    blocks = list(range(depth)) if blocks is None else list(blocks)
    for i in blocks:
        if not -depth <= i < depth:
            raise ValueError(f"block {i} does not exist: this ViT has {depth} blocks (0 to {depth - 1}, or -1 for "
                             f"the last)")
    captured: dict[int, torch.Tensor] = {}
    hooks = [vit.blocks[i].register_forward_pre_hook(lambda _module, args, i=i: captured.__setitem__(i, args[0]))
             for i in {b % depth for b in blocks}]  # each block's input, keyed by its index from 0
    try:
        vit.forward_features(images)
    finally:
        for hook in hooks:
            hook.remove()
    gh, gw = vit.patch_embed.dynamic_feat_size(images.shape[-2:])
    return torch.stack([_cls_row(vit, vit.blocks[i], captured[i % depth], gh, gw) for i in blocks])


def _cls_row(vit: nn.Module, block: nn.Module, tokens: torch.Tensor, gh: int, gw: int) -> torch.Tensor:
    """Tensor[B, heads, gh, gw]: the softmaxed CLS row of `block`'s attention over its input `tokens`, patches only."""
    x = block.norm1(tokens)
    attn = block.attn
    b, n, _ = x.shape
    qkv = attn.qkv(x).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])  # Tensor[B, heads, N, head_dim]
    cls_row = (q[:, :, :1] * attn.scale) @ k.transpose(-2, -1)  # Tensor[B, heads, 1, N]
    weights = cls_row.float().softmax(dim=-1)[:, :, 0, vit.num_prefix_tokens:]
    if gh * gw != weights.shape[-1]:
        raise ValueError(f"{weights.shape[-1]} patch tokens do not form the expected {gh}x{gw} grid; use image sides "
                         f"that are multiples of the patch side {vit.patch_embed.patch_size}")
    return weights.reshape(b, attn.num_heads, gh, gw)
