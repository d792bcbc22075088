"""Schedules as pure functions of the step (no hidden counters): resuming at step s gives the same value. A run with
a wall-clock budget (trainer.minutes) feeds them its position in the budget instead (budget_position)."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total_steps: int, peak: float, warmup_steps: int = 0, final: float = 0.0) -> float:
    """Linear warm-up from ~0 to `peak` over `warmup_steps`, then cosine decay to `final` at `total_steps`."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be > 0, got {total_steps}")
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return final + 0.5 * (peak - final) * (1 + math.cos(math.pi * progress))


def budget_position(seconds: float, budget_seconds: float, total_steps: int) -> float:
    """Where a run with a wall-clock budget (trainer.minutes) stands in a schedule of `total_steps` steps: the share
    of the budget spent, in steps. Warm-up and decay keep their share of the run however fast the machine turns
    out to be; a slow or fast stretch moves the schedule by its seconds, not by its steps."""
    if budget_seconds <= 0:
        raise ValueError(f"budget_seconds must be > 0, got {budget_seconds}")
    return total_steps * min(1.0, max(0.0, seconds / budget_seconds))
