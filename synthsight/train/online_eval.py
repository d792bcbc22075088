"""Online evaluation: k-NN top-1 of the current backbone on a small real labelled set, every few training steps.

A cheap signal of whether synthetic pretraining is teaching anything that transfers, while it runs: the weighted
k-NN of `eval.knn` (cosine, k = eval.knn_k, T = eval.knn_temperature; Wu et al. 2018, DINO's protocol) on
trainer.online_eval_limit training images (the memory bank) and trainer.online_eval_test_limit test images, both
stratified subsets, loaded once at the start and resized to views.size. A named set (fashion-mnist) gives its own
train and test splits; an ImageFolder directory or .npz has none, so a stratified part of it is held out as the
test images. The backbone runs in eval mode without gradients (BatchNorm statistics untouched) and goes back to
train mode afterwards, so the run's weights and its bit-for-bit resume do not change.

Shapes: images uint8 Tensor[N, 3, S, S] -> features Tensor[N, D] -> one float, top-1 in [0, 1].

Example:
    >>> online = OnlineKNN.from_config(cfg)               # loads the data; a missing set fails here
    >>> top1 = online.evaluate(method.backbone, torch.device("cpu"))
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from synthsight.config import Config
from synthsight.eval.data import DatasetError, LabeledImages, load_dataset, stratified_subset
from synthsight.eval.knn import knn_predict
from synthsight.models.preprocess import normalize_images
from synthsight.precision import autocast



def split_held_out(data: LabeledImages, test_size: int, seed: int = 0) -> tuple[LabeledImages, LabeledImages]:
    """(train, test) parts of one labelled set: a stratified `test_size` images for test, the rest for train."""
    if test_size >= len(data):
        raise DatasetError(f"{data.source} has {len(data)} images: too few to hold out {test_size} test images and "
                           "keep a k-NN memory bank; lower trainer.online_eval_test_limit or use a larger set")
    test = stratified_subset(data.labels, test_size, seed)
    is_test = torch.zeros(len(data), dtype=torch.bool)
    is_test[test] = True

    def part(mask: torch.Tensor, name: str) -> LabeledImages:
        return LabeledImages(data.images[mask], data.labels[mask], data.classes, f"{data.source} ({name} part)")

    return part(~is_test, "train"), part(is_test, "held-out test")


class OnlineKNN:
    """The real images, loaded once, and the k-NN top-1 of a backbone on them."""

    def __init__(self, spec: str, size: int, train_limit: int, test_limit: int, k: int = 20,
                 temperature: float = 0.07, amp: str = "none", batch_size: int = 256) -> None:
        if Path(spec).expanduser().exists():  # an ImageFolder or .npz: one set, split here
            data = load_dataset(spec, size=size, limit=train_limit + test_limit)
            self.train, self.test = split_held_out(data, min(test_limit, len(data) // 2))
        else:  # a named set (fashion-mnist) with its own splits; a bad name or missing files raise here
            self.train = load_dataset(spec, "train", size=size, limit=train_limit)
            self.test = load_dataset(spec, "test", size=size, limit=test_limit)
        self.k, self.temperature, self.batch_size = k, temperature, batch_size
        self.amp = amp  # autocast like training

    @classmethod
    def from_config(cls, cfg: Config) -> "OnlineKNN":
        t = cfg.trainer
        return cls(t.online_eval_data, cfg.views.size, t.online_eval_limit, t.online_eval_test_limit,
                   k=cfg.eval.knn_k, temperature=cfg.eval.knn_temperature, amp=t.amp)

    def describe(self) -> str:
        return (f"online k-NN (cosine, k={self.k}, T={self.temperature}): {len(self.train)} train images from "
                f"{self.train.source}, {len(self.test)} test from {self.test.source}")

    @torch.no_grad()
    def features(self, backbone: nn.Module, images: torch.Tensor, device: torch.device,
                 memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
        """uint8 Tensor[N, 3, S, S] -> float32 Tensor[N, D] on the CPU, the backbone in eval mode (then restored)."""
        was_training = backbone.training
        backbone.eval()
        out = []
        try:
            for start in range(0, len(images), self.batch_size):
                x = normalize_images(images[start:start + self.batch_size].to(device))
                x = x.contiguous(memory_format=memory_format)
                with autocast(self.amp, device):
                    out.append(backbone(x).float().cpu())
        finally:
            backbone.train(was_training)
        return torch.cat(out)

    def evaluate(self, backbone: nn.Module, device: torch.device,
                 memory_format: torch.memory_format = torch.contiguous_format) -> float:
        """k-NN top-1 (in [0, 1]) of `backbone`'s features on the test images."""
        train_x = self.features(backbone, self.train.images, device, memory_format)
        test_x = self.features(backbone, self.test.images, device, memory_format)
        pred = knn_predict(train_x, self.train.labels, test_x, min(self.k, len(train_x)), self.temperature)
        return float((pred == self.test.labels).float().mean())
