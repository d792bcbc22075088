"""Layer-wise learning-rate decay for fine-tuning ViTs, the convention of masked image modelling.

BEiT (Bao et al. 2022) and MAE (He et al. 2022) fine-tune with a learning rate that shrinks geometrically from the
head down to the patch embedding: with L blocks, block i (0-based) gets lr x decay^(L - i), the embeddings (patch
embedding, CLS token, positions) lr x decay^(L + 1), and the final norm and the new head the full lr. Lower layers,
which pretraining made most general, move least. MAE used decay 0.65-0.75 (1 = off).

Example:
    >>> groups = layer_decay_groups(vit, head, weight_decay=0.05, layer_decay=0.75)
    >>> opt = torch.optim.AdamW(groups, lr=1e-3)          # then lr x group["lr_scale"] each step
"""

from __future__ import annotations

from typing import Any

from torch import nn

from synthsight.models.backbones import is_vit

EMBEDDINGS = ("patch_embed", "cls_token", "reg_token", "pos_embed", "norm_pre")  # timm ViT names of layer 0


def vit_layer_index(name: str, num_blocks: int) -> int:
    """The depth of a timm ViT parameter: 0 for the embeddings, i + 1 for blocks.i, num_blocks + 1 for the rest."""
    first = name.split(".")[0]
    if first in EMBEDDINGS:
        return 0
    if first == "blocks":
        return int(name.split(".")[1]) + 1
    return num_blocks + 1


def layer_decay_groups(backbone: nn.Module, head: nn.Module, weight_decay: float, layer_decay: float = 1.0
                       ) -> list[dict[str, Any]]:
    """AdamW parameter groups for backbone + head, each with an `lr_scale` (1 everywhere when layer_decay = 1):
    weight decay on parameters of more than one dimension only (not on biases and norms). ValueError when
    layer_decay < 1 and the backbone is not a ViT (no block order to decay along)."""
    if not 0 < layer_decay <= 1:
        raise ValueError(f"layer decay must be in (0, 1], got {layer_decay}; 1 turns it off")
    if layer_decay < 1 and not is_vit(backbone):
        raise ValueError(f"layer-wise lr decay needs a ViT backbone, got {type(backbone).__name__}; "
                         "use --layer-decay 1 for other backbones")
    num_blocks = len(backbone.blocks) if layer_decay < 1 else 0
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    named = [(n, p, vit_layer_index(n, num_blocks) if layer_decay < 1 else 0) for n, p in backbone.named_parameters()]
    named += [(f"head.{n}", p, num_blocks + 1 if layer_decay < 1 else 0) for n, p in head.named_parameters()]
    top = num_blocks + 1 if layer_decay < 1 else 0
    for _, p, layer in named:
        if not p.requires_grad:
            continue
        decay = p.ndim > 1
        key = (layer, decay)
        if key not in groups:
            groups[key] = {"params": [], "weight_decay": weight_decay if decay else 0.0,
                           "lr_scale": layer_decay ** (top - layer), "layer": layer}
        groups[key]["params"].append(p)
    return [groups[k] for k in sorted(groups)]
