"""trainer.split=auto: a start-up probe decides how a CPU run shares its cores between rendering and training.

Two ways to use C cores: render in the training process and train on all C threads (workers=0), or give k
data-loader processes the rendering and train on C - k threads (rendering then overlaps training). Which is faster
depends on the families (a fractal batch renders in tens of ms, a StyleGAN batch in seconds) and the network, so
the probe measures, on the run's own stream and method, before anything is written:
    r_C, r_1  seconds to render one batch on C threads and on one (a worker has one)
    s_C, s_1  seconds of one training step on C threads and on C - 1
and picks the smaller expected step: in-process s_C + r_C, or k workers max(s_(C-k), r_1 / k) for k = 1 .. C-1
(s_(C-k) scaled from s_1 by (C - 1) / (C - k)). About two seconds on the demo; measured on this 2-core machine
the demo's families train 1,060 img/s in-process against 796 with one worker (docs/BENCHMARKS.md).

The choice is written into the run's config (trainer.workers, trainer.threads), so a resumed run keeps it
(results depend on the thread count in the last float bits). Only for one CPU process; under torchrun or on a
GPU the configured values stand.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import time
from dataclasses import dataclass

import torch

from synthsight.config import Config


@dataclass(frozen=True)
class Split:
    workers: int
    threads: int
    expected_step: float  # seconds
    figures: dict  # the probe's timings, for the run header


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def pick_split(cores: int, render_all: float, render_one: float, step_all: float, step_but_one: float) -> Split:
    """The split with the smallest expected step time (see the module docstring); pure."""
    best = Split(0, cores, step_all + render_all, {})
    for k in range(1, cores):
        train = step_but_one * (cores - 1) / (cores - k)
        expected = max(train, render_one / k)
        if expected < best.expected_step:
            best = Split(k, cores - k, expected, {})
    return best


def _timed(fn, repeats: int) -> float:
    """The fastest of `repeats` calls of fn (seconds): the least disturbed."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def probe_split(cfg: Config, device: torch.device, batch_size: int, cores: int | None = None) -> Split:
    """Measure the run's stream and step on `cores` threads (default: all usable) and pick the split."""
    from synthsight.train.build import build_stream
    from synthsight.train.loop import build_training, forward_backward

    cores = cores or usable_cores()
    if cores < 2:
        return Split(0, 1, 0.0, {"cores": cores})
    threads = torch.get_num_threads()
    stream = build_stream(cfg, num_batches=None, batch_size=batch_size)
    indices = stream.indices_of_batch(0)
    render_kind = stream.render_with_labels if getattr(stream, "with_labels", False) else stream.render
    batch = next(iter(stream))

    def render() -> None:
        render_kind(indices)

    method, optimizer, scaler = build_training(cfg, device)  # a throwaway copy: the run builds its own
    method.train()
    batches = itertools.repeat(batch)

    def step() -> None:
        forward_backward(method, optimizer, scaler, batches, cfg, 0, device)
        scaler.step(optimizer)
        scaler.update()

    try:
        torch.set_num_threads(cores)
        step()  # warm-up: first-call costs (allocations, kernels, compiled renderers)
        render_all, step_all = _timed(render, 2), _timed(step, 2)
        torch.set_num_threads(1)
        render_one = _timed(render, 2)
        torch.set_num_threads(cores - 1)
        step_but_one = _timed(step, 2)
    finally:
        torch.set_num_threads(threads)
    per_step = cfg.trainer.accumulate / cfg.data.echo  # a step takes this many batches (echoed: a share of one)
    figures = {"cores": cores, "render_s": round(render_all, 4), "render_1_thread_s": round(render_one, 4),
               "step_s": round(step_all, 4), f"step_{cores - 1}_threads_s": round(step_but_one, 4)}
    split = pick_split(cores, render_all * per_step, render_one * per_step, step_all, step_but_one)
    return dataclasses.replace(split, figures=figures)
