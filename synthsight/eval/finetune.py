"""Full fine-tuning on real labelled images: backbone + a new linear head, all weights trained.

The protocol of transfer studies (e.g. Kornblith et al. 2019; Baradad et al. 2021 fine-tune their
procedurally pretrained networks the same way): AdamW (weight decay on weights, not on biases and norm
parameters), linear warm-up then cosine decay to zero per step, optionally layer-wise lr decay for ViTs
(`layer_decay`, the masked-image-modelling convention), random crops (reflect-padded by 1/8 of the side)
and horizontal flips, bf16 autocast; top-1 on the test split after the last epoch. The backbone passed in is
copied, never changed. Slower than the frozen-feature protocols: `synthsight finetune` runs it on its own, and
`--protocols ...,finetune` adds it to `synthsight eval` (random init then gives the from-scratch baseline).

Example:
    >>> run = finetune(backbone, train, test, FinetuneSettings(epochs=10), device="cuda")
    >>> run.result.top1, run.history[-1]["train_loss"]
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from synthsight.eval.data import LabeledImages
from synthsight.eval.features import extract_features
from synthsight.eval.layer_decay import layer_decay_groups
from synthsight.eval.result import ProtocolResult, per_class_accuracy
from synthsight.models.preprocess import normalize_images
from synthsight.precision import autocast
from synthsight.schedules import warmup_cosine


HEADS = ("linear", "bn")


def make_head(kind: str, dim: int, num_classes: int) -> nn.Module:
    """The classifier put on the backbone's features: see FinetuneSettings.head."""
    linear = nn.Linear(dim, num_classes)
    return linear if kind == "linear" else nn.Sequential(nn.BatchNorm1d(dim, affine=False), linear)


@dataclass
class FinetuneSettings:
    epochs: int = 10  # passes over the training split
    lr: float = 1e-3  # AdamW peak learning rate, backbone and head alike
    weight_decay: float = 0.05  # AdamW decoupled weight decay on weight matrices / kernels only
    batch_size: int = 256
    warmup_epochs: float = 1.0  # linear warm-up (capped at a tenth of training), then cosine decay to 0
    label_smoothing: float = 0.0
    augment: bool = True  # random crop (reflect pad side/8) + horizontal flip; off: the images as they are
    amp: bool = True  # bf16 autocast where native (synthsight.precision); weights and optimiser state stay float32
    seed: int = 0  # head initialisation, batch order, augmentation
    # ViTs only: layer-wise lr decay (eval/layer_decay.py), block i of L trains at lr x layer_decay^(L - i), the
    # embeddings at lr x layer_decay^(L + 1), norm and head at lr; MAE fine-tuned with 0.65-0.75. 1 = off
    layer_decay: float = 1.0
    # the new head on the pooled features: "linear", or "bn" = BatchNorm without affine parameters, then linear (MAE's
    # probe head): standardises each feature over the batch, so a large image-independent component (short MAE runs'
    # mean-pooled features carry one: docs/BENCHMARKS.md) does not swamp the head's gradient
    head: str = "linear"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"finetune {name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr",):
            if not getattr(self, name) > 0:
                raise ValueError(f"finetune {name} must be > 0, got {getattr(self, name)}")
        for name in ("weight_decay", "warmup_epochs", "label_smoothing"):
            if getattr(self, name) < 0:
                raise ValueError(f"finetune {name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.layer_decay <= 1:
            raise ValueError(f"finetune layer_decay must be in (0, 1], got {self.layer_decay}; 1 turns it off")
        if self.head not in HEADS:
            raise ValueError(f"finetune head must be one of {', '.join(HEADS)}, got {self.head!r}")


@dataclass
class FinetuneRun:
    result: ProtocolResult  # test top-1 and per-class accuracy, with the settings spelled out
    history: list[dict[str, float]] = field(default_factory=list)  # per epoch: epoch, train_loss, train_top1, lr
    model: nn.Module | None = None  # the fine-tuned backbone + head (nn.Sequential), in eval mode


def random_crop_flip(x: torch.Tensor, g: torch.Generator, pad_fraction: float = 0.125) -> torch.Tensor:
    """Per-image random crop of the reflect-padded batch at the original size, and a random horizontal flip."""
    b, _, h, w = x.shape
    p = max(1, round(pad_fraction * min(h, w)))
    padded = F.pad(x, (p, p, p, p), mode="reflect")
    oy = torch.randint(0, 2 * p + 1, (b,), generator=g).to(x.device)
    ox = torch.randint(0, 2 * p + 1, (b,), generator=g).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # [B, H, 1]
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]  # [B, 1, W]
    flip = (torch.rand(b, generator=g) < 0.5).to(x.device)
    cols = torch.where(flip[:, None, None], cols.flip(-1), cols)
    out = padded[torch.arange(b, device=x.device)[:, None, None], :, rows, cols]  # [B, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous()


