"""The pretraining loop: stream -> method loss -> optimiser, with AMP, schedules, checkpoints, resume, and data
parallelism under torchrun (`torchrun --nproc_per_node=N -m synthsight pretrain ...`).

Batch semantics: trainer.batch_size is the global batch of one optimisation step. Each of W processes renders
batch_size / (W x trainer.accumulate) images per micro-batch, and global batch s is always images
[s x batch_size, (s + 1) x batch_size) of the stream, whatever W and accumulate are.

Why a kill loses nothing but time: everything the next step depends on is either in the checkpoint (weights and
buffers, optimiser state, loss-scaler state, skipped-step count, the log) or a pure function of the step (learning
rate, stream position, each image's augmentation = f(seed, step, image index), and the torch RNG, reseeded from
(seed, step, rank) before every step for whatever else draws from it). So `--resume` continues bit for bit
(on CPU; some CUDA kernels are not deterministic).

Run-folder safety: one process writes a run folder at a time (run_lock.py); a --resume is checked (a checkpoint that
fits the network, steps left to run) before anything in the folder changes; a state holding NaN or Inf is never saved
as a checkpoint, so the newest checkpoint is always one to go on from; with trainer.skip_nonfinite a skipped step
also undoes what its forward pass did to the buffers (BatchNorm statistics, queues, centres), and
trainer.max_consecutive_skips skipped steps in a row stop the run.

Example:
    >>> result = pretrain(load_config("demo"), Path("runs/demo"))
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from synthsight import __version__
from synthsight.allocator import keep_freed_memory
from synthsight.augment.rng import PerImageRandom
from synthsight.checkpoint import (
    CheckpointError, latest_good_checkpoint, load_checkpoint, name_some, nonfinite_entries, read_meta,
    remove_stale_temporaries, save_checkpoint, write_text_atomic,
)
from synthsight.config import Config, ConfigError
from synthsight.distributed import mean_across_ranks
from synthsight.generators.base import image_seed
from synthsight.methods.base import StepOutput
from synthsight.precision import autocast, describe as describe_precision
from synthsight.run_lock import run_lock
from synthsight.schedules import budget_position, warmup_cosine
from synthsight.train.build import build_generators, build_method, build_optimizer, build_stream
from synthsight.train.collapse import CollapseError, CollapseMonitor
from synthsight.train.distributed import (
    DistContext, average_buffers, broadcast_int, broadcast_module, broadcast_str, convert_sync_batchnorm,
    data_parallel, distributed_session, no_sync, on_main,
)
from synthsight.train.echo import echo_batches, echo_window
from synthsight.train.online_eval import OnlineKNN
from synthsight.train.split import probe_split
from synthsight.train.tensorboard import log_row, open_tensorboard

# The collapse alarm's figures and the online k-NN top-1 are empty where a row's step measured none; logs written
# before those columns existed are read and continued as they are.
LOG_FIELDS = ["step", "loss", "lr", "images_per_second", "skipped", "emb_std", "eff_rank", "teacher_entropy", "knn"]


class NonFiniteError(RuntimeError):
    """A NaN or infinite loss or gradient; the message names the step, the terms and the last good checkpoint."""


class NonFiniteLossError(NonFiniteError):
    """The loss became NaN or infinite."""


class NonFiniteGradientError(NonFiniteError):
    """The loss was finite but a gradient was not."""


class NonFiniteWeightsError(NonFiniteError):
    """A weight or buffer became NaN or infinite (e.g. BatchNorm statistics); it is not saved as a checkpoint."""


class TrainingOOMError(RuntimeError):
    """The device ran out of memory; the message suggests a smaller batch or fewer crops."""


class RunFolderError(ValueError):
    """The output folder holds a different run."""


class RunFinishedError(RunFolderError):
    """--resume of a run that already ran all its steps; `checkpoint` is its final checkpoint."""

    def __init__(self, message: str, checkpoint: Path):
        super().__init__(message)
        self.checkpoint = checkpoint


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    final_loss: float
    seconds: float
    images_per_second: float
    checkpoint: Path
    skipped_steps: int = 0  # steps skipped for a non-finite loss or gradient (trainer.skip_nonfinite=true)
    last_checks: dict[str, float] = field(default_factory=dict)  # last collapse figures and online k-NN, with steps
    finished_before: bool = False  # --resume of a run that had already finished (only its provenance was written)
    paused: bool = False  # stopped at `stop_at` before the run's end (--resume finishes it)


def prepare_run_dir(run_dir: Path, cfg: Config, resume: bool) -> None:
    """Create the folder; refuse to mix a new run into a folder that holds a different one.

    On resume the config (possibly with overrides such as a larger trainer.steps) replaces config.json, so the
    folder always describes the run as it now continues.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.json"
    current = cfg.to_dict()
    if path.is_file() and not resume:
        previous = read_run_config(run_dir)
        if previous != current:
            raise RunFolderError(
                f"{run_dir} already holds a different run (its config.json differs); "
                "choose another --out, or pass --resume to continue that run"
            )
        if (run_dir / "checkpoints" / "latest").exists():
            raise RunFolderError(f"{run_dir} already holds this run's checkpoints; pass --resume to continue it")
    write_text_atomic(path, json.dumps(current, indent=1))


