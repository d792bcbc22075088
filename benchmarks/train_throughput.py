"""Training images per second of every registered method x backbone, with and without each speed switch.

Each row times the train loop's own step (`train.loop.forward_backward`, then the optimiser step through the loss
scaler): --warmup steps (which include torch.compile's compilation), then --steps timed steps. The images/second
figure is the global batch divided by the median step time (robust to a neighbour process stealing a core on a
small machine); the mean is printed beside it. Rows feed a fixed batch of random tensors to isolate the training
step; the last row per method pulls batches from the real generator stream through the DataLoader (trainer.workers
processes rendering beside training), with the preset's switches. Methods that distil from teachers get a
randomly initialised SimCLR smallconv teacher (its forward pass is part of their cost). A row that runs past
--max-seconds stops early (the step count is printed); on CPU fp16 (no fast kernels there) is timed for the first
backbone only. On a shared machine prefer --threads 1: a busy neighbour stalls every multi-threaded region. The stream row's
fixed-batch counterpart is the `bf16+channels_last` row (the CPU presets' switches). The real-image comparison
with a per-image PIL pipeline on the same network is benchmarks/pipelines.py.

Usage:
    python benchmarks/train_throughput.py                              # 32 px, batch 64, smallconv + resnet18
    python benchmarks/train_throughput.py --batch-size 256 --device cuda
    python benchmarks/train_throughput.py --backbones smallconv --switches baseline,bf16
"""

from __future__ import annotations

import argparse
import atexit
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import torch
from machine import cpu_model  # benchmarks/machine.py (scripts run from this folder)
from torch.utils.data import DataLoader

from synthsight.checkpoint import save_checkpoint
from synthsight.config import Config, ConfigError, load_config
from synthsight.family_spec import families_label
from synthsight.precision import describe as describe_precision
from synthsight.registry import METHODS
from synthsight.train.build import build_method, build_stream
from synthsight.train.distributed import (
    DistContext, all_reduce_mean, any_rank, broadcast_module, data_parallel, distributed_session,
)
from synthsight.train.echo import echo_batches
from synthsight.train.loop import build_training, forward_backward, micro_batch_size

# Each row: the switches it sets on top of the baseline (fp32, contiguous, eager, no accumulation).
SWITCHES = {
    "baseline": [],
    "bf16": ["trainer.amp=bf16"],
    "fp16": ["trainer.amp=fp16"],
    "channels_last": ["trainer.channels_last=true"],
    "compile": ["trainer.compile=true"],
    "accumulate=2": ["trainer.accumulate=2"],
    "bf16+channels_last": ["trainer.amp=bf16", "trainer.channels_last=true"],  # the CPU presets' switches
    "bf16+channels_last+compile": ["trainer.amp=bf16", "trainer.channels_last=true", "trainer.compile=true"],
}
NEEDS_TEACHER = {"distill"}  # methods that learn from teacher checkpoints: given a random-init SimCLR smallconv one
BASELINE = ["trainer.amp=none", "trainer.channels_last=false", "trainer.compile=false", "trainer.accumulate=1"]


def machine(device: torch.device, ctx: DistContext, grad_sync: str) -> str:
    lines = [f"cpu: {cpu_model()} ({os.cpu_count()} logical cores), torch threads: {torch.get_num_threads()}",
             f"python {platform.python_version()}, torch {torch.__version__}"]
    if ctx.distributed:
        backend = "nccl" if device.type == "cuda" else "gloo"
        lines.append(f"processes: {ctx.world_size} ({backend}), gradient averaging: {grad_sync}")
    if device.type == "cuda":
        lines.append(f"device: {torch.cuda.get_device_name(device)}")
    if hasattr(os, "getloadavg"):
        lines.append("load average before the run: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    return "\n".join(lines)


def teacher_checkpoint(common: list[str]) -> Path:
    """A randomly initialised SimCLR smallconv checkpoint (only its cost matters here), in a temporary folder."""
    cfg = load_config("demo", ["method=simclr", "model.backbone=smallconv", *common])
    folder = Path(tempfile.mkdtemp(prefix="synthsight-bench-teacher-"))
    atexit.register(shutil.rmtree, folder, True)
    return save_checkpoint(folder, 0, build_method(cfg), None, {"config": cfg.to_dict()})


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # as in the train loop: generation workers share the cores with training


def _rate(ips: float) -> str:
    return f"{ips:.1f}" if ips < 100 else f"{ips:.0f}"  # a decimal where a step takes seconds


def synthetic_batches(batch: int, size: int, seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))
    while True:
        yield images, torch.arange(batch)


