"""Milliseconds to render one training batch of a preset's synthetic stream (what a CPU run pays per step before
data.echo divides it), median over fresh batches. Run it in two checkouts, alternating, to compare renderers.

Usage:
    python benchmarks/render_batch.py --preset demo --batches 20 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from synthsight.config import load_config
from synthsight.train.build import build_stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--batches", type=int, default=20, help="timed batches (stream batches 0..N-1)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.preset)
    stream = build_stream(cfg)
    render = stream.render_with_labels if stream.with_labels else stream.render
    render(stream.indices_of_batch(10_000))  # warm-up: compiled kernels, caches
    times = []
    for b in range(args.batches):
        start = time.perf_counter()
        render(stream.indices_of_batch(b))
        times.append(time.perf_counter() - start)
    print(f"{args.preset}: {cfg.trainer.batch_size} images at {cfg.data.render_size} px, {args.threads} thread(s): "
          f"median {1000 * statistics.median(times):.1f} ms per batch (mean {1000 * statistics.mean(times):.1f}, "
          f"{args.batches} batches)")


if __name__ == "__main__":
    main()
