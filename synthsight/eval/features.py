"""Frozen features of a backbone over a set of images, and the input checks shared by the probes.

Example:
    >>> data = load_dataset("fashion-mnist", "test", size=32)
    >>> feats = extract_features(backbone, data.images, device="cuda")   # float32 Tensor[10000, D] on CPU
"""

from __future__ import annotations

import torch
from torch import nn

from synthsight.models.preprocess import normalize_images
from synthsight.precision import autocast


def extract_features(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
    amp: bool = True,
    progress: bool = False,
) -> torch.Tensor:
    """uint8 Tensor[N, 3, S, S] -> float32 Tensor[N, D] on the CPU: `model` applied in eval mode, no gradients.

    Images pass through `normalize_images` (the one normalisation shared with pretraining). With `amp` the
    forward pass runs under bf16 autocast where the device has native bf16 (synthsight.precision); features are
    returned in float32. The model is moved to `device` and to channels_last memory format (both in place, as
    `nn.Module.to` does); its train/eval mode is restored afterwards. The model must return Tensor[B, D] (timm:
    `num_classes=0`).
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be Tensor[N, 3, H, W], got shape {tuple(images.shape)}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise ValueError(f"images must be uint8 (or float in [0, 1]), got {images.dtype}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    model.to(device=device, memory_format=torch.channels_last)

    starts = range(0, len(images), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="features", unit="batch")
    out: torch.Tensor | None = None
    try:
        with torch.inference_mode(), autocast(amp, device):
            for start in starts:
                x = images[start : start + batch_size].to(device, non_blocking=True)
                x = normalize_images(x).contiguous(memory_format=torch.channels_last)
                y = model(x)
                if not isinstance(y, torch.Tensor) or y.ndim != 2:
                    got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
                    raise ValueError(
                        f"the model must return features Tensor[B, D], got {got}; for a timm model pass "
                        "num_classes=0, or wrap it so that it pools and flattens"
                    )
                if out is None:
                    with torch.inference_mode(False):  # a normal tensor, so probes may train on it with autograd
                        out = torch.empty(len(images), y.shape[1], dtype=torch.float32)
                out[start : start + len(y)] = y.float().cpu()
    finally:
        model.train(was_training)
    return out if out is not None else torch.empty(0, 0, dtype=torch.float32)


def check_probe_inputs(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor | None = None
) -> int:
    """Validate the features and labels a probe is given; returns the number of classes (max label + 1).

    Raises ValueError naming the problem: wrong shapes or dtypes, mismatched lengths, NaN or infinite
    features, negative labels, or fewer than two classes among the training labels (accuracy would be
    trivially 100%, which almost always means the wrong data set or labels were passed).
    """
    for name, x in (("train_x", train_x), ("test_x", test_x)):
        _check_features(name, x)
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train_x has {train_x.shape[1]} feature dims but test_x has {test_x.shape[1]}")
    if len(train_x) == 0 or len(test_x) == 0:
        raise ValueError(f"need at least one train and one test row, got {len(train_x)} and {len(test_x)}")
    labels = [("train_y", train_y, train_x)] + ([("test_y", test_y, test_x)] if test_y is not None else [])
    for name, y, x in labels:
        _check_labels(name, y, x)
    _check_two_classes("train_y", train_y)
    return int(max(int(y.max()) for _, y, _ in labels)) + 1


def check_labeled_features(x: torch.Tensor, y: torch.Tensor, name: str = "x") -> int:
    """`check_probe_inputs` for one labelled set (e.g. the test features k-means clusters): number of classes."""
    _check_features(name, x)
    if len(x) == 0:
        raise ValueError(f"{name} has no rows; need at least one image's features")
    _check_labels("labels", y, x)
    _check_two_classes("labels", y)
    return int(y.max()) + 1


def _check_features(name: str, x: torch.Tensor) -> None:
    if x.ndim != 2:
        raise ValueError(f"{name} must be features Tensor[N, D], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor, got {x.dtype}")
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).any(dim=1).sum())
        raise ValueError(
            f"{name} contains NaN or infinite values in {bad} of {len(x)} rows; the backbone diverged "
            "or the features overflowed (try extract_features(..., amp=False))"
        )


def _check_labels(name: str, y: torch.Tensor, x: torch.Tensor) -> None:
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"{name} must be Tensor[{len(x)}] (one label per row), got shape {tuple(y.shape)}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer class indices, got {y.dtype}")
    if len(y) and int(y.min()) < 0:
        raise ValueError(f"{name} has negative labels (min {int(y.min())}); labels must be 0..C-1")


def _check_two_classes(name: str, y: torch.Tensor) -> None:
    if torch.unique(y).numel() < 2:
        raise ValueError(
            f"{name} holds a single class ({int(y[0])}); a probe needs at least two classes to measure "
            "anything — check that the right data set and labels were passed"
        )