def allreduce_gradients(ctx: DistContext, method: torch.nn.Module) -> None:
    """The gradient averaging synthsight used before DistributedDataParallel (up to commit 48a3bcc): after every
    backward pass of the step, all gradients averaged in flat 25 MB buckets. Kept only as the reference that the
    DDP rows are measured against."""
    if not ctx.distributed:
        return
    params = [p for p in method.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    all_reduce_mean(ctx, [p.grad for p in params])


def step_runner(cfg: Config, device: torch.device, real_stream: bool, ctx: DistContext,
                grad_sync: str) -> Callable[[int], float]:
    """A fresh method, optimiser and batch source, and a function that runs training step `step` and returns its
    seconds: the loop's forward_backward, the gradient averaging (`grad_sync`: ddp or allreduce, under torchrun)
    and the optimiser step through the loss scaler."""
    t = cfg.trainer
    method, optimizer, scaler = build_training(cfg, device)
    broadcast_module(ctx, method)
    model = data_parallel(method, t.accumulate) if grad_sync == "ddp" else method
    method.train()
    micro = micro_batch_size(t.batch_size, ctx.world_size, t.accumulate)
    if real_stream:
        stream = build_stream(cfg, batch_size=micro, rank=ctx.rank, world_size=ctx.world_size)
        loader = DataLoader(stream, batch_size=None, num_workers=t.workers, worker_init_fn=_one_thread,
                            prefetch_factor=4 if t.workers else None, pin_memory=device.type == "cuda")
        batches = echo_batches(iter(loader), t.accumulate, cfg.data.echo)  # as pretrain: data.echo reuses batches
    else:
        batches = synthetic_batches(micro, cfg.data.render_size, seed=ctx.rank)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def run(step: int) -> float:
        start = time.perf_counter()
        forward_backward(model, optimizer, scaler, batches, cfg, step, device)
        if grad_sync == "allreduce":
            allreduce_gradients(ctx, method)
        scaler.step(optimizer)
        scaler.update()
        sync()
        return time.perf_counter() - start

    return run


def time_alternating(overrides: list[str], device: torch.device, warmup: int, steps: int, real_stream: bool,
                     max_seconds: float = float("inf"), ctx: DistContext | None = None,
                     grad_syncs: tuple[str, ...] = ("ddp",)) -> dict[str, list[float]]:
    """Seconds of each timed step per gradient averaging, their steps alternating (A B, then B A, ...) so that a
    busy neighbour slows each alike; past `max_seconds` a row stops early (after at least one warm-up and one timed
    step of each). Under torchrun (`ctx` with several processes) each rank trains its share of the global batch."""
    ctx = ctx or DistContext(device=device)
    cfg = load_config("demo", overrides)
    runners = {mode: step_runner(cfg, device, real_stream, ctx, mode) for mode in grad_syncs}
    times: dict[str, list[float]] = {mode: [] for mode in grad_syncs}
    begin, step = time.perf_counter(), 0
    while len(times[grad_syncs[-1]]) < steps:
        for mode, run in list(runners.items())[:: 1 if step % 2 == 0 else -1]:
            seconds = run(step)
            if step >= warmup:
                times[mode].append(seconds)
        step += 1
        if any_rank(ctx, time.perf_counter() - begin > max_seconds):  # every rank stops at the same step
            if times[grad_syncs[-1]]:
                break
            warmup = min(warmup, step)  # over budget while warming up: time the next step, then stop
    return times


def time_steps(overrides: list[str], device: torch.device, warmup: int, steps: int, real_stream: bool,
               max_seconds: float = float("inf"), ctx: DistContext | None = None,
               grad_sync: str = "ddp") -> list[float]:
    """Seconds of each timed step of one setup (see time_alternating)."""
    return time_alternating(overrides, device, warmup, steps, real_stream, max_seconds, ctx, (grad_sync,))[grad_sync]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default=",".join(METHODS.names()))
    parser.add_argument("--backbones", default="smallconv,resnet18")
    parser.add_argument("--switches", default=",".join(SWITCHES), help=f"rows among: {', '.join(SWITCHES)}")
    parser.add_argument("--size", type=int, default=32, help="view side in pixels (images render at the same size)")
    parser.add_argument("--batch-size", type=int, default=64, help="global batch per step")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation happens here)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    parser.add_argument("--no-stream", action="store_true", help="skip the real-generator-stream rows")
    parser.add_argument("--max-seconds", type=float, default=90,
                        help="a row past this many seconds stops early (after one warm-up and one timed step)")
    parser.add_argument("--grad-sync", default="ddp",
                        help="under torchrun: ddp (the train loop's DistributedDataParallel), allreduce (the "
                             "hand-written bucketed all-reduce it replaced), or both, 'ddp,allreduce': their steps "
                             "then alternate within each row")
    args = parser.parse_args()
    args.grad_sync = tuple(args.grad_sync.split(","))
    if not set(args.grad_sync) <= {"ddp", "allreduce"}:
        parser.error(f"--grad-sync {','.join(args.grad_sync)}: choose among ddp, allreduce")
    if args.threads:
        torch.set_num_threads(args.threads)
    with distributed_session(args.device) as ctx:
        if not ctx.is_main:
            sys.stdout = open(os.devnull, "w")  # rank 0 prints the table; the others only train
        run(args, ctx)


