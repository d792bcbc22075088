"""Distillation on synthetic streams only: one teacher or an ensemble teaches a smaller student, no labels.

Two signals, both computed on one augmented view of each synthetic image that teachers and student share:

- soft targets (Hinton et al. 2015; MEAL V2, Shen & Savvides 2020): the teachers' head outputs (a SimCLR
  projector, or a classifier) are softmaxed with temperature T and averaged over the ensemble; the student's own
  head is trained to match that distribution by KL divergence. No hard label is ever formed. Needs teachers whose
  heads share one output width (their outputs are averaged coordinate by coordinate).
- feature matching: the student's embedding, through one linear adapter per teacher, matches each teacher's
  embedding by cosine similarity. Works for any teacher, with or without a head, of any width.

The student is the run's `model.*` backbone; the run is an ordinary pretraining run (method `distill`) with the
train loop's AMP, resume, checkpoints and torchrun, so its folder works with `synthsight eval` and `export`.
Teachers are frozen, kept outside the module tree (never saved in the student's checkpoint, never optimised). The
method receives them loaded: `build_method` (train/build.py) loads method.teachers from their checkpoints
(safetensors, no pickle) with `load_teacher` and passes them in, so this file needs nothing from the train loop.

Example:
    >>> cfg = load_config("demo", ["method.name=distill", "method.teachers=[runs/resnet18]"])  # via `synthsight distill`
    >>> pretrain_run(cfg, Path("runs/student"))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from synthsight.augment.rng import Randomness
from synthsight.augment.views import ViewConfig, make_view
from synthsight.config import ConfigError, check_choices, check_ranges
from synthsight.losses.distill import cosine_feature_loss, ensemble_soft_targets, soft_target_loss
from synthsight.methods.base import Method, StepOutput
from synthsight.models.heads import mlp_head
from synthsight.models.preprocess import normalize_images
from synthsight.registry import METHODS

HEAD_NAMES = ("projector", "classifier", "head")  # where a method keeps the head whose outputs are distilled


@dataclass
class DistillConfig:
    teachers: list[str] = field(default_factory=list)  # teacher checkpoints: run folders or checkpoints/step-N
    loss: str = "auto"  # auto | soft | feature | both; auto = both when all teachers have equal-width heads
    temperature: float = 1.0  # softens teacher and student distributions; MEAL V2 uses 1
    soft_weight: float = 1.0  # weight of the soft-target KL term
    feature_weight: float = 1.0  # weight of the cosine feature term
    proj_hidden: int = 512  # hidden width of the student's head (it imitates the teachers' head outputs)

    def __post_init__(self) -> None:
        check_ranges(self, "method", temperature=">0", soft_weight=">=0", feature_weight=">=0", proj_hidden=">=1")
        check_choices(self, "method", loss=("auto", "soft", "feature", "both"))


@dataclass
class Teacher:
    """A frozen teacher: its backbone, its head (None if it has none) and their output widths."""

    checkpoint: Path
    backbone: nn.Module
    head: nn.Module | None
    num_features: int
    out_dim: int | None

    def to(self, device: torch.device, memory_format: torch.memory_format) -> None:
        for m in (self.backbone, self.head):
            if m is not None:
                m.to(device)
        self.backbone.to(memory_format=memory_format)

    @classmethod
    def from_method(cls, checkpoint: Path, method: Method) -> "Teacher":
        """A trained method (its weights loaded) as a teacher: frozen, in eval mode, with its head if it has one."""
        method.eval().requires_grad_(False)
        head = next((getattr(method, n) for n in HEAD_NAMES if isinstance(getattr(method, n, None), nn.Module)), None)
        out_dim = None
        if head is not None:
            with torch.no_grad():
                out_dim = head(torch.zeros(2, method.backbone.num_features)).shape[1]
        return cls(checkpoint, method.backbone, head, method.backbone.num_features, out_dim)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        f = self.backbone(x)
        return f, (self.head(f) if self.head is not None else None)


def resolve_loss(loss: str, teachers: list[Teacher]) -> tuple[bool, bool]:
    """(use soft targets, use feature matching) for method.loss and these teachers; a ConfigError if impossible."""
    widths = {t.out_dim for t in teachers}
    soft_ok = None not in widths and len(widths) == 1
    if loss == "auto":
        return soft_ok, True
    if loss in ("soft", "both") and not soft_ok:
        why = "has no head" if None in widths else f"heads differ in width ({sorted(widths)})"
        raise ConfigError(f"method.loss={loss} needs teachers whose heads share one output width, but a teacher {why};"
                          " use method.loss=feature (cosine feature matching works for any teacher)")
    return loss in ("soft", "both"), loss in ("feature", "both")


@METHODS.register("distill")
class Distill(Method):
    """Student backbone + a head imitating the teachers' averaged soft outputs + adapters to their embeddings."""

    config_class = DistillConfig
    needs_teachers: ClassVar[bool] = True

    def __init__(self, backbone: nn.Module, cfg: DistillConfig, views: ViewConfig | None = None,
                 teachers: list[Teacher] | None = None) -> None:
        """`teachers`: method.teachers loaded (`load_teacher` in train/build.py), in that order. None builds the
        network alone, to load its weights (as a teacher in turn, or for export): heads come from the state dict."""
        super().__init__(backbone)
        self.cfg = cfg
        self.views = views or ViewConfig()
        if not cfg.teachers:
            raise ConfigError("method.teachers is empty: name at least one teacher checkpoint, "
                              "e.g. `synthsight distill --teacher runs/my-resnet18`")
        if teachers is None:  # only its own weights matter; see load_state_dict
            self._teachers: list[Teacher] = []
            self.use_soft = self.use_feature = False
            return
        if len(teachers) != len(cfg.teachers):
            raise ValueError(f"got {len(teachers)} loaded teachers for the {len(cfg.teachers)} checkpoints in "
                             "method.teachers; pass one loaded teacher per checkpoint (train.build.load_teacher)")
        self._teachers = list(teachers)
        self.use_soft, self.use_feature = resolve_loss(cfg.loss, self._teachers)
        if self.use_soft:
            self.projector = mlp_head(backbone.num_features, cfg.proj_hidden, self._teachers[0].out_dim)
        if self.use_feature:
            self.adapters = nn.ModuleList(nn.Linear(backbone.num_features, t.num_features) for t in self._teachers)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # noqa: D102
        self._build_missing_heads(state_dict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _build_missing_heads(self, state: dict[str, torch.Tensor]) -> None:
        """A distilled network loaded as a teacher was built without its own teachers (so without head and
        adapters): build them from the shapes in its state dict."""
        linears = sorted({int(k.split(".")[1]) for k in state
                          if k.startswith("projector.") and k.endswith(".weight") and state[k].ndim == 2})
        if linears and not hasattr(self, "projector"):
            first, last = state[f"projector.{linears[0]}.weight"], state[f"projector.{linears[-1]}.weight"]
            self.projector = mlp_head(first.shape[1], first.shape[0], last.shape[0], num_layers=len(linears))
        adapters = sorted({int(k.split(".")[1]) for k in state if k.startswith("adapters.")})
        if adapters and not hasattr(self, "adapters"):
            self.adapters = nn.ModuleList(nn.Linear(*state[f"adapters.{i}.weight"].shape[::-1]) for i in adapters)

    @property
    def teachers(self) -> list[Teacher]:
        return self._teachers

    def training_step(self, images: torch.Tensor, g: Randomness, labels: torch.Tensor | None = None) -> StepOutput:
        x = normalize_images(make_view(images, g, self.views)).contiguous(memory_format=self.memory_format)
        for t in self._teachers:
            if next(t.backbone.parameters()).device != x.device:
                t.to(x.device, self.memory_format)
        outputs = [t(x) for t in self._teachers]
        features = self.backbone(x)
        loss, terms = features.new_zeros((), dtype=torch.float32), {}
        if self.use_soft:
            target = ensemble_soft_targets([o for _, o in outputs], self.cfg.temperature)
            soft = soft_target_loss(self.projector(features), target, self.cfg.temperature)
            loss = loss + self.cfg.soft_weight * soft
            terms["soft_kl"] = float(soft.detach())
        if self.use_feature:
            feat = torch.stack([cosine_feature_loss(a(features), f) for a, (f, _) in zip(self.adapters, outputs)])
            loss = loss + self.cfg.feature_weight * feat.mean()
            terms["feature_cos"] = float(feat.mean().detach())
        return StepOutput(loss, terms, embeddings=features.detach())
