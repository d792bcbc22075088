"""Turn a Config into objects: generators, stream, backbone, method, optimiser."""

from __future__ import annotations

import torch

from synthsight.config import Config, ConfigError, build_dataclass, split_family
from synthsight.generators import GENERATORS, Generator
from synthsight.generators.stream import SyntheticStream
from synthsight.generators.real_stream import RealImageStream
from synthsight.methods import METHODS, Method
from synthsight.models.backbones import create_backbone


def build_generators(cfg: Config) -> list[Generator]:
    gens = []
    for spec in cfg.data.families:
        family, variant = split_family(spec)
        gens.append(GENERATORS.create(family, variant=variant, size=cfg.data.render_size))
    if cfg.data.weights is not None and len(cfg.data.weights) != len(gens):
        raise ConfigError(
            f"data.weights has {len(cfg.data.weights)} entries for {len(gens)} families; give one weight per family"
        )
    return gens


def build_stream(cfg: Config, start_batch: int = 0, num_batches: int | None = None, rank: int = 0,
                 world_size: int = 1, batch_size: int | None = None) -> SyntheticStream | RealImageStream:
    """The configured stream; `batch_size` is per rank and micro-batch (default trainer.batch_size, one process).
    It streams class labels too when the method trains on them. With data.real set, real images instead."""
    if cfg.data.real is not None:
        method = cfg.method["name"]
        if METHODS.get(method).needs_labels:
            raise ConfigError(
                f"method {method!r} trains on class labels, but data.real={cfg.data.real!r} streams real images "
                "without labels; use a self-supervised method, or unset data.real to train on labelled synthetic "
                "families (fractal_ifs, contours, programs)"
            )
        return RealImageStream.from_spec(
            cfg.data.real, cfg.data.render_size, seed=cfg.data.seed, batch_size=batch_size or cfg.trainer.batch_size,
            start_batch=start_batch, num_batches=num_batches, rank=rank, world_size=world_size,
        )
    return SyntheticStream(
        build_generators(cfg), seed=cfg.data.seed, batch_size=batch_size or cfg.trainer.batch_size,
        weights=cfg.data.weights, start_batch=start_batch, num_batches=num_batches, rank=rank, world_size=world_size,
        with_labels=METHODS.get(cfg.method["name"]).needs_labels,
    )


def build_backbone(cfg: Config) -> torch.nn.Module:
    """The configured backbone; ViTs size their position embeddings for the training view side (views.size)."""
    m = cfg.model
    return create_backbone(m.backbone, small_stem=m.small_stem, width=m.width, image_size=cfg.views.size,
                           patch_size=m.patch_size, pool=m.pool)


def build_method(cfg: Config) -> Method:
    """The configured method around a freshly initialised backbone; unknown options name the valid ones."""
    options = dict(cfg.method)
    name = options.pop("name")
    cls = METHODS.get(name)
    method_cfg = build_dataclass(cls.config_class, options, "method")
    if cls.needs_labels:
        stream = build_stream(cfg, num_batches=0)  # checks that every family has categories
        return cls(build_backbone(cfg), method_cfg, views=cfg.views, num_classes=stream.num_classes)
    return cls(build_backbone(cfg), method_cfg, views=cfg.views)


def build_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    t = cfg.trainer
    # No weight decay on biases and norm parameters (standard practice for SSL).
    trainable = [p for p in model.parameters() if p.requires_grad]  # not momentum targets or frozen teachers
    decay = [p for p in trainable if p.ndim > 1]
    no_decay = [p for p in trainable if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if t.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=t.lr)
    if t.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=t.lr, momentum=0.9)
    raise ConfigError(f"unknown trainer.optimizer {t.optimizer!r}; valid: adamw, sgd")
