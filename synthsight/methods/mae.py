"""MAE (He et al. 2022, "Masked Autoencoders Are Scalable Vision Learners"): hide most patches of an image,
encode the visible ones with the ViT, and reconstruct the pixels of the hidden ones with a light decoder.

Per step, for a batch Tensor[B, 3, S, S]: one view (random resized crop + flip, no colour jitter, as in the
paper), patches of side p (an (S/p) x (S/p) grid of N patches), a random mask per image hiding int(N x ratio) of
them; the backbone's blocks run on the CLS token + the V visible patches only (a quarter of the tokens at 0.75:
why MAE is several times cheaper per image than two- or multi-view methods); `models.mim_decoder.MaskedDecoder`
predicts the p x p x 3 normalised pixels of every patch; `losses.mim.masked_pixel_loss` compares them at the
hidden patches, each target patch normalised by its own mean and std. The encoder's position embeddings are fixed
2-D sin-cos (the paper's), set here and frozen. The decoder is dropped after pretraining.

Needs a ViT backbone (model.backbone=vit_tiny; model.patch_size=4 at 32 px). Features for probes: the MAE paper
probes the CLS token but fine-tunes on the mean of the patch tokens; its presets set model.pool=avg.

Example:
    >>> method = MAE(create_backbone("vit_tiny"), MAEConfig())
    >>> out = method.training_step(images, torch.Generator().manual_seed(0)); out.loss.backward()
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from synthsight.augment.ops import random_resized_crop
from synthsight.augment.rng import Randomness
from synthsight.augment.views import ViewConfig
from synthsight.config import check_ranges
from synthsight.losses.mim import masked_pixel_loss, patchify
from synthsight.methods.base import Method, StepOutput
from synthsight.methods.masking import (
    embed_patches, encode_tokens, random_patch_mask, require_vit, take_tokens, use_sincos_positions_, visible_count,
)
from synthsight.models.mim_decoder import MaskedDecoder
from synthsight.models.preprocess import normalize_images
from synthsight.registry import METHODS


@dataclass
class MAEConfig:
    mask_ratio: float = 0.75  # fraction of patches hidden from the encoder (paper 0.75; 48 of 64 at 32 px, patch 4)
    decoder_dim: int = 128  # decoder width (paper 512 for ViT-L; narrow keeps the decoder a small part of the cost)
    decoder_depth: int = 2  # decoder blocks (paper 8; 1-2 suffice for fine-tuning, deeper helps linear probes)
    decoder_heads: int = 4  # attention heads of the decoder (decoder_dim must be divisible by it)
    norm_pix_loss: bool = True  # targets: each patch's pixels normalised by its own mean and std (paper: better)

    def __post_init__(self) -> None:
        check_ranges(self, "method", mask_ratio="(0,1)", decoder_dim=">=4", decoder_depth=">=1", decoder_heads=">=1")


def one_view(images: torch.Tensor, g: Randomness, views: ViewConfig) -> torch.Tensor:
    """MAE's augmentation: a random resized crop (area in [views.crop_scale_min, 1]) with a random flip."""
    return random_resized_crop(images, views.size, g, scale=(views.crop_scale_min, 1.0), flip_p=views.flip_p)


@METHODS.register("mae")
class MAE(Method):
    config_class = MAEConfig
    needs_vit = True

    def __init__(self, backbone: torch.nn.Module, cfg: MAEConfig, views: ViewConfig | None = None) -> None:
        super().__init__(backbone)
        require_vit(backbone, "mae")
        self.cfg = cfg
        self.views = views or ViewConfig()
        self.patch = backbone.patch_embed.patch_size[0]
        visible_count((self.views.size // self.patch) ** 2, cfg.mask_ratio)  # a ratio that leaves no patch: fail now
        use_sincos_positions_(backbone)
        self.decoder = MaskedDecoder(backbone.embed_dim, 3 * self.patch ** 2, cfg.decoder_dim, cfg.decoder_depth,
                                     cfg.decoder_heads, num_prefix=backbone.num_prefix_tokens)

    def training_step(self, images: torch.Tensor, g: Randomness, labels: torch.Tensor | None = None) -> StepOutput:
        view = one_view(images, g, self.views)
        prefix, patches, grid = embed_patches(self.backbone, self.network_input(view))
        mask = random_patch_mask(g, len(view), patches.shape[1], self.cfg.mask_ratio, device=view.device)
        tokens, _ = encode_tokens(self.backbone, torch.cat([prefix, take_tokens(patches, mask.keep)], dim=1))
        pred = self.decoder(tokens, mask.restore, grid)
        target = patchify(normalize_images(view.float()), self.patch)
        loss = masked_pixel_loss(pred, target, mask.mask, norm_pix=self.cfg.norm_pix_loss)
        embeddings = tokens[:, prefix.shape[1]:].mean(dim=1).detach().float()  # mean visible token, per image
        return StepOutput(loss, {"mae": float(loss.detach())}, embeddings=embeddings)
