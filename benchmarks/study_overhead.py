"""What the study harness costs on top of plain `synthsight pretrain` + `synthsight eval` for the same run.

Both paths run as the user would run them (fresh processes, wall-clock measured from outside):

    plain:   synthsight pretrain --preset demo <overrides> --out A
             synthsight eval A --compare random --protocols knn,linear --no-analysis (+ data, limits)
    harness: synthsight study S.yaml --out B --no-progress
             (one variation, one seed, the same steps as an images budget, random init, no real-data reference)

The training config is identical (the harness's warm-up and checkpoint spacing are passed to the plain run too),
and both evaluate the run and its random init with k-NN and a linear probe on the same images. Repeats alternate
the two paths; the median of each is reported with the harness's own breakdown (timings.json).

Usage:
    python benchmarks/study_overhead.py --steps 40 --repeats 2            # ~5 min on 2 idle cores
    python benchmarks/study_overhead.py --steps 300 --data fashion-mnist --limit 20000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=40, help="training steps of the run (batch 256: demo preset)")
    p.add_argument("--data", default="fashion-mnist", help="evaluation set (train and test split)")
    p.add_argument("--limit", type=int, default=5000, help="training images for the probes")
    p.add_argument("--test-limit", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("runs/bench-study-overhead"))
    args = p.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("OMP_NUM_THREADS", None)  # both paths evaluate with torch's default threads (all cores); training: 1
    py = [sys.executable, "-m", "synthsight"]
    # the harness's schedule for these steps (synthsight.study.budget.schedule_overrides with the demo's 30/1000)
    schedule = [f"trainer.steps={args.steps}", f"trainer.warmup_steps={max(1, round(args.steps * 30 / 1000))}",
                f"trainer.checkpoint_every={math.ceil(args.steps / 4)}"]
    study = {"name": "overhead", "base": {"preset": "demo"}, "budget": {"images": args.steps * 256}, "seeds": [0],
             "reference": False, "random_init": True,
             "eval": {"protocols": ["knn", "linear"],
                      "sets": {"real": {"data": args.data, "limit": args.limit, "test_limit": args.test_limit}}}}
    study_file = args.out / "study.yaml"
    study_file.write_text(yaml.safe_dump(study))
    plain, harness, breakdowns = [], [], []
    for i in range(args.repeats):
        run = args.out / f"plain-{i}"
        plain.append(timed(py + ["pretrain", "--preset", "demo", *schedule, "--out", str(run)], env)
                     + timed(py + ["eval", str(run), "--data", args.data, "--test-data", args.data, "--protocols",
                                   "knn,linear", "--compare", "random", "--limit", str(args.limit), "--test-limit",
                                   str(args.test_limit), "--no-analysis"], env))
        folder = args.out / f"study-{i}"
        harness.append(timed(py + ["study", str(study_file), "--out", str(folder), "--no-progress"], env))
        breakdowns.append(json.loads((folder / "timings.json").read_text()))
        print(f"repeat {i}: plain {plain[-1]:.1f} s, harness {harness[-1]:.1f} s", flush=True)
    p_med, h_med = statistics.median(plain), statistics.median(harness)
    print(f"\n{args.steps} steps x 256 images, eval on {args.data} ({args.limit} train / {args.test_limit} test, "
          f"k-NN + linear, run + random init), {args.repeats} repeats, load average at the end "
          f"{os.getloadavg()[0]:.1f}")
    print(f"plain pretrain + eval: median {p_med:.1f} s {sorted(round(x, 1) for x in plain)}")
    print(f"synthsight study:      median {h_med:.1f} s {sorted(round(x, 1) for x in harness)}")
    print(f"harness overhead: {h_med - p_med:+.1f} s = {100 * (h_med / p_med - 1):+.1f}%")
    print("harness breakdown (s, last repeat): " + ", ".join(f"{k} {v}" for k, v in breakdowns[-1].items()))


if __name__ == "__main__":
    main()
