"""Evaluate a checkpoint and its baselines with the same protocols on the same real data, in one run.

Encoders: the pretrained backbone, `random` (same architecture, freshly initialised with a fixed seed),
`pixels` (the resized images themselves as features), and any other checkpoint path given in `compare`.
Protocols are chosen by name from synthsight.eval.protocols.PROTOCOLS (knn, linear, kmeans, fewshot, finetune).
The report keeps each encoder's features and network and the test images, for analysis; per-class accuracies are
compared against `report.baseline` (random init when evaluated).

Example:
    >>> report = evaluate(Path("runs/demo"), EvalConfig(), device="cpu")
    >>> print(results_table(report.encoders, EvalConfig().protocols))
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch

from synthsight.checkpoint import load_checkpoint, load_weights, resolve_checkpoint
from synthsight.config import Config, EvalConfig, config_from_dict
from synthsight.eval.data import LabeledImages, align_classes, load_dataset
from synthsight.eval.features import extract_features
from synthsight.eval.protocols import PROTOCOLS, ProtocolInputs, check_protocols
from synthsight.eval.result import ProtocolResult
from synthsight.models.build import build_backbone, initial_backbone
from synthsight.models.preprocess import normalize_images

PRETRAINED = "synthsight pretrained (synthetic only)"
PRETRAINED_REAL = "synthsight pretrained (real images: {real})"  # a data.real run: the real-data reference
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
    """Results of every encoder, and what analysis needs beside them (features, networks, test images).

    to_dict() holds the JSON-serialisable part only: not `features`, `networks`, `train` or `test`.
    """

    checkpoint: str
    train_source: str
    test_source: str
    encoders: list[EncoderResult]
    classes: list[str] = field(default_factory=list)  # class names, indexed by label (per_class entries follow it)
    baseline: str | None = None  # encoder the per-class differences are taken against (random init if evaluated)
    features: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # name -> (train, test)
    networks: dict[str, torch.nn.Module] = field(default_factory=dict)  # name -> backbone (none for raw pixels)
    test: LabeledImages | None = None  # the test images and labels the features were computed on
    train: LabeledImages | None = None  # the training images (same order as the train features)

    @property
    def per_class(self) -> dict[str, dict[str, list[float | None]]]:
        """encoder name -> protocol -> top-1 per class (None: no test image of that class / not defined)."""
        return {e.name: {p: r.per_class for p, r in e.results.items() if r.per_class is not None}
                for e in self.encoders}

    def per_class_difference(self, encoder: str, protocol: str, baseline: str | None = None) -> list[float | None]:
        """Per-class top-1 of `encoder` minus that of `baseline` (default self.baseline), in fractions."""
        base = baseline or self.baseline
        table = self.per_class
        if encoder not in table or base not in table:
            raise ValueError(f"unknown encoder {encoder if encoder not in table else base!r}; have {list(table)}")
        ours, ref = table[encoder].get(protocol), table[base].get(protocol)
        if ours is None or ref is None:
            raise ValueError(f"protocol {protocol!r} has no per-class accuracies for {encoder!r} and {base!r}")
        return [None if a is None or b is None else round(a - b, 6) for a, b in zip(ours, ref)]

    def per_class_rows(self) -> list[dict[str, Any]]:
        """One row per encoder x protocol x class: accuracy, the baseline's, and the difference (per_class.csv)."""
        rows = []
        table = self.per_class
        for enc, by_protocol in table.items():
            for protocol, accs in by_protocol.items():
                ref = table.get(self.baseline or "", {}).get(protocol)
                for c, acc in enumerate(accs):
                    base = ref[c] if ref is not None else None
                    rows.append({
                        "encoder": enc, "protocol": protocol, "class_index": c,
                        "class": self.classes[c] if c < len(self.classes) else str(c), "top1": acc,
                        "baseline": self.baseline if ref is not None else None, "baseline_top1": base,
                        "diff": None if acc is None or base is None else round(acc - base, 6),
                    })
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "train_data": self.train_source, "test_data": self.test_source,
                "classes": self.classes, "baseline": self.baseline, "encoders": [e.to_dict() for e in self.encoders]}


