"""Budgets: minutes or images per run -> steps, a speed probe of the real train loop, and the over/under flag.

Equal wall-clock is enforced by the clock: a minutes budget becomes trainer.minutes (the run trains that long and
its warm-up + cosine schedule follows the share of the budget spent), with trainer.steps = TIME_CAP x the steps a
speed probe plans as its bound (`on_the_clock`). A study with `schedule: steps` trains the planned steps instead
(budget x the steady-state steps/second a short run of the same recipe measured, re-planned part-way). After
training the measured seconds are compared with the budget; more than TOLERANCE off either way is flagged.

Example:
    >>> steps_for_budget(5, 2.0)              # 600 steps fill 5 minutes at 2 steps/s
    >>> budget_flag(345.0, 300.0)             # 'over': 15% more than the 5-minute budget (10% is tolerated)
"""

from __future__ import annotations

import csv
import math
import shutil
import time
from pathlib import Path
from typing import Any

from synthsight.config import Config, apply_overrides, config_from_dict
from synthsight.train.echo import stream_steps

TOLERANCE = 0.10  # a run more than 10% over or under its wall-clock budget is flagged
TIME_CAP = 2.0  # a run on the clock (trainer.minutes) may take up to this many times its planned steps


def steps_for_budget(minutes: float, steps_per_second: float, first_steps: int = 0,
                     first_rate: float | None = None) -> int:
    """The number of steps that fill `minutes` at the measured speed (at least 1). A pooled recipe renders its pool
    during its first `first_steps` steps, which run at `first_rate`; the steps after them at `steps_per_second`."""
    if minutes <= 0 or steps_per_second <= 0:
        raise ValueError(f"need minutes > 0 and steps_per_second > 0, got {minutes}, {steps_per_second}")
    seconds = minutes * 60
    if first_steps and first_rate:
        if seconds <= first_steps / first_rate:
            return max(1, int(seconds * first_rate))
        return first_steps + int((seconds - first_steps / first_rate) * steps_per_second)
    return max(1, int(seconds * steps_per_second))


def first_epoch_steps(cfg: Config) -> int:
    """Steps of a pooled recipe's first epoch, which render the pool's images (later ones read them from memory,
    ~1.5x faster for the demo recipe); 0 without a pool."""
    return math.ceil(cfg.data.pool / cfg.trainer.batch_size) if cfg.data.pool else 0


def steps_for_images(images: float, batch_size: int) -> int:
    """The number of global batches that see at least `images` images (at least 1)."""
    if images <= 0 or batch_size < 1:
        raise ValueError(f"need images > 0 and batch_size >= 1, got {images}, {batch_size}")
    return max(1, math.ceil(images / batch_size))


def calibrated_rate(probe_rate: float, runs: list[tuple[int, float]]) -> float:
    """Steps/second for the next run of a recipe: its finished runs' own (total steps / total training seconds),
    which time minutes of training instead of the probe's few seconds, else the probe's rate. `runs` holds
    (steps, training seconds) of finished runs of the same recipe."""
    steps = sum(n for n, s in runs if s > 0)
    seconds = sum(s for _, s in runs if s > 0)
    return steps / seconds if steps and seconds else probe_rate


def probe_rate(rows: list[dict[str, Any]], warmup: int, batch_size: int, until: int | None = None) -> float:
    """Steps per second over the train-log rows after the first `warmup` steps (up to step `until`); each row is one
    step (log_every=1) with its images_per_second (global batch / that step's seconds)."""
    timed = [r for r in rows if warmup < int(r["step"]) <= (until if until is not None else int(r["step"]))]
    if not timed:
        raise ValueError(f"the probe logged no step after its {warmup} warm-up steps")
    seconds = sum(batch_size / float(r["images_per_second"]) for r in timed)
    return len(timed) / seconds


def replanned_steps(log: Path, cfg: Config, budget_seconds: float) -> dict[str, Any]:
    """Total steps for a run paused part-way (train_log.csv in `log` up to its last step) so that it fills
    `budget_seconds`: the steps done, plus what the rest of the budget holds at the speeds the run itself measured:
    a pooled recipe's first epoch (which renders the pool, and will again after the pause) at its own speed, the
    steps after it at theirs. The first logged interval (start-up) counts in the seconds spent, not in the speeds."""
    intervals, first = log_intervals(log, cfg.trainer.batch_size), first_epoch_steps(cfg)
    done, spent = intervals[-1][0], sum(seconds for _, _, seconds in intervals)
    timed = {"first": [0, 0.0], "after": [0, 0.0]}  # steps, seconds
    for step, steps, seconds in intervals[1:]:
        if seconds > 0:
            part = timed["first" if step <= first else "after"]
            part[0], part[1] = part[0] + steps, part[1] + seconds
    rate = {k: n / sec for k, (n, sec) in timed.items() if n and sec > 0}
    steady = rate.get("after") or rate.get("first")
    if steady is None:
        raise ValueError(f"{log}: too few logged steps to measure the run's speed")
    left = budget_seconds - spent
    more = steps_for_budget(left / 60, steady, first, rate.get("first")) if left > 0 else 0
    return {"at_step": done, "seconds": round(spent, 2), "steps_per_second": round(steady, 4),
            "first_epoch_steps_per_second": round(rate["first"], 4) if "first" in rate else None,
            "steps": done + max(1, more)}


