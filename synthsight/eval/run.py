"""Evaluate a checkpoint and its baselines with the same protocols on the same real data, in one run.

Encoders: the pretrained backbone, `random` (same architecture, freshly initialised with a fixed seed),
`pixels` (the resized images themselves as features), and any other checkpoint path given in `compare`.

Example:
    >>> report = evaluate(Path("runs/demo"), EvalConfig(), device="cpu")
    >>> print(results_table(report.encoders))
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file

from synthsight.config import Config, EvalConfig, config_from_dict
from synthsight.eval.data import LabeledImages, load_dataset
from synthsight.eval.features import extract_features
from synthsight.eval.knn import knn_eval
from synthsight.eval.linear import linear_eval
from synthsight.eval.result import ProtocolResult
from synthsight.models.preprocess import normalize_images
from synthsight.registry import unknown_name_message
from synthsight.train.build import build_backbone
from synthsight.train.checkpoint import FILES, load_checkpoint, resolve_checkpoint

PROTOCOLS = ("knn", "linear")
PRETRAINED = "synthsight pretrained (synthetic only)"
RANDOM = "random init (same architecture)"
PIXELS = "raw pixels"


@dataclass
class EncoderResult:
    name: str
    results: dict[str, ProtocolResult] = field(default_factory=dict)
    feature_dim: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "feature_dim": self.feature_dim, "seconds": round(self.seconds, 2),
            "results": {k: v.to_dict() for k, v in self.results.items()},
        }


@dataclass
class EvalReport:
    checkpoint: str
    train_source: str
    test_source: str
    encoders: list[EncoderResult]

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "train_data": self.train_source, "test_data": self.test_source,
                "encoders": [e.to_dict() for e in self.encoders]}


def load_backbone(checkpoint: Path) -> tuple[torch.nn.Module, Config, Path]:
    """The backbone of a checkpoint (or a run folder's newest good one), with the run's config."""
    ckpt = resolve_checkpoint(checkpoint)
    meta = load_checkpoint(ckpt)
    cfg = config_from_dict(meta["config"])
    backbone = build_backbone(cfg)
    weights = load_file(str(ckpt / FILES[0]))
    prefix = "backbone."
    backbone.load_state_dict({k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)})
    return backbone, cfg, ckpt


def random_backbone(cfg: Config, seed: int | None = None) -> torch.nn.Module:
    """A freshly initialised copy of the architecture; with the default seed (the run's trainer.seed) these are
    exactly the weights pretraining started from, so the comparison isolates what pretraining changed."""
    with torch.random.fork_rng():
        torch.manual_seed(cfg.trainer.seed if seed is None else seed)
        return build_backbone(cfg)


def pixel_features(images: torch.Tensor) -> torch.Tensor:
    """Raw pixels (normalised like network input) flattened into feature vectors."""
    return torch.cat([normalize_images(chunk).flatten(1) for chunk in images.split(4096)])


def run_protocols(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                  protocols: list[str], cfg: EvalConfig) -> dict[str, ProtocolResult]:
    out = {}
    for name in protocols:
        if name == "knn":
            out[name] = knn_eval(train_x, train_y, test_x, test_y, k=cfg.knn_k, temperature=cfg.knn_temperature)
        elif name == "linear":
            out[name] = linear_eval(train_x, train_y, test_x, test_y)
        else:
            raise ValueError(unknown_name_message("protocol", name, list(PROTOCOLS)))
    return out


def evaluate(checkpoint: Path, cfg: EvalConfig, device: str | torch.device = "cpu", progress: bool = True,
             log: Callable[[str], None] = print) -> EvalReport:
    """Features of every encoder on cfg.data / cfg.test_data, then every protocol on each."""
    for name in cfg.protocols:
        if name not in PROTOCOLS:
            raise ValueError(unknown_name_message("protocol", name, list(PROTOCOLS)))
    backbone, run_cfg, ckpt = load_backbone(checkpoint)
    train = load_dataset(cfg.data, "train", size=cfg.size, limit=cfg.limit, skip_bad=cfg.skip_bad)
    test = load_dataset(cfg.test_data, "test", size=cfg.size, limit=cfg.test_limit, skip_bad=cfg.skip_bad)
    log(f"eval: {len(train.labels)} train images from {train.source}, {len(test.labels)} test from {test.source}")
    if train.n_skipped or test.n_skipped:
        log(f"eval: skipped {train.n_skipped} unreadable train and {test.n_skipped} unreadable test files (--skip-bad)")

    encoders: list[tuple[str, Callable[[LabeledImages], torch.Tensor]]] = []

    def network(net: torch.nn.Module) -> Callable[[LabeledImages], torch.Tensor]:
        return lambda d: extract_features(net, d.images, cfg.batch_size, device, progress=progress)

    for other in cfg.compare:
        if other == "random":
            encoders.append((RANDOM, network(random_backbone(run_cfg))))  # the run's own starting weights
        elif other == "pixels":
            encoders.append((PIXELS, lambda d: pixel_features(d.images)))
        else:
            net, _, other_ckpt = load_backbone(Path(other))
            encoders.append((f"checkpoint {other_ckpt}", network(net)))
    encoders.append((PRETRAINED, network(backbone)))  # last, so the table reads baseline -> ours

    results = []
    for name, features in encoders:
        t0 = time.perf_counter()
        train_x, test_x = features(train), features(test)
        res = EncoderResult(name, run_protocols(train_x, train.labels, test_x, test.labels, cfg.protocols, cfg),
                            feature_dim=train_x.shape[1], seconds=time.perf_counter() - t0)
        for r in res.results.values():
            log(f"  {name}: {r.describe()}")
        results.append(res)
    return EvalReport(str(ckpt), train.source, test.source, results)


def results_table(encoders: list[EncoderResult], protocols: list[str]) -> str:
    """A Markdown table: one row per encoder, one column per protocol (top-1 %)."""
    titles = {"knn": "k-NN top-1", "linear": "linear top-1"}
    head = "| encoder | " + " | ".join(titles.get(p, p) for p in protocols) + " |"
    rule = "|---|" + "---|" * len(protocols)
    rows = [
        f"| {e.name} | " + " | ".join(f"{100 * e.results[p].top1:.2f}" for p in protocols) + " |" for e in encoders
    ]
    return "\n".join([head, rule, *rows])