def load_backbone(checkpoint: Path, pool: str | None = None) -> tuple[torch.nn.Module, Config, Path]:
    """The backbone of a checkpoint (or a run folder's newest good one), with the run's config; a checkpoint holding
    NaN or Inf is refused (NonFiniteStateError) rather than evaluated at chance. `pool` (token | avg) replaces the
    run's model.pool, a ViT's features (same weights); the returned config carries it, so `random_backbone` of that
    config pools the same way."""
    ckpt = resolve_checkpoint(checkpoint)
    meta = load_checkpoint(ckpt)
    cfg = config_from_dict(meta["config"])
    if pool is not None:
        cfg.model = replace(cfg.model, pool=pool)  # validated again: a bad name is a ConfigError
    backbone = build_backbone(cfg)
    weights = load_weights(ckpt)
    prefix = "backbone."
    backbone.load_state_dict({k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)})
    return backbone, cfg, ckpt


def random_backbone(cfg: Config, seed: int | None = None) -> torch.nn.Module:
    """A freshly initialised copy of the architecture; with the default seed (the run's trainer.seed) these are
    exactly the weights pretraining started from, so the comparison isolates what pretraining changed."""
    with torch.random.fork_rng():
        return initial_backbone(cfg, seed)


def pixel_features(images: torch.Tensor) -> torch.Tensor:
    """Raw pixels (normalised like network input) flattened into feature vectors."""
    return torch.cat([normalize_images(chunk).flatten(1) for chunk in images.split(4096)])


def run_protocols(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                  protocols: list[str], cfg: EvalConfig, network: torch.nn.Module | None = None,
                  train: LabeledImages | None = None, test: LabeledImages | None = None,
                  device: str | torch.device = "cpu", progress: bool = False) -> dict[str, ProtocolResult]:
    """Each named protocol (synthsight.eval.protocols.PROTOCOLS) on one encoder's features; a protocol that does
    not apply (finetune without a network) is left out. `network` and the images are needed by finetune only."""
    check_protocols(protocols)
    inputs = ProtocolInputs(train_x, train_y, test_x, test_y, network, train, test, device, progress)
    out = {}
    for name in protocols:
        result = PROTOCOLS.get(name)(inputs, cfg)
        if result is not None:
            out[name] = result
    return out


def evaluate(checkpoint: Path, cfg: EvalConfig, device: str | torch.device = "cpu", progress: bool = True,
             log: Callable[[str], None] = print) -> EvalReport:
    """Features of every encoder on cfg.data / cfg.test_data, then every protocol on each."""
    check_protocols(cfg.protocols)
    backbone, run_cfg, ckpt = load_backbone(checkpoint, cfg.pool)
    train = load_dataset(cfg.data, "train", size=cfg.size, limit=cfg.limit, seed=cfg.seed, skip_bad=cfg.skip_bad)
    test = load_dataset(cfg.test_data, "test", size=cfg.size, limit=cfg.test_limit, seed=cfg.seed,
                        skip_bad=cfg.skip_bad)
    test = align_classes(train, test)  # by class name: a test split may lack some classes
    if len(train.classes) != len(test.classes):
        log(f"eval: warning: the train data names {len(train.classes)} classes, the test data "
            f"{len(test.classes)}; labels are compared by index")
    log(f"eval: {len(train.labels)} train images from {train.source}, {len(test.labels)} test from {test.source}")
    if train.n_skipped or test.n_skipped:
        log(f"eval: skipped {train.n_skipped} unreadable train and {test.n_skipped} unreadable test files (--skip-bad)")

    encoders: list[tuple[str, torch.nn.Module | None]] = []  # None: raw pixels

    for other in cfg.compare:
        if other == "random":
            encoders.append((RANDOM, random_backbone(run_cfg)))  # the run's own starting weights
        elif other == "pixels":
            encoders.append((PIXELS, None))
        else:
            net, _, other_ckpt = load_backbone(Path(other), cfg.pool)
            encoders.append((f"checkpoint {other_ckpt}", net))
    ours = PRETRAINED_REAL.format(real=run_cfg.data.real) if run_cfg.data.real else PRETRAINED
    encoders.append((ours, backbone))  # last, so the table reads baseline -> ours

    def features(net: torch.nn.Module | None, data: LabeledImages) -> torch.Tensor:
        if net is None:
            return pixel_features(data.images)
        return extract_features(net, data.images, cfg.batch_size, device, progress=progress)

    report = EvalReport(str(ckpt), train.source, test.source, [], classes=list(test.classes), test=test,
                        train=train)
    for name, net in encoders:
        t0 = time.perf_counter()
        train_x, test_x = features(net, train), features(net, test)
        results = run_protocols(train_x, train.labels, test_x, test.labels, cfg.protocols, cfg, network=net,
                                train=train, test=test, device=device, progress=progress)
        res = EncoderResult(name, results, feature_dim=train_x.shape[1], seconds=time.perf_counter() - t0)
        for r in res.results.values():
            log(f"  {name}: {r.describe()}")
        report.encoders.append(res)
        report.features[name] = (train_x, test_x)
        if net is not None:
            report.networks[name] = net
    names = [name for name, _ in encoders]
    if len(names) > 1:  # random init when evaluated (isolates what pretraining changed), else the first baseline
        report.baseline = RANDOM if RANDOM in names else names[0]
    return report


