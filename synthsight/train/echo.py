"""Data echoing (Choi et al. 2019, "Faster neural network training with data echoing"): each rendered batch trains
`echo` consecutive optimisation steps, each step drawing its own views (augmentation = f(seed, step, image)).

Rendering a batch of formula images can cost as much as a training step on a small CPU; echoing divides that cost
by `echo` while every step still sees `batch_size` images in fresh views. What it changes is the number of unique
images: steps x batch_size / echo. Step s trains on stream step s // echo, so a resumed run (and every rank and
micro-batch) sees exactly the images it would have seen without the interruption.

Example:
    >>> first, count = echo_window(start=5, steps=12, echo=4)   # stream step 1 (steps 4-7), 3 stream steps in all
    >>> batches = echo_batches(iter(loader), accumulate=1, echo=4, first_repeats=3)
"""

from __future__ import annotations

from typing import Iterator, TypeVar

T = TypeVar("T")


def stream_steps(steps: int, echo: int) -> int:
    """Stream steps (rendered batches) that optimisation steps 0..steps-1 train on."""
    return -(-steps // echo)


def echo_window(start: int, steps: int, echo: int) -> tuple[int, int]:
    """(first stream step, number of stream steps) that optimisation steps start..steps-1 train on."""
    first = start // echo
    return first, stream_steps(steps, echo) - first


def echo_batches(batches: Iterator[T], accumulate: int, echo: int, first_repeats: int | None = None) -> Iterator[T]:
    """Each group of `accumulate` micro-batches (one optimisation step's) of `batches`, yielded `echo` times in a row;
    the first group `first_repeats` times (a run resumed part-way through an echo: echo - start % echo)."""
    if echo < 1 or accumulate < 1:
        raise ValueError(f"need echo >= 1 and accumulate >= 1, got {echo}, {accumulate}")
    if echo == 1:
        yield from batches
        return
    repeats = echo if first_repeats is None else first_repeats
    while True:
        group = []
        for _ in range(accumulate):
            batch = next(batches, None)
            if batch is None:
                return
            group.append(batch)
        for _ in range(repeats):
            yield from group
        repeats = echo
