"""data2vec (Baevski et al. 2022, "data2vec: A General Framework for Self-supervised Learning in Speech, Vision and
Language"; the efficient encoder of data2vec 2.0, Baevski et al. 2023): a student that sees a masked image
predicts, at the hidden patches, the contextual representation an EMA teacher computes from the whole image.

Per step, for a batch Tensor[B, 3, S, S]: one view (random resized crop + flip), a random patch mask per image as
in MAE. The teacher (an EMA copy of the backbone, no gradient) encodes every patch; its target is the average of
its last `top_k_blocks` block outputs, each instance-normalised over the image's tokens
(`losses.mim.layer_average_targets`). The student encodes the CLS token + the visible patches only (data2vec
2.0's cheap encoder; data2vec 1 fed mask tokens through the whole encoder), a light decoder with mask tokens
(`models.mim_decoder.MaskedDecoder`, as MAE's, predicting D values per patch) fills in the hidden positions, and
`losses.mim.masked_regression_loss` (MSE or smooth L1) is taken there. After the step the teacher moves towards
the student (momentum `momentum` -> 1, cosine). Fixed 2-D sin-cos positions, as in MAE.

A loss on the CLS token beside the masked one (`cls_weight` > 0; off by default): the masked-patch loss never
reaches the CLS token, so its attention is left untrained (docs/BENCHMARKS.md). The student's CLS output (after the
final norm) regresses, with the same loss, one target per image (`losses.mim.cls_targets`): `cls_target=patch_mean`
is data2vec 2.0's, the mean over all patches of the teacher's target (which needs `layer_norm_targets`: instance-
normalised targets alone average to zero over the patches); `teacher_cls` is the teacher's own CLS token averaged
over the same top-K blocks and layer-normalised over channels, a masked view predicting the whole image's summary
as in MSN / iBOT (without their prototypes). The loss is `masked_regression_loss + cls_weight x cls loss`, both
means; data2vec 2.0 weights its CLS loss 0.01 per image against the mean over masked tokens, i.e. ~2.56 in these
terms for its 256 rows (16 images x 16 masks) per GPU, ~1.3 for this preset's batch of 128.
`cls_target=prototypes` is iBOT's CLS loss (Zhou et al. 2022) instead of a regression: a DINO head (student; an EMA
copy for the teacher) maps the CLS token to `cls_prototypes` scores, and the student's softmax (temperature
`cls_student_temp`) is pulled by cross-entropy towards the teacher's centred and sharpened softmax
(`cls_teacher_temp`, centre EMA `cls_centre_momentum`), DINO's recipe against collapse. `cross_view=true` takes
two random views of every image (twice the compute per image): the patch loss is taken in each view, and each
view's CLS token predicts the CLS target of the other (iBOT / DINO's cross-view invariance; with one view the
masked view predicts its own whole image).

Multi-crop local views for the CLS loss (`local_crops` > 0; needs `cls_weight` > 0): DINO / iBOT's small crops
(`local_size`, area in [`local_scale_min`, `local_scale_max`] of the image), seen by the student only, whole (no
mask), each of whose CLS outputs predicts the CLS target of the global view (of each view, with cross_view), with
the same loss; the CLS loss is then the mean over every (student crop, target) pair, as DINO's. A part of the
object has to agree with the whole, which a token that attends to a fixed place in the frame cannot do.

iBOT's patch loss beside the regression (`patch_proto_weight` > 0, added with that weight; off by default): the
decoder's prediction at each hidden patch goes through the prototype head (shared with the prototype CLS loss, as
iBOT shares it), and its softmax is pulled towards the teacher head's centred, sharpened softmax of the teacher's
final token at that patch (a second centre; the same temperatures). The regression target summarises the
teacher's blocks; the prototypes ask which of K learnt "visual words" the hidden patch is, iBOT's online tokenizer.

What keeps the targets from collapsing to a constant is the slow teacher and the instance normalisation: watch
the `embeddings` (mean visible student token per image) for a spread that shrinks to nothing.

Example:
    >>> method = Data2Vec(create_backbone("vit_tiny"), Data2VecConfig())
    >>> out = method.training_step(images, torch.Generator().manual_seed(0)); out.loss.backward()
    >>> optimizer.step(); method.after_optimizer_step(step, total_steps)   # EMA update of the teacher
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from synthsight.augment.ops import random_resized_crop
from synthsight.augment.rng import Randomness
from synthsight.augment.views import ViewConfig
from synthsight.config import ConfigError, check_choices, check_not_above, check_ranges
from synthsight.losses.dino import soft_cross_entropy, teacher_probs
from synthsight.losses.mim import cls_targets, layer_average_targets, masked_regression_loss, regression_loss
from synthsight.methods.base import Method, StepOutput
from synthsight.methods.mae import one_view
from synthsight.methods.masking import (
    PatchMask, embed_patches, encode_tokens, random_patch_mask, require_vit, take_tokens, use_sincos_positions_,
    visible_count,
)
from synthsight.methods.momentum import cosine_momentum, ema_update_, frozen_copy, move_centre_
from synthsight.models.dino_head import DINOHead
from synthsight.models.mim_decoder import MaskedDecoder
from synthsight.registry import METHODS


@dataclass
class Data2VecConfig:
    mask_ratio: float = 0.75  # fraction of patches hidden from the student (as MAE; data2vec 2.0 hides more, in blocks)
    top_k_blocks: int = 6  # the teacher's last K block outputs are averaged into the target (half of ViT-Tiny's 12)
    layer_norm_targets: bool = False  # also layer-normalise the averaged target over channels (data2vec 2.0)
    loss: str = "mse"  # mse (data2vec 2.0) | smooth_l1 (data2vec)
    loss_beta: float = 1.0  # smooth_l1 only: below this error the loss is quadratic, above it linear
    # teacher EMA momentum at step 0, rising to 1 along a half cosine; the paper's 0.999+ suits 800 ImageNet
    # epochs, runs of ~1k steps need a teacher that keeps up with the student (0.99-0.996)
    momentum: float = 0.996
    decoder_dim: int = 128  # decoder width (data2vec 2.0 uses a small convolutional decoder; MAE's suits too)
    decoder_depth: int = 2  # decoder blocks
    decoder_heads: int = 4  # attention heads of the decoder (decoder_dim must be divisible by it)
    cls_weight: float = 0.0  # weight of the loss on the student's CLS token (0: none, as data2vec 1)
    # patch_mean (data2vec 2.0) | teacher_cls (the teacher's CLS token) | prototypes (iBOT: a DINO head's softmax)
    cls_target: str = "patch_mean"
    cls_prototypes: int = 1024  # prototypes only: K scores of the CLS head (iBOT 8192 at ImageNet scale)
    cls_student_temp: float = 0.1  # prototypes only: student softmax temperature (iBOT / DINO 0.1)
    cls_teacher_temp: float = 0.04  # prototypes only: teacher temperature, sharper than the student's (iBOT 0.04)
    cls_centre_momentum: float = 0.9  # prototypes only: EMA of the teacher's mean scores that is subtracted
    cross_view: bool = False  # two views per image, each view's CLS predicting the other's target (needs cls_weight)
    # weight of iBOT's patch loss: prototype scores of the decoder's prediction at hidden patches against the teacher
    # head's at the teacher's final patch tokens (0: none); uses the cls_prototypes / temperature / centre settings
    patch_proto_weight: float = 0.0
    local_crops: int = 0  # small crops per image, student only, whose CLS predicts the CLS target (needs cls_weight)
    local_size: int = 16  # local crop side in pixels, a multiple of the patch size (DINO: 96 at 224)
    local_scale_min: float = 0.05  # local crop area fraction in [this, local_scale_max] (DINO 0.05)
    local_scale_max: float = 0.4  # DINO: the global crops' lower bound

    def __post_init__(self) -> None:
        check_ranges(self, "method", mask_ratio="(0,1)", top_k_blocks=">=1", loss_beta=">0", momentum="[0,1]",
                     decoder_dim=">=4", decoder_depth=">=1", decoder_heads=">=1", cls_weight=">=0",
                     patch_proto_weight=">=0", local_crops=">=0", local_size=">=1", local_scale_min="(0,1]",
                     local_scale_max="(0,1]",
                     cls_prototypes=">=2", cls_student_temp=">0", cls_teacher_temp=">0", cls_centre_momentum="[0,1]")
        check_choices(self, "method", loss=("mse", "smooth_l1"),
                      cls_target=("patch_mean", "teacher_cls", "prototypes"))
        if self.cross_view and self.cls_weight == 0:
            raise ConfigError("method.cross_view=true only changes where the CLS loss takes its target, and "
                              "method.cls_weight is 0; set method.cls_weight > 0 (e.g. 1), or cross_view=false")
        if self.local_crops > 0 and self.cls_weight == 0:
            raise ConfigError(f"method.local_crops={self.local_crops} only adds crops to the CLS loss, and "
                              "method.cls_weight is 0; set method.cls_weight > 0 (e.g. 0.1), or local_crops=0")
        check_not_above(self, "method", "local_scale_min", "local_scale_max")
        if self.cls_weight > 0 and self.cls_target == "patch_mean" and not self.layer_norm_targets:
            raise ConfigError("method.cls_target=patch_mean needs method.layer_norm_targets=true: instance-"
                              "normalised targets average to zero over the patches, leaving the CLS token nothing "
                              "to predict; set it, or use method.cls_target=teacher_cls")

    @property
    def prototype_head(self) -> bool:
        """Whether a prototype head (and its EMA teacher) is trained: for the CLS loss, the patch loss or both."""
        return (self.cls_weight > 0 and self.cls_target == "prototypes") or self.patch_proto_weight > 0


class TeacherTargets(NamedTuple):
    """What the teacher computes from the whole image: `patches` Tensor[B, N, D], the regression targets in image
    order; `cls`, when cls_weight > 0, the CLS targets (Tensor[B, D] to regress, or for `prototypes` the teacher
    head's scores Tensor[B, K] before centring and sharpening), else None; `patch_tokens`, when patch_proto_weight
    > 0, the teacher's final (normed) patch tokens Tensor[B, N, D] for its head, else None."""

    patches: torch.Tensor
    cls: torch.Tensor | None
    patch_tokens: torch.Tensor | None


@METHODS.register("data2vec")
class Data2Vec(Method):
    config_class = Data2VecConfig
    needs_vit = True

    def __init__(self, backbone: torch.nn.Module, cfg: Data2VecConfig, views: ViewConfig | None = None) -> None:
        super().__init__(backbone)
        require_vit(backbone, "data2vec")
        if cfg.top_k_blocks > len(backbone.blocks):
            raise ConfigError(f"method.top_k_blocks={cfg.top_k_blocks} but the backbone has {len(backbone.blocks)} "
                              f"blocks; use at most {len(backbone.blocks)}")
        self.cfg = cfg
        self.views = views or ViewConfig()
        patch = backbone.patch_embed.patch_size[0]
        self.num_patches = (self.views.size // patch) ** 2
        visible_count(self.num_patches, cfg.mask_ratio)
        if cfg.local_crops and cfg.local_size % patch:
            raise ConfigError(f"method.local_size={cfg.local_size} is not a multiple of the patch size {patch}; "
                              f"use e.g. {max(patch, cfg.local_size // patch * patch)}")
        use_sincos_positions_(backbone)
        self.decoder = MaskedDecoder(backbone.embed_dim, backbone.embed_dim, cfg.decoder_dim, cfg.decoder_depth,
                                     cfg.decoder_heads, num_prefix=backbone.num_prefix_tokens)
        self.teacher_backbone = frozen_copy(backbone)
        if cfg.prototype_head:  # iBOT's head, one for the CLS and the patch loss, an EMA copy for the teacher
            self.head = DINOHead(backbone.embed_dim, cfg.cls_prototypes)
            self.teacher_head = frozen_copy(self.head)
            self.register_buffer("centre", torch.zeros(cfg.cls_prototypes))
            self.register_buffer("patch_centre", torch.zeros(cfg.cls_prototypes))

    @torch.no_grad()
    def targets(self, x: torch.Tensor) -> TeacherTargets:
        """The teacher's targets for normalised images, float32, no gradient (`TeacherTargets`)."""
        prefix, patches, _ = embed_patches(self.teacher_backbone, x)
        final, blocks = encode_tokens(self.teacher_backbone, torch.cat([prefix, patches], dim=1), self.cfg.top_k_blocks)
        k = prefix.shape[1]
        target = layer_average_targets([b[:, k:] for b in blocks], self.cfg.layer_norm_targets)
        cls = None
        if self.cfg.cls_weight > 0 and self.cfg.cls_target == "prototypes":
            cls = self.teacher_head(final[:, 0]).float()
        elif self.cfg.cls_weight > 0:
            cls = cls_targets(self.cfg.cls_target, target, [b[:, 0] for b in blocks])
        return TeacherTargets(target, cls, final[:, k:] if self.cfg.patch_proto_weight > 0 else None)

    def _views(self, images: torch.Tensor, g: Randomness) -> tuple[torch.Tensor, PatchMask]:
        """One view per image (two, stacked view by view, with cross_view) and a patch mask per view."""
        xs, masks = [], []
        for _ in range(2 if self.cfg.cross_view else 1):
            xs.append(self.network_input(one_view(images, g, self.views)))
            masks.append(random_patch_mask(g, len(images), self.num_patches, self.cfg.mask_ratio,
                                           device=xs[-1].device))
        mask = PatchMask(torch.cat([m.keep for m in masks]), torch.cat([m.restore for m in masks]),
                         torch.cat([m.mask for m in masks]))
        return torch.cat(xs), mask

    def training_step(self, images: torch.Tensor, g: Randomness, labels: torch.Tensor | None = None) -> StepOutput:
        x, mask = self._views(images, g)
        teacher = self.targets(x)
        prefix, patches, grid = embed_patches(self.backbone, x)
        tokens, _ = encode_tokens(self.backbone, torch.cat([prefix, take_tokens(patches, mask.keep)], dim=1))
        pred = self.decoder(tokens, mask.restore, grid)
        loss = masked_regression_loss(pred, teacher.patches, mask.mask, self.cfg.loss, self.cfg.loss_beta)
        logs = {"data2vec": float(loss.detach())}
        if teacher.cls is not None:
            student_cls, cls_target = tokens[:, 0], teacher.cls
            if self.cfg.cross_view:  # view 1 predicts view 2's target and view 2 view 1's
                cls_target = cls_target.roll(len(images), dims=0)
            if self.cfg.local_crops:  # every local crop predicts every view's target: one batch of pairs
                per_view = teacher.cls.chunk(len(x) // len(images))
                student_cls = torch.cat([student_cls, self._local_cls(images, g).repeat(len(per_view), 1)])
                cls_target = torch.cat([cls_target, *(t.repeat(self.cfg.local_crops, 1) for t in per_view)])
            cls_loss = self._cls_loss(student_cls, cls_target)
            loss = loss + self.cfg.cls_weight * cls_loss
            logs["cls"] = float(cls_loss.detach())
        if teacher.patch_tokens is not None:
            with torch.no_grad():
                scores = self.teacher_head(teacher.patch_tokens[mask.mask]).float()
            patch_loss = self._prototype_loss(pred[mask.mask], scores, self.patch_centre)
            loss = loss + self.cfg.patch_proto_weight * patch_loss
            logs["patch_proto"] = float(patch_loss.detach())
        embeddings = tokens[: len(images), prefix.shape[1]:].mean(dim=1).detach().float()
        return StepOutput(loss, logs, embeddings=embeddings)

    def _local_cls(self, images: torch.Tensor, g: Randomness) -> torch.Tensor:
        """The student's CLS outputs Tensor[local_crops x B, D] of `local_crops` small crops of every image (crop
        by crop), whole, in one forward pass."""
        c = self.cfg
        crops = torch.cat([random_resized_crop(images, c.local_size, g, scale=(c.local_scale_min, c.local_scale_max),
                                               flip_p=self.views.flip_p) for _ in range(c.local_crops)])
        prefix, patches, _ = embed_patches(self.backbone, self.network_input(crops))
        tokens, _ = encode_tokens(self.backbone, torch.cat([prefix, patches], dim=1))
        return tokens[:, 0]

    def _cls_loss(self, student_cls: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss on the student's CLS outputs Tensor[M, D] against their targets, row by row: a regression, or
        for `prototypes` iBOT's cross-entropy (`_prototype_loss`)."""
        c = self.cfg
        if c.cls_target == "prototypes":
            return self._prototype_loss(student_cls, target, self.centre)
        return regression_loss(student_cls, target, c.loss, c.loss_beta).mean()

    def _prototype_loss(self, student: torch.Tensor, teacher_scores: torch.Tensor,
                        centre: torch.Tensor) -> torch.Tensor:
        """Cross-entropy from the student head's softmax of tokens Tensor[M, D] to the teacher's centred, sharpened
        softmax of its scores Tensor[M, K]; then `centre` moves towards the scores' mean (the global batch's)."""
        c = self.cfg
        probs = teacher_probs(teacher_scores, centre, c.cls_teacher_temp)
        move_centre_(centre, teacher_scores, c.cls_centre_momentum)
        return soft_cross_entropy(self.head(student), probs, c.cls_student_temp)

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        m = cosine_momentum(step, total_steps, base=self.cfg.momentum)
        ema_update_(self.teacher_backbone, self.backbone, m)
        if self.cfg.prototype_head:
            ema_update_(self.teacher_head, self.head, m)
