"""Images per second of every generator family x variant, on one thread and on all threads.

Each cell renders fresh images (new indices every batch, so no caching helps) after one warm-up batch, in
--repeats windows of at least --min-time seconds each, and reports the best window (the least disturbed by other
processes: while another process keeps one core busy, every parallel region waits for the descheduled thread,
and on a 2-core machine the all-threads rate of the op-heavy dead-leaves renderer can drop 10-80x). The speedup
column compares the one-thread rate with the reference implementations' figures (one CPU core, REFERENCE.md
section 3).

Usage:
    python benchmarks/generators.py --sizes 32,128,256
    python benchmarks/generators.py --families dead_leaves --sizes 128 --threads 1
    python benchmarks/generators.py --device cuda --threads all
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import torch
from machine import cpu_model  # benchmarks/machine.py (scripts run from this folder)

from synthsight.generators import GENERATORS, create_generator

# One CPU core, reference code (REFERENCE.md section 3): (family, variant or None for any, size) -> img/s
REFERENCE = {
    ("dead_leaves", "mixed", 128): 2.3,
    ("dead_leaves", "mixed", 256): 0.60,
    ("spectrum", None, 128): 29.8,  # numpy FFT, 10 iterations
    ("spectrum", None, 256): 6.5,
    ("statistical", "spectrum_color_wmm", 128): 2.0,
    ("statistical", "spectrum_color_wmm", 256): 0.54,
    ("fractal_ifs", "svd", 128): 110.0,  # Anderson & Farrell's numba renderer
    ("fractal_ifs", "svd", 256): 98.0,
    ("fractal_ifs", "fractaldb", 128): 1.0,  # FractalDB's Python loops + PIL (~1 img/s)
    ("fractal_ifs", "fractaldb", 256): 1.0,
    ("contours", "rcdb", 256): 55.0,
    ("contours", "visual_atoms", 256): 8.1,
}
# Targets at 128 px on one thread (foundation issue and generator-families issue).
TARGETS = {
    ("dead_leaves", "mixed"): 230.0, ("spectrum", "color"): 1500.0, ("spectrum", "gray"): 1500.0,
    ("statistical", "spectrum_color_wmm"): 200.0,
    **{("fractal_ifs", v): 550.0 for v in ("svd", "fractaldb", "1p_frac")},
    **{("contours", v): 500.0 for v in ("rcdb", "visual_atoms")},
    **{("stylegan_random", v): 100.0 for v in ("oriented", "default_init", "sparse")},
    ("programs", "default"): 100.0,
}


def machine_info(device: torch.device) -> str:
    lines = [
        f"cpu: {cpu_model()} ({os.cpu_count()} logical cores)",
        f"python {platform.python_version()}, torch {torch.__version__}, MKL {torch.backends.mkl.is_available()}",
    ]
    if hasattr(os, "getloadavg"):
        lines.append("load average before the run: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    if device.type == "cuda":
        lines.append(f"device: {torch.cuda.get_device_name(device)}")
    return "\n".join(lines)


def rate(
    family: str, variant: str, size: int, device: torch.device, batch: int, min_time: float, repeats: int
) -> float:
    """Images per second: one warm-up batch, then `repeats` windows of fresh batches (each >= min_time and at
    least two batches); the best window."""
    gen = create_generator(family, variant, size)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    gen.generate(range(batch), seed=0, device=device)
    sync()
    b, best = 1, 0.0
    for _ in range(repeats):
        start, done, first = time.perf_counter(), 0, b
        while True:
            gen.generate(range(b * batch, (b + 1) * batch), seed=0, device=device)
            sync()
            done, b = done + batch, b + 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time and b - first >= 2:
                break
        best = max(best, done / elapsed)
    return best


def reference(family: str, variant: str, size: int) -> float | None:
    return REFERENCE.get((family, variant, size), REFERENCE.get((family, None, size)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="32,128,256", help="comma-separated image sizes in pixels")
    parser.add_argument(
        "--threads", default="1,all", help="comma-separated torch thread counts; 'all' = every core (CPU only)"
    )
    parser.add_argument("--families", default="", help="comma-separated families (default: every registered one)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:n]")
    parser.add_argument("--batch-size", type=int, default=64, help="images per generate() call")
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds per measuring window (after warm-up)")
    parser.add_argument("--repeats", type=int, default=3, help="measuring windows per cell; the best is reported")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    all_threads = os.cpu_count() or 1
    threads = [all_threads if t.strip() == "all" else int(t) for t in args.threads.split(",") if t.strip()]
    threads = list(dict.fromkeys(threads))
    families = [f for f in args.families.split(",") if f] or GENERATORS.names()
    for f in families:
        GENERATORS.get(f)  # unknown names raise, listing the valid ones

    print(machine_info(device))
    print(f"batch {args.batch_size}, best of {args.repeats} windows of >= {args.min_time:.1f} s, device {device}; "
          f"images/second\n")
    head = ["family", "variant", "size"] + [f"{t} thread{'s' if t > 1 else ''}" for t in threads]
    head += ["reference", "speedup (1 thr)"]
    rows = []
    results: dict[tuple[str, str, int, int], float] = {}
    initial_threads = torch.get_num_threads()
    for family in families:
        for variant in GENERATORS.get(family).variants:
            for size in sizes:
                row = [family, variant, str(size)]
                for t in threads:
                    torch.set_num_threads(t)
                    results[family, variant, size, t] = rate(
                        family, variant, size, device, args.batch_size, args.min_time, args.repeats
                    )
                    row.append(f"{results[family, variant, size, t]:,.1f}")
                torch.set_num_threads(initial_threads)
                ref = reference(family, variant, size)
                one = results.get((family, variant, size, threads[0]))
                row.append(f"{ref:g}" if ref else "-")
                row.append(f"{one / ref:,.0f}x" if ref and one else "-")
                rows.append(row)
                print("  " + " | ".join(row), file=sys.stderr, flush=True)  # progress while the table builds

    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    print(" | ".join(h.ljust(w) for h, w in zip(head, widths)))
    print("-|-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    print(f"\nspeedup = {threads[0]}-thread rate / reference rate (reference: one CPU core, REFERENCE.md section 3)")
    if hasattr(os, "getloadavg"):
        print("load average after the run: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))

    if 128 in sizes and 1 in threads and device.type == "cpu":
        print("\ntargets at 128 px, one thread:")
        for (family, variant), target in TARGETS.items():
            got = results.get((family, variant, 128, 1))
            if got is not None:
                verdict = "met" if got >= target else f"MISSED by {target - got:,.0f} img/s ({got / target:.0%})"
                print(f"  {family}/{variant}: {got:,.0f} img/s vs target {target:,.0f} -> {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