def read_run_config(run_dir: Path) -> dict:
    """A run folder's config.json as a mapping; RunFolderError naming the file when it is unreadable or corrupt."""
    path = Path(run_dir) / "config.json"
    try:
        values = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunFolderError(f"{path} is corrupt or unreadable ({err}); it describes the run, so nothing can be "
                             "resumed from it: restore it from a copy, or start a new run with another --out") from err
    if not isinstance(values, dict):
        raise RunFolderError(f"{path} holds {type(values).__name__}, not a config mapping; restore it from a copy")
    return values


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # generation workers share the cores with training


def _read_log(path: Path, upto_step: int) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path) as f:
        return [row for row in csv.DictReader(f) if int(row["step"]) <= upto_step]


def _write_log(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_FIELDS, restval="", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def micro_batch_size(batch_size: int, world_size: int, accumulate: int) -> int:
    """Images per process and micro-batch for a global batch of `batch_size`."""
    parts = world_size * accumulate
    if batch_size % parts:
        raise ConfigError(
            f"trainer.batch_size={batch_size} (the global batch) must split evenly over {world_size} process(es) x "
            f"trainer.accumulate={accumulate} micro-batches; use a multiple of {parts}"
        )
    return batch_size // parts


def build_training(
    cfg: Config, device: torch.device
) -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.amp.GradScaler]:
    """The method (with trainer.sync_bn, channels_last and compile applied), its optimiser and loss scaler."""
    t = cfg.trainer
    method = build_method(cfg)  # seeds the global RNG with trainer.seed (models.build.initial_backbone)
    if t.sync_bn:
        method = convert_sync_batchnorm(method, device)
    method = method.to(device)
    method.memory_format = torch.channels_last if t.channels_last else torch.contiguous_format
    if t.channels_last:
        method = method.to(memory_format=torch.channels_last)
    if t.compile:
        for child in method.children():
            child.compile()  # in place: parameter names (and so checkpoints) stay the same
    optimizer = build_optimizer(cfg, method)
    return method, optimizer, torch.amp.GradScaler(device.type, enabled=t.amp == "fp16")


def _resume_point(ctx: DistContext, run_dir: Path) -> Path | None:
    """Rank 0 picks the newest checkpoint that verifies (skipping corrupt ones); every rank gets the same one."""
    ckpt = on_main(ctx, latest_good_checkpoint, run_dir)
    step = broadcast_int(ctx, int(ckpt.name.split("-")[1]) if ckpt is not None else -1)
    return None if step < 0 else run_dir / "checkpoints" / f"step-{step:06d}"


