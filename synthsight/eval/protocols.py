"""Evaluation protocols chosen by name: each turns one encoder's features (or network) into a ProtocolResult.

| name     | what it measures                                   | settings (EvalConfig keys)                         |
|----------|----------------------------------------------------|----------------------------------------------------|
| knn      | weighted k-NN, cosine, T=0.07, k=20 and k=200      | knn_k (headline), knn_extra_k, knn_temperature     |
| linear   | logistic regression on standardised features       | L2 penalty chosen on a 10% validation split, seed  |
| kmeans   | k-means on test features: NMI, ARI, Hungarian acc. | k = number of classes, kmeans_n_init, seed         |
| fewshot  | nearest class mean, 1/5/10 images per class        | fewshot_shots, fewshot_draws, seed                 |
| finetune | full fine-tuning, AdamW + cosine (slow; opt-in)    | finetune_epochs (others: FinetuneSettings)         |

Frozen-feature protocols see only Tensor[N, D] features and labels; `finetune` needs the network and images and
is skipped (None) for encoders without a network (raw pixels).

Example:
    >>> inputs = ProtocolInputs(train_x, train_y, test_x, test_y)
    >>> result = PROTOCOLS.get("kmeans")(inputs, EvalConfig())
    >>> result.metrics["nmi"]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from synthsight.config import EvalConfig
from synthsight.eval.data import LabeledImages
from synthsight.eval.fewshot import fewshot_eval
from synthsight.eval.kmeans import kmeans_eval
from synthsight.eval.knn import knn_eval
from synthsight.eval.linear import linear_eval
from synthsight.eval.result import ProtocolResult
from synthsight.registry import Registry

PROTOCOLS = Registry("protocol")
Protocol = Callable[["ProtocolInputs", EvalConfig], "ProtocolResult | None"]


@dataclass
class ProtocolInputs:
    """What one encoder gives the protocols: features and labels, and (for finetune) its network and images."""

    train_x: torch.Tensor  # float Tensor[N, D]
    train_y: torch.Tensor  # int64 Tensor[N]
    test_x: torch.Tensor  # float Tensor[M, D]
    test_y: torch.Tensor  # int64 Tensor[M]
    network: nn.Module | None = None  # None for raw pixels
    train: LabeledImages | None = None
    test: LabeledImages | None = None
    device: str | torch.device = "cpu"
    progress: bool = False


@PROTOCOLS.register("knn")
def knn(inputs: ProtocolInputs, cfg: EvalConfig) -> ProtocolResult:
    return knn_eval(inputs.train_x, inputs.train_y, inputs.test_x, inputs.test_y, k=cfg.knn_k,
                    temperature=cfg.knn_temperature, extra_ks=cfg.knn_extra_k)


@PROTOCOLS.register("linear")
def linear(inputs: ProtocolInputs, cfg: EvalConfig) -> ProtocolResult:
    return linear_eval(inputs.train_x, inputs.train_y, inputs.test_x, inputs.test_y, seed=cfg.seed)


@PROTOCOLS.register("kmeans")
def kmeans(inputs: ProtocolInputs, cfg: EvalConfig) -> ProtocolResult:
    # The test split only: 10k points cluster in seconds, and scores are then comparable with the probes'.
    return kmeans_eval(inputs.test_x, inputs.test_y, n_init=cfg.kmeans_n_init, seed=cfg.seed, fit_on="test")


@PROTOCOLS.register("fewshot")
def fewshot(inputs: ProtocolInputs, cfg: EvalConfig) -> ProtocolResult:
    return fewshot_eval(inputs.train_x, inputs.train_y, inputs.test_x, inputs.test_y, shots=cfg.fewshot_shots,
                        draws=cfg.fewshot_draws, seed=cfg.seed)


@PROTOCOLS.register("finetune")
def finetune(inputs: ProtocolInputs, cfg: EvalConfig) -> ProtocolResult | None:
    from synthsight.eval.finetune import FinetuneSettings, finetune as run_finetune

    if inputs.network is None:
        return None  # raw pixels have no weights to tune
    if inputs.train is None or inputs.test is None:
        raise ValueError("protocol finetune needs the train and test images (ProtocolInputs.train / .test)")
    settings = FinetuneSettings(epochs=cfg.finetune_epochs, seed=cfg.seed)
    return run_finetune(inputs.network, inputs.train, inputs.test, settings, inputs.device, inputs.progress).result


def check_protocols(names: list[str]) -> None:
    """ValueError naming the valid protocols for an unknown name (before any data is loaded)."""
    for name in names:
        PROTOCOLS.get(name)
