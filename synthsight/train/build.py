"""Turn a Config into objects: generators, stream, method (with its teachers), optimiser; a checkpoint into a
frozen trained network (`load_teacher`). The backbone itself is built by models/build.py."""

from __future__ import annotations

from pathlib import Path

import torch

from synthsight.checkpoint import load_checkpoint, load_weights, resolve_checkpoint
from synthsight.config import Config, ConfigError, build_dataclass, config_from_dict
from synthsight.eval.real_stream import RealImageStream
from synthsight.generators import Generator, create_generator
from synthsight.generators.pool import PooledStream
from synthsight.generators.stream import SyntheticStream
from synthsight.methods import METHODS, Method
from synthsight.methods.distill import Teacher
from synthsight.models.build import initial_backbone


def build_generators(cfg: Config) -> list[Generator]:
    gens = []
    for i, spec in enumerate(cfg.data.families):
        try:
            gens.append(create_generator(spec, size=cfg.data.render_size))
        except (ValueError, TypeError) as err:
            raise ConfigError(f"data.families[{i}] = {spec!r}: {err}") from None
    if cfg.data.weights is not None and len(cfg.data.weights) != len(gens):
        raise ConfigError(
            f"data.weights has {len(cfg.data.weights)} entries for {len(gens)} families; give one weight per family"
        )
    return gens


def build_stream(
    cfg: Config, start_batch: int = 0, num_batches: int | None = None, rank: int = 0, world_size: int = 1,
    batch_size: int | None = None,
) -> SyntheticStream | PooledStream | RealImageStream:
    """The configured stream; `batch_size` is per rank and micro-batch (default trainer.batch_size, one process).
    It streams class labels too when the method trains on them. With data.real set, real images instead."""
    if cfg.data.real is not None:
        if cfg.data.pool is not None:
            raise ConfigError(f"data.pool applies to the synthetic families; data.real={cfg.data.real!r} is already "
                              "a finite set (every epoch visits each image once): unset one of them")
        method = cfg.method["name"]
        if METHODS.get(method).needs_labels and not METHODS.get(method).partial_labels:
            raise ConfigError(
                f"method {method!r} trains on class labels, but data.real={cfg.data.real!r} streams real images "
                "without labels; use a self-supervised method, or unset data.real to train on labelled synthetic "
                "families (fractal_ifs, contours, programs)"
            )
        return RealImageStream.from_spec(
            cfg.data.real, cfg.data.render_size, seed=cfg.data.seed, batch_size=batch_size or cfg.trainer.batch_size,
            start_batch=start_batch, num_batches=num_batches, rank=rank, world_size=world_size,
        )
    stream = SyntheticStream(
        build_generators(cfg), seed=cfg.data.seed, batch_size=batch_size or cfg.trainer.batch_size,
        weights=cfg.data.weights, start_batch=start_batch, num_batches=num_batches, rank=rank, world_size=world_size,
        with_labels=METHODS.get(cfg.method["name"]).needs_labels,
        allow_unlabelled=METHODS.get(cfg.method["name"]).partial_labels,
    )
    if cfg.data.pool is None:
        return stream
    if cfg.data.pool < cfg.trainer.batch_size:
        raise ConfigError(f"data.pool={cfg.data.pool} is smaller than one batch (trainer.batch_size="
                          f"{cfg.trainer.batch_size}): a batch would hold the same image twice; use data.pool >= "
                          f"{cfg.trainer.batch_size}, or leave it unset for the endless stream")
    return PooledStream(stream, cfg.data.pool)


def build_method(cfg: Config, with_teachers: bool = True) -> Method:
    """The configured method around the run's starting backbone (`initial_backbone`: seeded by trainer.seed, then
    the heads from the same RNG); unknown options name the valid ones. A method that learns from teachers
    (`needs_teachers`) gets method.teachers loaded, unless `with_teachers` is False (a network built only to load
    its own weights)."""
    options = dict(cfg.method)
    name = options.pop("name")
    cls = METHODS.get(name)
    method_cfg = build_dataclass(cls.config_class, options, "method")
    extra = {}
    if cls.needs_labels:
        stream = build_stream(cfg, num_batches=0)  # checks that every family has categories (or may lack them)
        extra["num_classes"] = getattr(stream, "num_classes", 0)  # real images (partial_labels methods): none
    backbone = initial_backbone(cfg)
    if cls.needs_teachers and with_teachers:  # loaded after the backbone and before the heads are drawn
        extra["teachers"] = [load_teacher(p) for p in method_cfg.teachers]
    return cls(backbone, method_cfg, views=cfg.views, **extra)


def load_teacher(path: Path | str) -> Teacher:
    """A trained network from a run folder (its newest good checkpoint) or checkpoints/step-N, frozen, in eval
    mode: a distillation teacher, or what `export` writes. Built without its own teachers (a distilled network's
    heads come from its weights)."""
    ckpt = resolve_checkpoint(Path(path))
    meta = load_checkpoint(ckpt)  # verifies the SHA-256 of every file first
    method = build_method(config_from_dict(meta["config"]), with_teachers=False)
    method.load_state_dict(load_weights(ckpt))  # refuses NaN/Inf weights
    return Teacher.from_method(ckpt, method)


def build_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    t = cfg.trainer
    # No weight decay on biases and norm parameters (standard practice for SSL).
    trainable = [p for p in model.parameters() if p.requires_grad]  # not momentum targets or frozen teachers
    decay = [p for p in trainable if p.ndim > 1]
    no_decay = [p for p in trainable if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # One fused kernel per step instead of a loop of small ops per tensor (CPU: AdamW 1.3-2.4 vs 3.6-5.6 ms a step
    # for smallconv + projector, two threads); the same update rule.
    fused = all(p.device.type in ("cpu", "cuda") for p in trainable)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=t.lr, fused=fused)
    if t.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=t.lr, momentum=0.9, fused=fused)
    raise ConfigError(f"unknown trainer.optimizer {t.optimizer!r}; valid: adamw, sgd")
