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
    python benchmarks/generators.py --families statistical/spectrum_color_wmm --sizes 128 --threads 1 \
        --option iterations=10        # like for like with the reference's 10 iterations
    python benchmarks/generators.py --device cuda --threads all
"""

from __future__ import annotations

import argparse
import ast
import os
import platform
import sys
import time

import torch
from machine import cpu_model  # benchmarks/machine.py (scripts run from this folder)

from synthsight.generators import GENERATORS

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
    family: str, variant: str, size: int, device: torch.device, batch: int, min_time: float, repeats: int,
    options: dict | None = None, clock=time.perf_counter,
) -> float:
    """Images per second: one warm-up batch, then `repeats` windows of fresh batches (each >= min_time and at
    least two batches); the best window. `options` go to the generator's constructor; `clock` measures the
    windows (time.process_time: this process's CPU seconds)."""
    gen = GENERATORS.create(family, variant=variant, size=size, **(options or {}))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    gen.generate(range(batch), seed=0, device=device)
    sync()
    b, best = 1, 0.0
    for _ in range(repeats):
        start, done, first = clock(), 0, b
        while True:
            gen.generate(range(b * batch, (b + 1) * batch), seed=0, device=device)
            sync()
            done, b = done + batch, b + 1
            elapsed = clock() - start
            if elapsed >= min_time and b - first >= 2:
                break
        best = max(best, done / elapsed)
    return best


def parse_options(items: list[str]) -> dict:
    """["iterations=10", "quantize=False"] -> {"iterations": 10, "quantize": False} (values as Python literals,
    else strings)."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--option takes KEY=VALUE (e.g. iterations=10), got {item!r}")
        try:
            options[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            options[key.strip()] = value.strip()
    return options


def reference(family: str, variant: str, size: int) -> float | None:
    return REFERENCE.get((family, variant, size), REFERENCE.get((family, None, size)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="32,128,256", help="comma-separated image sizes in pixels")
    parser.add_argument(
        "--threads", default="1,all", help="comma-separated torch thread counts; 'all' = every core (CPU only)"
    )
    parser.add_argument("--families", default="",
                        help="comma-separated families or family/variant (default: every registered family)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="generator option for every family measured, repeatable (e.g. iterations=10)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:n]")
    parser.add_argument("--batch-size", type=int, default=64, help="images per generate() call")
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds per measuring window (after warm-up)")
    parser.add_argument("--repeats", type=int, default=3, help="measuring windows per cell; the best is reported")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: elapsed seconds; cpu: this process's CPU seconds (one-thread rates on a shared "
                             "machine, where other processes take turns on the cores; CPU only)")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    all_threads = os.cpu_count() or 1
    threads = [all_threads if t.strip() == "all" else int(t) for t in args.threads.split(",") if t.strip()]
    threads = list(dict.fromkeys(threads))
    options = parse_options(args.option)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    cells = []  # (family, variant)
    for name in [f for f in args.families.split(",") if f] or GENERATORS.names():
        family, _, variant = name.partition("/")
        variants = GENERATORS.get(family).variants  # unknown names raise, listing the valid ones
        if variant and variant not in variants:
            raise ValueError(f"{family} has no variant {variant!r}; variants: {', '.join(variants)}")
        cells += [(family, v) for v in ([variant] if variant else variants)]

    print(machine_info(device))
    print(f"batch {args.batch_size}, best of {args.repeats} windows of >= {args.min_time:.1f} s, device {device}; "
          f"images/second ({args.clock} clock)" + (f"; options {options}" if options else "") + "\n")
    head = ["family", "variant", "size"] + [f"{t} thread{'s' if t > 1 else ''}" for t in threads]
    head += ["reference", "speedup (1 thr)"]
    rows = []
    results: dict[tuple[str, str, int, int], float] = {}
    initial_threads = torch.get_num_threads()
    for family, variant in cells:
        for size in sizes:
            row = [family, variant, str(size)]
            for t in threads:
                torch.set_num_threads(t)
                results[family, variant, size, t] = rate(
                    family, variant, size, device, args.batch_size, args.min_time, args.repeats, options, clock
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

    if 128 in sizes and 1 in threads and device.type == "cpu" and not options:  # targets are for the defaults
        print("\ntargets at 128 px, one thread:")
        for (family, variant), target in TARGETS.items():
            got = results.get((family, variant, 128, 1))
            if got is not None:
                verdict = "met" if got >= target else f"MISSED by {target - got:,.0f} img/s ({got / target:.0%})"
                print(f"  {family}/{variant}: {got:,.0f} img/s vs target {target:,.0f} -> {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
