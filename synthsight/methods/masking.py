"""Random patch masking and a timm ViT run on the visible patches only: what MAE and data2vec share.

MAE (He et al. 2022, "Masked Autoencoders Are Scalable Vision Learners") hides a random 75% of the patches and
encodes only the rest, which is what makes masked modelling cheap: at 32 px with patch 4 the encoder sees 16 of 64
patches (+ the CLS token). data2vec 2.0 (Baevski et al. 2023) encodes the visible patches the same way.

A mask is drawn per image from the step's randomness (`augment.rng`), so under data parallelism an image is masked
the same way whichever rank holds it. Shapes: B images, N patches (grid gh x gw), V = int(N x (1 - ratio)) visible.

Example:
    >>> prefix, patches, grid = embed_patches(vit, x)          # [B, 1, D], [B, N, D] with positions, (gh, gw)
    >>> m = random_patch_mask(g, len(x), patches.shape[1], 0.75)
    >>> tokens, _ = encode_tokens(vit, torch.cat([prefix, take_tokens(patches, m.keep)], 1))   # [B, 1 + V, D]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from synthsight.augment.rng import Randomness, rand
from synthsight.config import ConfigError
from synthsight.models.backbones import is_vit
from synthsight.models.mim_decoder import sincos_2d, take_tokens  # noqa: F401  (take_tokens: used with masks)


@dataclass
class PatchMask:
    """Which patches an encoder sees. The shuffle order puts the visible patches first."""

    keep: torch.Tensor  # int64 [B, V]: indices (in image order) of the visible patches
    restore: torch.Tensor  # int64 [B, N]: restore[b, j] = where patch j sits in the shuffled order (un-shuffles)
    mask: torch.Tensor  # bool [B, N] in image order: True where the patch is hidden (the loss is taken there)


def visible_count(num_patches: int, ratio: float) -> int:
    """V = int(N x (1 - ratio)) as in MAE; ValueError unless at least one patch is visible and one hidden."""
    v = int(num_patches * (1 - ratio))
    if not 0 < v < num_patches:
        raise ValueError(f"a mask ratio of {ratio} leaves {v} of {num_patches} patches visible; choose a "
                         "method.mask_ratio that hides at least one patch and shows at least one (e.g. 0.75)")
    return v


def random_patch_mask(g: Randomness, batch: int, num_patches: int, ratio: float,
                      device: torch.device | str = "cpu") -> PatchMask:
    """A uniformly random subset of int(N x (1 - ratio)) visible patches per image (MAE's random masking)."""
    v = visible_count(num_patches, ratio)
    noise = torch.stack([rand(g, batch) for _ in range(num_patches)], dim=1)  # [B, N]: each image's own stream
    shuffle = noise.argsort(dim=1)
    restore = shuffle.argsort(dim=1)
    hidden = torch.ones(batch, num_patches, dtype=torch.bool)
    hidden[:, :v] = False  # in shuffled order the first v are visible
    mask = hidden.gather(1, restore)
    return PatchMask(shuffle[:, :v].to(device), restore.to(device), mask.to(device))


def require_vit(backbone: nn.Module, method: str) -> None:
    """ConfigError unless `backbone` is a timm VisionTransformer with a CLS token and absolute positions."""
    if not is_vit(backbone):
        raise ConfigError(f"method {method!r} masks ViT patches and needs a ViT backbone, got "
                          f"{type(backbone).__name__}; set model.backbone=vit_tiny (model.patch_size=4 at 32 px)")
    if backbone.pos_embed is None or backbone.no_embed_class or backbone.num_prefix_tokens != 1:
        raise ConfigError(f"method {method!r} needs a ViT with one CLS token and absolute position embeddings "
                          "(timm's standard ViT, e.g. model.backbone=vit_tiny)")


@torch.no_grad()
def use_sincos_positions_(vit: nn.Module) -> None:
    """Set the ViT's position embeddings to fixed 2-D sin-cos ones (zero for the CLS token) and freeze them, as
    MAE does; they stay an ordinary parameter, so the state dict (and timm loading) is unchanged."""
    gh, gw = vit.patch_embed.grid_size
    table = sincos_2d(vit.embed_dim, gh, gw)
    vit.pos_embed.zero_()
    vit.pos_embed[0, vit.num_prefix_tokens:] = table.to(vit.pos_embed.dtype)
    vit.pos_embed.requires_grad_(False)


def embed_patches(vit: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Patch embedding + positions of normalised images Tensor[B, 3, H, W] -> (prefix tokens [B, 1, D] with their
    position, patch tokens [B, N, D] in image order with theirs, grid (gh, gw))."""
    p = vit.patch_embed.patch_size
    grid = (x.shape[-2] // p[0], x.shape[-1] // p[1])
    tokens = vit._pos_embed(vit.patch_embed(x))  # timm's own: CLS + interpolated positions, [B, 1 + N, D]
    k = vit.num_prefix_tokens
    return tokens[:, :k], tokens[:, k:], grid


def encode_tokens(vit: nn.Module, tokens: torch.Tensor, collect: int = 0
                  ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The ViT's blocks and final norm on a token sequence Tensor[B, T, D] -> (Tensor[B, T, D], the outputs of the
    last `collect` blocks, each Tensor[B, T, D], before the final norm; data2vec's targets)."""
    x = vit.norm_pre(tokens)
    outputs = []
    first_collected = len(vit.blocks) - collect
    for i, block in enumerate(vit.blocks):
        x = block(x)
        if i >= first_collected:
            outputs.append(x)
    return vit.norm(x), outputs