def budget_flag(seconds: float | None, budget_seconds: float | None, tolerance: float = TOLERANCE) -> str:
    """'over' / 'under' when the measured training seconds miss the budget by more than `tolerance` (relative),
    'ok' within it, '' when there is no wall-clock budget (an images budget) or nothing was measured."""
    if seconds is None or not budget_seconds:
        return ""
    ratio = seconds / budget_seconds
    if ratio > 1 + tolerance + 1e-9:
        return "over"
    if ratio < 1 - tolerance - 1e-9:
        return "under"
    return "ok"


def schedule_overrides(cfg: Config, steps: int, checkpoints: int) -> list[str]:
    """trainer.steps, a warm-up scaled like the config's own (its warmup_steps / steps ratio, at least 1 step) and
    `checkpoints` evenly spaced checkpoints."""
    t = cfg.trainer
    warmup = max(1, round(steps * t.warmup_steps / t.steps)) if t.warmup_steps else 0
    return [f"trainer.steps={steps}", f"trainer.warmup_steps={min(warmup, steps)}",
            f"trainer.checkpoint_every={max(1, math.ceil(steps / checkpoints))}"]


def with_steps(cfg: Config, steps: int, checkpoints: int) -> Config:
    return config_from_dict(apply_overrides(cfg.to_dict(), schedule_overrides(cfg, steps, checkpoints)))


def on_the_clock(cfg: Config, planned: int, minutes: float, checkpoints: int) -> Config:
    """cfg trained for `minutes` of its loop (trainer.minutes), the schedule following the clock: trainer.steps =
    TIME_CAP x the `planned` steps bounds it, the warm-up keeps the config's share of the run, and `checkpoints`
    checkpoints fall within the planned steps."""
    cap = math.ceil(planned * TIME_CAP)
    overrides = schedule_overrides(cfg, cap, round(checkpoints * TIME_CAP)) + [f"trainer.minutes={minutes}"]
    return config_from_dict(apply_overrides(cfg.to_dict(), overrides))


def probe(cfg: Config, folder: Path, warmup: int = 8, steps: int = 30) -> dict[str, Any]:
    """Measured steady-state steps/second of the real train loop on this recipe: `warmup` untimed steps (worker
    start-up, the batches the data loader renders ahead), then `steps` timed ones. A pooled recipe's first epoch
    renders the pool, so its timed steps come after that epoch, and the steps of the epoch after the warm-up give
    `first_epoch` (its steps and their speed) for steps_for_budget. The folder is removed after."""
    from synthsight.train.loop import pretrain

    echo = cfg.data.echo  # whole echo windows (one render per `echo` steps), as the run will train
    first = first_epoch_steps(cfg)
    warmup, steps = stream_steps(warmup, echo) * echo, stream_steps(steps, echo) * echo
    settle = max(warmup, first)
    n = settle + steps
    probe_cfg = config_from_dict(apply_overrides(cfg.to_dict(), [
        f"trainer.steps={n}", "trainer.log_every=1", f"trainer.checkpoint_every={n}",
        f"trainer.warmup_steps={settle}", "trainer.online_eval_every=0"]))
    shutil.rmtree(folder, ignore_errors=True)
    t0 = time.perf_counter()
    try:
        pretrain(probe_cfg, folder, progress=False)
        with open(folder / "train_log.csv") as f:
            rows = list(csv.DictReader(f))
        out: dict[str, Any] = {"steps_per_second": probe_rate(rows, settle, cfg.trainer.batch_size),
                               "warmup": settle, "steps": steps}
        if first > warmup:
            out["first_epoch"] = {"steps": first, "steps_per_second": probe_rate(rows, warmup, cfg.trainer.batch_size,
                                                                                  until=first)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {**out, "seconds": round(time.perf_counter() - t0, 2)}


def log_intervals(path: Path, batch_size: int) -> list[tuple[int, int, float]]:
    """(step, steps since the row before, their seconds) per row of train_log.csv (each row: the steps since the
    last row at images_per_second; seconds 0 where no speed was logged)."""
    with open(path) as f:
        rows = [(int(r["step"]), float(r["images_per_second"] or 0)) for r in csv.DictReader(f)]
    return [(step, step - last, (step - last) * batch_size / ips if ips > 0 else 0.0)
            for (step, ips), (last, _) in zip(rows, [(0, 0.0)] + rows)]


def log_seconds(path: Path, batch_size: int) -> float | None:
    """Training seconds of the logged steps, from train_log.csv; used for a run that was resumed, whose summary
    counts only its last part."""
    return sum((seconds for _, _, seconds in log_intervals(path, batch_size)), 0.0) if path.is_file() else None
