"""The pretraining loop: stream -> method loss -> optimiser, with AMP, schedules, checkpoints and resume.

Example:
    >>> result = pretrain(load_config("demo"), Path("runs/demo"))
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from synthsight import __version__
from synthsight.config import Config
from synthsight.generators.base import image_seed
from synthsight.train.build import build_method, build_optimizer, build_stream, resolve_device
from synthsight.train.checkpoint import latest_good_checkpoint, load_checkpoint, save_checkpoint
from synthsight.train.schedules import warmup_cosine

LOG_FIELDS = ["step", "loss", "lr", "images_per_second"]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step, the terms and the last good checkpoint."""


class RunFolderError(ValueError):
    """The output folder holds a different run."""


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    final_loss: float
    seconds: float
    images_per_second: float
    checkpoint: Path


def autocast_context(amp: str, device: torch.device) -> contextlib.AbstractContextManager:
    if amp == "none":
        return contextlib.nullcontext()
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if amp not in dtypes:
        raise ValueError(f"unknown trainer.amp {amp!r}; valid: bf16, fp16, none")
    return torch.autocast(device.type, dtype=dtypes[amp])


def prepare_run_dir(run_dir: Path, cfg: Config, resume: bool) -> None:
    """Create the folder; refuse to mix a new run into a folder that holds a different one."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.json"
    current = cfg.to_dict()
    if path.is_file():
        previous = json.loads(path.read_text())
        if resume:
            return
        if previous != current:
            raise RunFolderError(
                f"{run_dir} already holds a different run (its config.json differs); "
                "choose another --out, or pass --resume to continue that run"
            )
        if (run_dir / "checkpoints" / "latest").exists():
            raise RunFolderError(f"{run_dir} already holds this run's checkpoints; pass --resume to continue it")
    path.write_text(json.dumps(current, indent=1))


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # generation workers share the cores with training


def _read_log(path: Path, before_step: int) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path) as f:
        return [row for row in csv.DictReader(f) if int(row["step"]) < before_step]


def pretrain(cfg: Config, run_dir: Path, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train cfg.method on the synthetic stream for cfg.trainer.steps steps; checkpoints go to run_dir."""
    t = cfg.trainer
    run_dir = Path(run_dir)
    prepare_run_dir(run_dir, cfg, resume)
    if t.threads > 0:
        torch.set_num_threads(t.threads)
    device = resolve_device(t.device)
    torch.manual_seed(t.seed)
    method = build_method(cfg).to(device)
    if t.channels_last:
        method = method.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg, method)
    scaler = torch.amp.GradScaler(device.type, enabled=t.amp == "fp16")

    start, last_ckpt = 0, None
    if resume:
        last_ckpt = latest_good_checkpoint(run_dir)
        if last_ckpt is not None:
            start = load_checkpoint(last_ckpt, method, optimizer)["step"]
    if start >= t.steps:
        raise RunFolderError(f"{run_dir} already finished {start} of {t.steps} steps; raise trainer.steps to go on")

    log_path = run_dir / "train_log.csv"
    rows = _read_log(log_path, start)
    stream = build_stream(cfg, start_batch=start, num_batches=t.steps - start)
    loader = DataLoader(stream, batch_size=None, num_workers=t.workers, worker_init_fn=_worker_init,
                        prefetch_factor=4 if t.workers else None)
    meta = {"config": cfg.to_dict(), "synthsight_version": __version__, "images_seen_per_step": t.batch_size}

    method.train()
    bar = tqdm(total=t.steps, initial=start, desc="pretrain", unit="step", disable=not progress, dynamic_ncols=True)
    t0 = tick = time.perf_counter()
    tick_step = start
    loss_value, step = float("nan"), start
    for step, (images, _) in zip(range(start, t.steps), loader):
        lr = warmup_cosine(step, t.steps, t.lr, t.warmup_steps, t.min_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        g = torch.Generator().manual_seed(image_seed(t.seed, step, "augment"))  # augmentations: pure fn of step
        with autocast_context(t.amp, device):
            out = method.training_step(images.to(device, non_blocking=True), g)
        loss_value = float(out.loss.detach())
        if not math.isfinite(loss_value):
            where = f"the last good checkpoint is {last_ckpt}" if last_ckpt else "no checkpoint was written yet"
            raise NonFiniteLossError(
                f"loss is {loss_value} at step {step} (terms {out.terms}); {where}. Try a lower trainer.lr, "
                "trainer.amp=bf16 instead of fp16, or trainer.grad_clip=3.0, then --resume"
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(out.loss).backward()
        if t.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(method.parameters(), t.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        method.after_optimizer_step(step, t.steps)

        done = step + 1
        if done % t.log_every == 0 or done == t.steps:
            now = time.perf_counter()
            ips = (done - tick_step) * t.batch_size / max(now - tick, 1e-9)
            tick, tick_step = now, done
            rows.append({"step": done, "loss": f"{loss_value:.5f}", "lr": f"{lr:.6g}", "images_per_second": f"{ips:.1f}"})
            bar.set_postfix(loss=f"{loss_value:.3f}", img_s=f"{ips:.0f}")
        bar.update(1)
        if done % t.checkpoint_every == 0 or done == t.steps:
            with open(log_path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
                writer.writeheader()
                writer.writerows(rows)
            last_ckpt = save_checkpoint(run_dir, done, method, optimizer, meta, keep=t.keep_checkpoints)
    bar.close()
    seconds = time.perf_counter() - t0
    if step + 1 < t.steps:
        raise RuntimeError(f"the image stream ended at step {step + 1} of {t.steps}")
    return TrainResult(run_dir, t.steps, loss_value, seconds, (t.steps - start) * t.batch_size / seconds, last_ckpt)