def table_columns(encoders: list[EncoderResult], protocol: str) -> list[tuple[str, Callable[[ProtocolResult], str]]]:
    """(title, cell) for each number `protocol` reports: k-NN per k, k-means NMI/ARI/accuracy, few-shot per shot."""
    results = [e.results[protocol] for e in encoders if protocol in e.results]
    if not results:
        return [(f"{protocol} top-1", lambda r: f"{100 * r.top1:.2f}")]
    first = results[0]
    if protocol == "knn":
        ks = sorted({int(k[len("top1_k"):]) for r in results for k in r.metrics if k.startswith("top1_k")})
        return [(f"k-NN k={k} top-1", lambda r, k=k: _pct(r.metrics.get(f"top1_k{k}"))) for k in ks] or [
            ("k-NN top-1", lambda r: _pct(r.top1))]
    if protocol == "kmeans":
        return [("k-means NMI", lambda r: f"{r.metrics['nmi']:.3f}"),
                ("k-means ARI", lambda r: f"{r.metrics['ari']:.3f}"), ("k-means acc", lambda r: _pct(r.top1))]
    if protocol == "fewshot":
        def shot(n: int) -> Callable[[ProtocolResult], str]:
            return lambda r: _pct(r.metrics.get(f"top1_{n}shot"), r.metrics.get(f"top1_{n}shot_std"))

        return [(f"{n}-shot top-1", shot(n)) for n in first.settings.get("shots", [])]
    title = {"linear": "linear top-1", "finetune": "fine-tune top-1"}.get(protocol, f"{protocol} top-1")
    return [(title, lambda r: _pct(r.top1))]


def _pct(value: float | None, std: float | None = None) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")


def results_table(encoders: list[EncoderResult], protocols: list[str]) -> str:
    """A Markdown table: one row per encoder, one column per number (top-1 in %; NMI and ARI in [-1, 1]).

    A protocol that did not apply to an encoder (finetune on raw pixels) shows '–'.
    """
    columns = [(p, title, cell) for p in protocols for title, cell in table_columns(encoders, p)]
    head = "| encoder | " + " | ".join(title for _, title, _ in columns) + " |"
    rule = "|---|" + "---|" * len(columns)
    rows = [
        f"| {e.name} | " + " | ".join(cell(e.results[p]) if p in e.results else "–" for p, _, cell in columns) + " |"
        for e in encoders
    ]
    return "\n".join([head, rule, *rows])


def metric_rows(encoders: list[EncoderResult]) -> list[dict[str, Any]]:
    """One row per encoder x protocol x metric (top1 first, then the protocol's metrics), for metrics.csv."""
    rows = []
    for e in encoders:
        for name, r in e.results.items():
            values = {"top1": r.top1, **{k: v for k, v in r.metrics.items() if k != "top1"}}
            rows += [{"encoder": e.name, "protocol": name, "metric": metric, "value": round(float(v), 6),
                      "description": r.describe()} for metric, v in values.items()]
    return rows
