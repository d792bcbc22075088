"""DINO (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers"): self-distillation with
no labels. A student (backbone + DINO head) matches, across multi-crop views of an image, the centred and sharpened
output of a teacher that is an exponential moving average of the student.

Per step, for a batch Tensor[B, 3, S, S]: 2 global crops (views.size) go to both networks, N local crops
(local_size) to the student only; crops of one resolution share a forward pass. Loss: `losses.dino.dino_loss`
over every (teacher global, other student crop) pair. After the step the teacher moves towards the student
(momentum 0.996 -> 1, cosine) and the centre towards the teacher's batch-mean output (momentum 0.9).

Example:
    >>> method = DINO(create_backbone("smallconv"), DINOConfig())
    >>> out = method.training_step(images, torch.Generator().manual_seed(0))
    >>> out.loss.backward(); method.before_optimizer_step(0, 100); opt.step(); method.after_optimizer_step(0, 100)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from synthsight.augment.multicrop import MultiCropConfig, multi_crop
from synthsight.augment.rng import Randomness
from synthsight.augment.views import ViewConfig
from synthsight.config import check_not_above, check_ranges
from synthsight.losses.dino import dino_loss, entropy, teacher_probs, teacher_temperature
from synthsight.methods.base import Method, StepOutput
from synthsight.methods.momentum import cosine_momentum, ema_update_, frozen_copy, move_centre_
from synthsight.models.dino_head import DINOHead
from synthsight.registry import METHODS


@dataclass
class DINOConfig:
    out_dim: int = 4096  # K prototypes; 65536 at ImageNet scale, a few thousand for small runs
    hidden_dim: int = 512  # head MLP width (paper 2048)
    bottleneck_dim: int = 128  # L2-normalised bottleneck before the last layer (paper 256)
    head_layers: int = 3  # Linear layers before the bottleneck normalisation (paper 3)
    student_temp: float = 0.1  # student softmax temperature (paper 0.1)
    teacher_temp: float = 0.07  # final teacher temperature; lower is sharper (paper 0.04-0.07)
    warmup_teacher_temp: float = 0.04  # teacher temperature at step 0; above ~0.04 early training can be unstable
    warmup_teacher_temp_steps: int = 100  # linear warm-up length (paper: 30 epochs)
    centre_momentum: float = 0.9  # EMA of the teacher's batch-mean output that is subtracted (paper 0.9)
    momentum: float = 0.996  # teacher EMA momentum at step 0, rising to 1 (cosine); 0.99 suits runs of ~1k steps
    freeze_last_layer_steps: int = 50  # the prototypes get no update for this many steps (paper: the first epoch)
    global_scale_min: float = 0.4  # global crop area fraction in [this, 1] (paper 0.4; 0.32 for small images)
    local_crops: int = 4  # local crops per image, student only (paper 6-10); 0 = two global views only
    local_size: int = 16  # local crop side in pixels (paper 96 at 224; ~half of views.size)
    local_scale_min: float = 0.05  # local crop area fraction in [this, local_scale_max] (paper 0.05)
    local_scale_max: float = 0.4  # paper: the global crops' lower bound
    blur: bool = False  # DINO's asymmetric blur (global 1 always, global 2 at 0.1, locals at 0.5); off for tiny images
    solarize_p: float = 0.2  # solarisation probability of the second global crop (paper 0.2)

    def __post_init__(self) -> None:
        check_ranges(self, "method", out_dim=">=2", hidden_dim=">=1", bottleneck_dim=">=1", head_layers=">=1",
                     student_temp=">0", teacher_temp=">0", warmup_teacher_temp=">0", warmup_teacher_temp_steps=">=0",
                     centre_momentum="[0,1]", momentum="[0,1]", freeze_last_layer_steps=">=0",
                     global_scale_min="(0,1]", local_crops=">=0", local_size=">=1", local_scale_min="(0,1]",
                     local_scale_max="(0,1]", solarize_p="[0,1]")
        check_not_above(self, "method", "local_scale_min", "local_scale_max")

    def multicrop(self, global_size: int) -> MultiCropConfig:
        return MultiCropConfig(
            global_size=global_size, global_crops=2, global_scale_min=self.global_scale_min,
            local_crops=self.local_crops, local_size=self.local_size, local_scale_min=self.local_scale_min,
            local_scale_max=self.local_scale_max, blur=self.blur, solarize_p=self.solarize_p,
        )


@METHODS.register("dino")
class DINO(Method):
    config_class = DINOConfig

    def __init__(self, backbone: torch.nn.Module, cfg: DINOConfig, views: ViewConfig | None = None) -> None:
        super().__init__(backbone)
        self.cfg = cfg
        self.views = views or ViewConfig()
        self.crops = cfg.multicrop(self.views.size)
        self.head = DINOHead(backbone.num_features, cfg.out_dim, cfg.hidden_dim, cfg.bottleneck_dim, cfg.head_layers)
        self.teacher_backbone = frozen_copy(self.backbone)
        self.teacher_head = frozen_copy(self.head)
        self.register_buffer("centre", torch.zeros(cfg.out_dim))
        # Optimisation steps begun, set by the hooks: the teacher temperature is a function of the step, and a
        # buffer is checkpointed, so a resumed run continues the warm-up where it stopped.
        self.register_buffer("step_count", torch.zeros((), dtype=torch.long))

    def _student(self, groups: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Bottleneck features and logits of every crop, Tensor[n_crops x B, D] and [n_crops x B, K]."""
        z = torch.cat([self.head.embed(self.backbone(self.network_input(x))) for x in groups])
        return z, self.head.last_layer(z)

    def training_step(self, images: torch.Tensor, g: Randomness, labels: torch.Tensor | None = None) -> StepOutput:
        crops = multi_crop(images, g, self.crops, self.views)
        n_crops, n_global = self.crops.num_crops, self.crops.global_crops
        with torch.no_grad():
            globals_ = crops.views()[:n_global] if crops.counts[0] > n_global else [crops.groups[0]]
            t_logits = self.teacher_head(self.teacher_backbone(self.network_input(*globals_))).float()
        c = self.cfg
        temp = teacher_temperature(int(self.step_count), c.warmup_teacher_temp_steps, c.warmup_teacher_temp,
                                   c.teacher_temp)
        probs = teacher_probs(t_logits, self.centre, temp)
        z, s_logits = self._student(crops.groups)
        loss = dino_loss(s_logits.chunk(n_crops), probs.chunk(n_global), self.cfg.student_temp)
        move_centre_(self.centre, t_logits, self.cfg.centre_momentum)
        teacher_entropy = float(entropy(probs))
        return StepOutput(
            loss, {"dino": float(loss.detach()), "teacher_entropy": teacher_entropy, "teacher_temp": temp},
            embeddings=z[: images.shape[0]].detach(), teacher_probs=probs.chunk(n_global)[0].detach(),
        )

    def before_optimizer_step(self, step: int, total_steps: int) -> None:
        self.step_count.fill_(step + 1)
        if step < self.cfg.freeze_last_layer_steps:  # let the features settle before the prototypes move
            for p in self.head.last_layer.parameters():
                p.grad = None

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        m = cosine_momentum(step, total_steps, base=self.cfg.momentum)
        ema_update_(self.teacher_backbone, self.backbone, m)
        ema_update_(self.teacher_head, self.head, m)