def finetune(
    backbone: nn.Module,
    train: LabeledImages,
    test: LabeledImages,
    settings: FinetuneSettings | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> FinetuneRun:
    """Fine-tune a copy of `backbone` (Tensor[B, 3, S, S] -> Tensor[B, D]) with a linear head on `train`; test
    top-1 on `test`. Raises ValueError for fewer than two classes or images, RuntimeError for a diverged loss."""
    s = settings or FinetuneSettings()
    num_classes = len(train.classes)
    if len(train) < 2 or torch.unique(train.labels).numel() < 2:
        raise ValueError(
            f"fine-tuning needs at least two training images of two classes, got {len(train)} images of "
            f"{torch.unique(train.labels).numel()} class(es); check --data"
        )
    if len(test) == 0:
        raise ValueError("the test split is empty; check --test-data")
    if int(test.labels.max()) >= num_classes:
        raise ValueError(f"test labels go up to {int(test.labels.max())} but the training set names {num_classes} "
                         "classes; train and test must come from the same data set")
    device = torch.device(device)
    net = copy.deepcopy(backbone).to(device).eval()
    with torch.no_grad():  # eval mode: probing the width must not touch BatchNorm statistics
        dim = net(normalize_images(train.images[:2].to(device))).shape[1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s.seed)
        head = make_head(s.head, dim, num_classes)
    model = nn.Sequential(net, head).to(device=device, memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(layer_decay_groups(net, head, s.weight_decay, s.layer_decay), lr=s.lr)

    batch = min(s.batch_size, len(train))
    steps_per_epoch = len(train) // batch  # the last partial batch is dropped: no BatchNorm on one image
    total = steps_per_epoch * s.epochs
    warmup = min(round(s.warmup_epochs * steps_per_epoch), total // 10)
    g = torch.Generator().manual_seed(s.seed)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="finetune", unit="step")
    history: list[dict[str, float]] = []
    step, t0 = 0, time.perf_counter()
    try:
        for epoch in range(s.epochs):
            order = torch.randperm(len(train), generator=g)
            loss_sum, correct, seen = 0.0, 0, 0
            for i in range(steps_per_epoch):
                idx = order[i * batch : (i + 1) * batch]
                x = normalize_images(train.images[idx].to(device, non_blocking=True))
                y = train.labels[idx].to(device)
                if s.augment:
                    x = random_crop_flip(x, g)
                lr = warmup_cosine(step, total, s.lr, warmup)
                for group in opt.param_groups:
                    group["lr"] = lr * group["lr_scale"]
                with autocast(s.amp, device):
                    logits = model(x.contiguous(memory_format=torch.channels_last))
                loss = F.cross_entropy(logits.float(), y, label_smoothing=s.label_smoothing)
                if not torch.isfinite(loss):
                    raise RuntimeError(f"fine-tuning loss is {loss.item()} at step {step}; lower --lr "
                                       f"(now {s.lr:g}) or pass --no-amp")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                loss_sum += loss.item() * len(y)
                correct += int((logits.argmax(dim=1) == y).sum())
                seen += len(y)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}", refresh=False)
            history.append({"epoch": epoch + 1, "train_loss": round(loss_sum / max(seen, 1), 5),
                            "train_top1": round(correct / max(seen, 1), 5), "lr_end": lr})
            if log is not None:
                log(f"finetune epoch {epoch + 1}/{s.epochs}: loss {history[-1]['train_loss']:.4f}, "
                    f"train top-1 {100 * history[-1]['train_top1']:.2f}%")
    finally:
        if bar is not None:
            bar.close()
    model.eval()
    if s.head == "bn":
        refresh_head_statistics(net, head[0], train.images, s.batch_size, device, s.amp)
    pred = predict(model, test.images, s.batch_size, device, s.amp)
    top1 = (pred == test.labels).float().mean().item()
    details = asdict(s)
    details["augment"] = "random crop (reflect pad 1/8) + horizontal flip" if s.augment else "no augmentation"
    details["steps"] = total
    result = ProtocolResult("finetune", top1, details, n_train=len(train), n_test=len(test),
                            metrics={"train_loss": history[-1]["train_loss"], "train_top1": history[-1]["train_top1"],
                                     "seconds": round(time.perf_counter() - t0, 1)},
                            per_class=per_class_accuracy(pred, test.labels, num_classes))
    return FinetuneRun(result, history, model)


def refresh_head_statistics(backbone: nn.Module, norm: nn.BatchNorm1d, images: torch.Tensor, batch_size: int,
                            device: torch.device, amp: bool = True) -> None:
    """Set the bn head's running mean and variance to those of the final backbone's features over the training
    images: the running averages lag the features, which move with the backbone during fine-tuning (and a short
    run's averages still remember their zero start)."""
    features = extract_features(backbone, images, batch_size, device, amp).double()
    norm.running_mean.copy_(features.mean(0).to(norm.running_mean))
    norm.running_var.copy_(features.var(0, unbiased=True).to(norm.running_var))


def predict(model: nn.Module, images: torch.Tensor, batch_size: int, device: torch.device, amp: bool = True
            ) -> torch.Tensor:
    """Argmax class of each uint8 image Tensor[N, 3, S, S] under `model` (eval mode): int64 Tensor[N] on CPU."""
    out = []
    with torch.inference_mode(), autocast(amp, device):
        for chunk in images.split(batch_size):
            x = normalize_images(chunk.to(device)).contiguous(memory_format=torch.channels_last)
            out.append(model(x).argmax(dim=1).cpu())
    return torch.cat(out)