def run(args: argparse.Namespace, ctx: DistContext) -> None:
    device = ctx.device
    launcher = f"torchrun --nproc_per_node={ctx.world_size}" if ctx.distributed else "python"
    print(f"command: {launcher} {' '.join(sys.argv)}\n{machine(device, ctx, ', '.join(args.grad_sync))}\n"
          f"trainer.amp=bf16 rows run in {describe_precision('bf16', device)} (synthsight/precision.py)\n")
    backbones = args.backbones.split(",")
    common = [f"views.size={args.size}", f"data.render_size={args.size}", f"trainer.batch_size={args.batch_size}",
              f"trainer.device={device}", "trainer.threads=0"]

    print("| method | backbone | switches | input | images/s (median step) | mean step ms (timed) | vs baseline |")
    print("|---|---|---|---|---|---|---|")
    for method in args.methods.split(","):
        if method in NEEDS_TEACHER:
            common_m = [*common, f"method.teachers=[{teacher_checkpoint(common)}]"]
        else:
            common_m = common
        try:
            build_method(load_config("demo", [f"method={method}", *common_m]))
        except ConfigError as err:  # a method that needs options this script does not know how to give
            print(f"| {method} | - | - | - | skipped: {err} | - | - |", flush=True)
            continue
        for backbone in backbones:
            base: dict[str, float] = {}
            for name in args.switches.split(","):
                overrides = [f"method={method}", f"model.backbone={backbone}", *common_m, *BASELINE, *SWITCHES[name]]
                if name == "fp16" and device.type == "cpu" and backbone != backbones[0]:
                    print(f"| {method} | {backbone} | {name} | - | not run: fp16 has no fast CPU kernels (see "
                          f"{backbones[0]}); use bf16 on CPU | - | - |", flush=True)
                    continue
                timed = time_alternating(overrides, device, args.warmup, args.steps, False, args.max_seconds, ctx,
                                         args.grad_sync)
                for mode, times in timed.items():
                    ips = args.batch_size / statistics.median(times)
                    if name == "baseline":
                        base[mode] = ips
                    ratio = f"{ips / base[mode]:.2f}x" if mode in base else "-"
                    label = f"{name}, {mode}" if len(timed) > 1 else name
                    print(f"| {method} | {backbone} | {label} | random tensors | {_rate(ips)} | "
                          f"{1000 * statistics.mean(times):.0f} ({len(times)} steps) | {ratio} |", flush=True)
        if not args.no_stream:
            backbone = backbones[0]
            overrides = [f"method={method}", f"model.backbone={backbone}", *common_m]
            cfg = load_config("demo", overrides)
            timed = time_alternating(overrides, device, args.warmup, args.steps, True, args.max_seconds, ctx,
                                     args.grad_sync)
            families = families_label(cfg.data.families, "+")
            for mode, times in timed.items():
                ips = args.batch_size / statistics.median(times)
                label = f", {mode}" if len(timed) > 1 else ""
                print(f"| {method} | {backbone} | preset (amp={cfg.trainer.amp}, channels_last="
                      f"{cfg.trainer.channels_last}, workers={cfg.trainer.workers}){label} | stream {families} | "
                      f"{_rate(ips)} | {1000 * statistics.mean(times):.0f} ({len(times)} steps) | - |", flush=True)


if __name__ == "__main__":
    main()