def _resume_state(ckpt: Path, cfg: Config, method: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Load a checkpoint to continue from; RunFolderError naming the changed keys when it does not fit the network
    this config builds (an override of model.* or method.* on --resume)."""
    try:
        return load_checkpoint(ckpt, method, optimizer)
    except CheckpointError:
        raise
    except (RuntimeError, ValueError, KeyError) as err:
        old, new = read_meta(ckpt).get("config", {}), cfg.to_dict()
        changed = [f"{section}.{k}: {old.get(section, {}).get(k)!r} -> {new[section].get(k)!r}"
                   for section in ("model", "method") for k in sorted(set(old.get(section, {})) | set(new[section]))
                   if old.get(section, {}).get(k) != new[section].get(k)]
        what = f"the overrides change {name_some(changed)}" if changed else str(err).splitlines()[0]
        raise RunFolderError(
            f"cannot resume from {ckpt}: its weights do not fit the network this config builds ({what}). Resume "
            "without overrides of model.* or method.*, or start a new run with another --out"
        ) from err


def _grad_norm(params: list[torch.nn.Parameter], clip: float) -> float:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    if clip > 0:
        return float(torch.nn.utils.clip_grad_norm_(params, clip))
    return float(torch.nn.utils.get_total_norm(grads))


def _nonfinite_params(method: torch.nn.Module) -> str:
    bad = [n for n, p in method.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    return ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")


def _oom_message(cfg: Config, ctx: DistContext, per_rank: int, step: int, last_ckpt: Path | None) -> str:
    t = cfg.trainer
    where = f"the last good checkpoint is {last_ckpt}" if last_ckpt else "no checkpoint was written yet"
    return (
        f"{ctx.device} ran out of memory at step {step} with {per_rank} images (x their views) per micro-batch on "
        f"each of {ctx.world_size} process(es). Use a smaller batch: lower trainer.batch_size, or keep it and raise "
        f"trainer.accumulate (e.g. trainer.accumulate={2 * t.accumulate}); or fewer/smaller crops (views.size="
        f"{cfg.views.size}, fewer local crops); trainer.amp=bf16 also helps. {where}; continue with --resume"
    )


def forward_backward(
    method: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, batches: Iterator,
    cfg: Config, step: int, device: torch.device,
) -> tuple[torch.Tensor, StepOutput]:
    """Gradients of one step, summed over trainer.accumulate micro-batches; returns this rank's mean loss and the
    last micro-batch's StepOutput (its loss terms, and embeddings for the collapse alarm). `method` may be wrapped
    by `data_parallel`: its gradients are then averaged over ranks by the last micro-batch's backward."""
    t = cfg.trainer
    optimizer.zero_grad(set_to_none=True)
    total = torch.zeros((), device=device)
    for i in range(t.accumulate):
        batch = next(batches, None)
        if batch is None:
            raise RuntimeError(f"the image stream ended at step {step} of {t.steps}")
        images, indices = batch[0], batch[1]
        labels = batch[2].to(device, non_blocking=True) if len(batch) > 2 else None
        g = PerImageRandom.for_images(t.seed, step, indices.tolist())  # augmentation: f(seed, step, image)
        with no_sync(method) if i < t.accumulate - 1 else contextlib.nullcontext():
            with autocast(t.amp, device):
                out = method.training_step(images.to(device, non_blocking=True), g, labels)
            scaler.scale(out.loss / t.accumulate).backward()
        total += out.loss.detach().float()
    return total / t.accumulate, out


def _nonfinite_error(problem: str, step: int, loss: float, grad_norm: float, terms: dict[str, float],
                     method: torch.nn.Module, last_ckpt: Path | None) -> NonFiniteError:
    where = f"the last good checkpoint is {last_ckpt}" if last_ckpt else "no checkpoint was written yet"
    advice = ("Try a lower trainer.lr, trainer.amp=bf16 instead of fp16, or trainer.grad_clip=3.0, or "
              "trainer.skip_nonfinite=true to skip such steps, then --resume")
    if problem == "loss":
        return NonFiniteLossError(f"loss is {loss} at step {step} (terms {terms}); {where}. {advice}")
    return NonFiniteGradientError(
        f"gradient norm is {grad_norm} at step {step} (loss {loss:.5f}, terms {terms}; non-finite in "
        f"{_nonfinite_params(method)}); {where}. {advice}"
    )


def _after_step(ctx: DistContext, cfg: Config, done: int, out: StepOutput, method: torch.nn.Module,
                monitor: CollapseMonitor | None, online: OnlineKNN | None, last_ckpt: Path | None,
                checks: dict[str, float], final: bool) -> dict[str, str]:
    """The checks due after optimisation step `done`: the collapse alarm (after warm-up; raises CollapseError on every
    rank once it has fired trainer.collapse_patience times in a row) and the online k-NN, both on rank 0. Returns
    their train_log.csv columns (empty when none was due) and records the figures in `checks`. `final`: the run's
    last step (the online k-NN always runs there)."""
    t, columns = cfg.trainer, {}
    if monitor is not None and done > t.warmup_steps and done % t.collapse_check_every == 0:
        figures = on_main(ctx, monitor.check, out, done, last_ckpt)
        if figures is not None and (log := figures.as_log()):
            columns.update(log)
            checks.update({k: float(v) for k, v in log.items()}, collapse_check_step=done)
    if t.online_eval_every and (done % t.online_eval_every == 0 or final):
        knn = on_main(ctx, lambda: online.evaluate(method.backbone, ctx.device, method.memory_format))
        if knn is not None:
            columns["knn"] = f"{knn:.4f}"
            checks.update(knn=knn, knn_step=done)
    return columns


def run_header(cfg: Config, run_dir: Path, device: torch.device, world_size: int, start: int,
               resumed_from: Path | None) -> str:
    """One line at the start of a run: what trains, where, and from which step."""
    m = cfg.model
    source = f"real images {cfg.data.real}" if cfg.data.real else f"{len(cfg.data.families)} synthetic famil" + (
        "y" if len(cfg.data.families) == 1 else "ies")
    where = f"resumed from step {start} ({resumed_from.name})" if resumed_from is not None else "from step 0"
    t = cfg.trainer
    length = f"{t.minutes:g} min (at most {t.steps} steps)" if t.minutes else f"{t.steps} steps"
    return (f"pretrain: {cfg.method['name']} on {source}, backbone {m.backbone} (width {m.width}), device {device}, "
            f"{describe_precision(t.amp, device)}, {world_size} process(es), {length} of {t.batch_size} images, "
            f"{where}; run folder {run_dir}")


def pretrain(cfg: Config, run_dir: Path, resume: bool = False, progress: bool = True,
             stop_at: int | None = None) -> TrainResult:
    """Train cfg.method on the synthetic stream for cfg.trainer.steps steps; checkpoints go to run_dir.
    `stop_at`: pause after that step with a checkpoint (the schedule still spans trainer.steps); --resume goes on,
    with the same or another trainer.steps (the study harness re-plans a wall-clock budget so).

    With trainer.minutes > 0 the run trains for that many minutes of its loop instead (trainer.steps is then its
    upper bound): the schedules (learning rate, the methods' momentum and temperature) follow the share of the budget
    spent (`schedules.budget_position`), so warm-up and decay fill the minutes however fast the machine runs; the
    seconds spent are kept in every checkpoint, and a resumed run goes on with what is left.

    Under torchrun every process calls this; rank 0's run_dir is used, and only rank 0 logs, writes and holds the
    run folder's lock (RunLockedError when another process holds it).
    """
    with distributed_session(cfg.trainer.device) as ctx, contextlib.ExitStack() as held:
        return _pretrain(cfg, Path(run_dir), resume, progress, ctx, held, stop_at)


def _pretrain(cfg: Config, run_dir: Path, resume: bool, progress: bool, ctx: DistContext,
              held: contextlib.ExitStack, stop_at: int | None = None) -> TrainResult:
    t = cfg.trainer
    end = min(t.steps, stop_at) if stop_at else t.steps  # the last step this call trains
    per_rank = micro_batch_size(t.batch_size, ctx.world_size, t.accumulate)
    device = ctx.device
    build_generators(cfg)  # a bad family or method option fails here, before the run folder is touched
    if device.type == "cpu":
        keep_freed_memory()  # the step's activation buffers are reused, not page-faulted in again every step
    split = None
    if t.split == "auto" and not resume and device.type == "cpu" and not ctx.distributed:
        split = probe_split(cfg, device, per_rank)  # written into config.json below: a resume keeps it
        t.workers, t.threads = split.workers, split.threads
    if t.threads > 0:
        torch.set_num_threads(t.threads)
    # online evaluation data is loaded once, on rank 0; a missing set fails here too
    online = on_main(ctx, OnlineKNN.from_config, cfg) if t.online_eval_every else None
    monitor = CollapseMonitor.from_config(t) if t.collapse_check_every else None
    method, optimizer, scaler = build_training(cfg, device)
    run_dir = Path(broadcast_str(ctx, str(run_dir)))
    on_main(ctx, held.enter_context, run_lock(run_dir))  # one writer per run folder, until pretrain returns

    start, last_ckpt, skipped, spent = 0, None, 0, 0.0  # spent: seconds of the training loop before this call
    budget = t.minutes * 60  # 0: no time budget, the schedule follows the step
    if resume:  # checked before anything is written: a refused --resume leaves the folder as it was
        last_ckpt = _resume_point(ctx, run_dir)
        if last_ckpt is None and ctx.is_main:
            print(f"warning: {run_dir} holds no valid checkpoint; starting from step 0", file=sys.stderr)
        if last_ckpt is not None:
            meta = _resume_state(last_ckpt, cfg, method, optimizer)
            start, skipped, spent = meta["step"], meta.get("skipped_steps", 0), float(meta.get("train_seconds", 0.0))
            if scaler.is_enabled() and meta.get("scaler"):
                scaler.load_state_dict(meta["scaler"])
    if start >= t.steps:
        raise RunFinishedError(f"{run_dir} already finished {start} of {t.steps} steps; raise trainer.steps to go on",
                               last_ckpt)
    if budget and spent >= budget:
        raise RunFinishedError(f"{run_dir} already trained its trainer.minutes={t.minutes:g} ({spent:.0f} s of its "
                               f"loop, {start} steps); raise trainer.minutes to go on", last_ckpt)
    if start >= end:
        raise ValueError(f"stop_at={stop_at}: {run_dir} is already at step {start}")
    on_main(ctx, prepare_run_dir, run_dir, cfg, resume)
    on_main(ctx, remove_stale_temporaries, run_dir)
    broadcast_module(ctx, method)  # every rank starts from rank 0's weights
    model = data_parallel(method, t.accumulate)  # the method, in DistributedDataParallel under torchrun

    log_path = run_dir / "train_log.csv"
    rows = _read_log(log_path, start) if ctx.is_main else []
    board = open_tensorboard(run_dir) if t.log == "tensorboard" and ctx.is_main else None
    if progress and ctx.is_main:
        print(run_header(cfg, run_dir, device, ctx.world_size, start, last_ckpt), file=sys.stderr)
        if split is not None:
            print(f"pretrain: trainer.split=auto chose workers={split.workers}, threads={split.threads} (probe, "
                  f"seconds: {split.figures})", file=sys.stderr)
    echo = cfg.data.echo  # data echoing: step s trains on the stream's step s // echo (train/echo.py)
    first, count = echo_window(start, t.steps, echo)
    stream = build_stream(cfg, start_batch=first * t.accumulate, num_batches=count * t.accumulate,
                          rank=ctx.rank, world_size=ctx.world_size, batch_size=per_rank)
    loader = DataLoader(stream, batch_size=None, num_workers=t.workers, worker_init_fn=_worker_init,
                        prefetch_factor=4 if t.workers else None, pin_memory=device.type == "cuda")
    batches = echo_batches(iter(loader), t.accumulate, echo, first_repeats=echo - start % echo)
    meta = {"config": cfg.to_dict(), "synthsight_version": __version__, "images_seen_per_step": t.batch_size,
            "world_size": ctx.world_size, "precision": describe_precision(t.amp, device)}
    params = [p for p in method.parameters() if p.requires_grad]
    in_a_row = 0  # steps skipped in a row (trainer.skip_nonfinite)

    method.train()
    show = progress and ctx.is_main
    bar = tqdm(total=round(budget), initial=round(spent), desc="pretrain", unit="s", disable=not show,
               dynamic_ncols=True) if budget else \
        tqdm(total=t.steps, initial=start, desc="pretrain", unit="step", disable=not show, dynamic_ncols=True)
    spent_before, out_of_time, done = spent, False, start
    t0 = tick = time.perf_counter()
    tick_step = start
    loss_value = float("nan")
    checks: dict[str, float] = {}  # the last figures of the collapse alarm and online k-NN, for the summary
    postfix: dict[str, str] = {}
    if online is not None and progress:
        tqdm.write(online.describe(), file=sys.stderr)
    for step in range(start, end):
        at = budget_position(spent, budget, t.steps) if budget else step  # where the schedules stand
        lr = warmup_cosine(at, t.steps, t.lr, t.warmup_steps, t.min_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(image_seed(t.seed, step, f"torch/rank{ctx.rank}"))  # dropout etc.: a pure fn of step
        buffers = [b.detach().clone() for b in method.buffers()] if t.skip_nonfinite else None  # undone on a skip
        try:
            loss, out = forward_backward(model, optimizer, scaler, batches, cfg, step, device)  # grads: rank mean
            loss_value = float(mean_across_ranks(loss))
            scaler.unscale_(optimizer)
            method.before_optimizer_step(int(at), t.steps)
            grad_norm = _grad_norm(params, t.grad_clip)
            # With fp16 an overflowing gradient is routine: the loss scaler skips that step and lowers its scale.
            problem = "loss" if not math.isfinite(loss_value) else \
                "gradient" if not scaler.is_enabled() and not math.isfinite(grad_norm) else None
            if problem is None:
                scaler.step(optimizer)
                scaler.update()
                method.after_optimizer_step(int(at), t.steps)
        except torch.OutOfMemoryError as err:
            raise TrainingOOMError(_oom_message(cfg, ctx, per_rank, step, last_ckpt)) from err
        if problem is not None:
            if not t.skip_nonfinite:
                raise _nonfinite_error(problem, step, loss_value, grad_norm, out.terms, method, last_ckpt)
            skipped, in_a_row = skipped + 1, in_a_row + 1
            optimizer.zero_grad(set_to_none=True)
            scaler.update()
            with torch.no_grad():  # the forward pass of a NaN batch also wrote NaN into BatchNorm statistics etc.
                for buf, saved in zip(method.buffers(), buffers):
                    buf.copy_(saved)
            if ctx.is_main:
                tqdm.write(f"warning: step {step}: {problem} is not finite (loss {loss_value}, gradient norm "
                           f"{grad_norm}); step skipped, {skipped} so far (trainer.skip_nonfinite=true)", sys.stderr)
            if in_a_row >= t.max_consecutive_skips:
                where = f"the last good checkpoint is {last_ckpt}" if last_ckpt else "no checkpoint was written yet"
                raise NonFiniteError(
                    f"{in_a_row} steps in a row (up to step {step}) had a non-finite {problem} and were skipped "
                    f"(trainer.max_consecutive_skips={t.max_consecutive_skips}): the run is not recovering; {where}. "
                    "Try a lower trainer.lr, trainer.grad_clip=3.0 or trainer.amp=bf16 instead of fp16, then --resume"
                )
        else:
            in_a_row = 0

        done = step + 1
        spent = spent_before + time.perf_counter() - t0
        if budget:  # rank 0's clock decides, so that every rank stops after the same step
            spent = broadcast_int(ctx, round(spent * 1000)) / 1000
            out_of_time = spent >= budget
        last = done == end or out_of_time
        try:
            columns = {} if problem else _after_step(ctx, cfg, done, out, method, monitor, online, last_ckpt, checks,
                                                     out_of_time or done == t.steps)
        except CollapseError:  # (rank 0) keep the figures of the collapsed checks; resume reads up to its checkpoint
            _write_log(log_path, rows)
            raise
        if ctx.is_main and (done % t.log_every == 0 or last or columns):
            now = time.perf_counter()
            ips = (done - tick_step) * t.batch_size / max(now - tick, 1e-9)
            tick, tick_step = now, done
            rows.append({"step": done, "loss": f"{loss_value:.5f}", "lr": f"{lr:.6g}",
                         "images_per_second": f"{ips:.1f}", "skipped": skipped, **columns})
            if board is not None:
                log_row(board, rows[-1])
            postfix.update(loss=f"{loss_value:.3f}", img_s=f"{ips:.0f}")
            if "knn" in columns:
                postfix["knn"] = f"{100 * float(columns['knn']):.1f}%"
            bar.set_postfix(dict(postfix, step=done) if budget else postfix)
        bar.update(min(round(spent), bar.total) - bar.n if budget else 1)
        due = done % t.checkpoint_every == 0
        if due and monitor is not None:  # no checkpoint while the collapse alarm counts collapsed checks (but the
            due = broadcast_int(ctx, monitor.streak) == 0  # last), so the newest stays the last good one to resume
        if due or last:
            average_buffers(ctx, method)  # BatchNorm statistics of the global stream, the same on every rank
            bad = nonfinite_entries(method.state_dict())  # the same on every rank: all stop together
            if bad:  # never saved: the newest checkpoint stays the last one training can go on from
                where = f"the last good checkpoint is {last_ckpt}" if last_ckpt else "no checkpoint was written yet"
                raise NonFiniteWeightsError(
                    f"NaN or Inf in {name_some(bad)} at step {done} although every loss and gradient was finite or "
                    f"skipped; this state is not saved, {where}. Try a lower trainer.lr, trainer.grad_clip=3.0 or "
                    "trainer.amp=bf16 instead of fp16, then --resume"
                )
            state = dict(meta, skipped_steps=skipped, scaler=scaler.state_dict() if scaler.is_enabled() else None,
                         train_seconds=round(spent, 3))
            on_main(ctx, _write_log, log_path, rows)
            on_main(ctx, save_checkpoint, run_dir, done, method, optimizer, state, keep=t.keep_checkpoints)
            last_ckpt = run_dir / "checkpoints" / f"step-{done:06d}"
        if out_of_time:
            break
    bar.close()
    finished = out_of_time or done >= t.steps
    if budget and not out_of_time and finished and ctx.is_main:
        print(f"warning: trainer.steps={t.steps} reached after {spent:.0f} s, before trainer.minutes={t.minutes:g} "
              f"was spent: the schedule stopped at {100 * spent / budget:.0f}% of its course; raise trainer.steps",
              file=sys.stderr)
    if board is not None:
        board.close()
    seconds = time.perf_counter() - t0
    return TrainResult(run_dir, done, loss_value, seconds, (done - start) * t.batch_size / seconds, last_ckpt,
                       skipped, checks, paused=not finished)
