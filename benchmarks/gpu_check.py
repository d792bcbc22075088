"""The prepared GPU check (issue 14): what synthsight does on one GPU, measured in one go and printed as tables.

1. render parity: every family and variant rendered on the GPU and on the CPU from the same parameters, max pixel
   difference (with --cpu: rendered twice on the CPU, a determinism check);
2. render speed of every family (default variant) at 128 and 256 px on the device (benchmarks/generators.py);
3. bf16 training throughput of smallconv / resnet18 / resnet50 / vit_tiny for SimCLR and DINO at 224 px, random
   tensors as input (benchmarks/train_throughput.py);
4. a 1-process torchrun run of the simclr_gpu preset for a few steps: process group (NCCL on CUDA, gloo on CPU) and
   DistributedDataParallel, as every multi-GPU run uses them; its speed sizes the next run;
5. a 3-minute simclr_gpu run (trainer.steps = 3 min x the speed of 4) with its online k-NN at the end.
Then the issue's targets, on a GPU: the fast families render >= 20,000 img/s at 256 px, and every family renders
faster than resnet50 trains (SimCLR, bf16, 224 px).

With --quick every part shrinks (32 px, tiny models, one timed step, a few seconds of training) so that
`scripts/gpu_check.sh --cpu --quick` runs every code path on a CPU in about a minute (tests/test_gpu_check.py).
The k-NN needs its real data where the check runs (default Fashion-MNIST; a GPU machine without network needs
the four idx files carried along and SYNTHSIGHT_FASHION_MNIST_DIR set); without it that cell says why.

Usage:
    scripts/gpu_check.sh                       # one GPU, under 8 minutes; tables also in runs/gpu_check/
    scripts/gpu_check.sh --cpu --quick --out /tmp/check
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from generators import rate  # benchmarks/generators.py (scripts run from this folder)
from machine import cpu_model
from train_throughput import time_steps

from synthsight.config import load_config
from synthsight.eval.data import DatasetError, load_dataset
from synthsight.generators import GENERATORS, create_generator
from synthsight.train.loop import pretrain

FAST_FAMILIES = ("dead_leaves", "spectrum", "statistical", "fractal_ifs", "contours")  # the target list
FAST_TARGET = 20_000.0  # images/s at 256 px on one GPU for each fast family
TOLERANCE = 1 / 255  # render parity: within one 8-bit grey level
# The small run every --quick part trains (a tiny ConvNet on 16 px views, about a second per step on a CPU)
QUICK_RUN = ["data.families=[dead_leaves/mixed, spectrum/color]", "data.render_size=32", "views.size=16",
             "model.backbone=smallconv", "model.width=8", "method.proj_hidden=32", "method.proj_dim=16",
             "trainer.batch_size=16", "trainer.workers=0", "trainer.threads=1", "trainer.log_every=1",
             "trainer.warmup_steps=1", "trainer.online_eval_limit=100", "trainer.online_eval_test_limit=50"]


@dataclass
class Plan:
    """How big each part is: the full GPU check, or --quick."""

    parity_size: int = 128  # pixels per side of the parity images
    parity_images: int = 8  # images per family variant
    speed_sizes: tuple[int, ...] = (128, 256)  # render speed at these sides
    speed_batch: int = 512  # images per generate() call
    speed_seconds: float = 1.0  # seconds per measuring window (one window after one warm-up batch)
    amp: str = "bf16"  # precision of the throughput rows (--quick: fp32, as bf16 is emulated on most CPUs)
    train_size: int = 224  # view and render side of the throughput rows
    train_batch: int = 128  # global batch of the throughput rows
    train_warmup: int = 3  # untimed steps per throughput row
    train_steps: int = 10  # timed steps per throughput row
    backbones: tuple[str, ...] = ("smallconv", "resnet18", "resnet50", "vit_tiny")
    methods: tuple[str, ...] = ("simclr", "dino")
    probe_steps: int = 40  # steps of the torchrun run (its last logged speed sizes the timed run)
    run_seconds: float = 180.0  # training time of the simclr_gpu run
    run_overrides: tuple[str, ...] = ()  # on top of the simclr_gpu preset


QUICK = Plan(parity_size=32, parity_images=2, speed_sizes=(32, 64), speed_batch=4, speed_seconds=0.05,
             amp="none", train_size=16, train_batch=4, train_warmup=0, train_steps=1,
             backbones=("smallconv", "vit_tiny"),  # the ResNets differ from smallconv only in their cost
             probe_steps=3, run_seconds=3.0, run_overrides=tuple(QUICK_RUN))


def table(head: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                     + ["| " + " | ".join(r) + " |" for r in rows])


def render_parity(device: torch.device, plan: Plan) -> list[list[str]]:
    """Max |device render - CPU render| of every family variant, same images (same parameters)."""
    rows = []
    for family in GENERATORS.names():
        for variant in GENERATORS.get(family).variants:
            gen = create_generator(family, variant, plan.parity_size)
            indices = range(plan.parity_images)
            reference = gen.generate(indices, seed=0, device="cpu")
            other = gen.generate(indices, seed=0, device=device).cpu()
            diff = float((reference - other).abs().max())
            rows.append([family, variant, f"{diff:.2e}", "ok" if diff <= TOLERANCE else "DIFFERS"])
    return rows


def render_speed(device: torch.device, plan: Plan) -> dict[tuple[str, int], float]:
    """Images per second of every family (default variant) at each size."""
    return {(family, size): rate(family, GENERATORS.get(family).variants[0], size, device, plan.speed_batch,
                                 plan.speed_seconds, 1)
            for family in GENERATORS.names() for size in plan.speed_sizes}


def train_overrides(method: str, backbone: str, device: torch.device, plan: Plan) -> list[str]:
    size = plan.train_size
    out = [f"method={method}", f"model.backbone={backbone}", f"views.size={size}", f"data.render_size={size}",
           f"trainer.batch_size={plan.train_batch}", f"trainer.device={device}", f"trainer.amp={plan.amp}",
           "trainer.channels_last=true", "trainer.compile=false", "trainer.accumulate=1", "trainer.threads=0",
           f"model.small_stem={'true' if size < 64 else 'false'}"]  # the ImageNet stem at 224 px
    if backbone == "vit_tiny":
        out.append(f"model.patch_size={16 if size >= 128 else 4}")
    if method == "dino" and size >= 128:
        out.append("method.local_size=96")  # the paper's local crops at 224 px
    return out


def train_throughput(device: torch.device, plan: Plan) -> dict[tuple[str, str], tuple[float, float]]:
    """(method, backbone) -> (images/s from the median step, mean step ms)."""
    results = {}
    for method in plan.methods:
        for backbone in plan.backbones:
            times = time_steps(train_overrides(method, backbone, device, plan), device, plan.train_warmup,
                               plan.train_steps, real_stream=False)
            results[method, backbone] = plan.train_batch / statistics.median(times), 1000 * statistics.mean(times)
            print(f"  trained {method} {backbone}", file=sys.stderr, flush=True)
    return results


def _last_log_row(run_dir: Path) -> dict[str, str]:
    with open(run_dir / "train_log.csv") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise RuntimeError(f"{run_dir}/train_log.csv holds no rows")
    return rows[-1]


def _pretrain_command(launcher: list[str], out: Path, overrides: list[str]) -> tuple[subprocess.CompletedProcess,
                                                                                     float]:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [*launcher, "pretrain", "--preset", "simclr_gpu", *overrides, "--out", str(out)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc, seconds


def torchrun_run(device: torch.device, plan: Plan, out: Path) -> dict[str, str]:
    """simclr_gpu for a few steps under `torchrun --nproc_per_node=1`: the process group and DDP path."""
    steps = plan.probe_steps
    overrides = [*plan.run_overrides, f"trainer.device={device}", f"trainer.steps={steps}",
                 f"trainer.checkpoint_every={steps}", "trainer.online_eval_every=0",
                 f"trainer.log_every={5 if steps >= 10 else 1}"]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                "-m", "synthsight"]
    proc, seconds = _pretrain_command(launcher, out, overrides)
    group = next((line for line in proc.stderr.splitlines() if line.startswith("torch.distributed:")), None)
    if group is None:
        raise RuntimeError("the torchrun run did not join a process group (no 'torch.distributed:' line)")
    last = _last_log_row(out)
    return {"group": group.removeprefix("torch.distributed: "), "steps": str(steps), "seconds": f"{seconds:.0f}",
            "images_per_second": last["images_per_second"], "loss": last["loss"]}


def online_data_problem(spec: str, size: int) -> str | None:
    """Why the k-NN cannot run here (its data set is missing or unreadable), or None."""
    try:
        load_dataset(spec, "test", size=size, limit=10)
    except (DatasetError, OSError) as err:
        return str(err).split(". ")[0]
    return None


def timed_run(device: torch.device, plan: Plan, out: Path, images_per_second: float,
              online_data: str) -> dict[str, str]:
    """simclr_gpu for plan.run_seconds of training (steps from the torchrun run's speed), k-NN at the end; in this
    process, through the train loop (no sample grids, provenance or report afterwards)."""
    batch = load_config("simclr_gpu", list(plan.run_overrides)).trainer.batch_size
    steps = max(2, round(plan.run_seconds * images_per_second / batch))
    problem = online_data_problem(online_data, 32)
    knn = [f"trainer.online_eval_every={steps}", f"trainer.online_eval_data={online_data}"] if not problem else \
        ["trainer.online_eval_every=0"]
    cfg = load_config("simclr_gpu", [*plan.run_overrides, f"trainer.device={device}", f"trainer.steps={steps}",
                                     f"trainer.warmup_steps={max(1, min(1000, steps // 10))}",
                                     f"trainer.checkpoint_every={steps}", *knn])
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    result = pretrain(cfg, out, progress=False)
    seconds = time.perf_counter() - start
    knn_top1 = result.last_checks.get("knn")
    return {"steps": str(steps), "seconds": f"{seconds:.0f}", "images_per_second": f"{result.images_per_second:.1f}",
            "loss": f"{result.final_loss:.4f}",
            "knn": f"{100 * knn_top1:.1f}%" if knn_top1 is not None else f"not measured: {problem}"}


def machine(device: torch.device) -> str:
    lines = [f"cpu: {cpu_model()} ({os.cpu_count()} logical cores); python {platform.python_version()}, "
             f"torch {torch.__version__}"]
    if device.type == "cuda":
        lines.append(f"device: {torch.cuda.get_device_name(device)}")
    return "\n".join(lines)


def targets(speed: dict[tuple[str, int], float], train: dict[tuple[str, str], tuple[float, float]]) -> list[str]:
    bar = train.get(("simclr", "resnet50"), (float("nan"), 0))[0]
    lines = []
    for family in FAST_FAMILIES:
        got = speed.get((family, 256))
        if got is not None:
            lines.append(f"- {family} at 256 px: {got:,.0f} img/s vs {FAST_TARGET:,.0f} -> "
                         f"{'met' if got >= FAST_TARGET else 'MISSED'}")
    slow = [f for (f, s), r in speed.items() if s == 256 and not r > bar]
    lines.append(f"- every family at 256 px faster than resnet50 trains (SimCLR, bf16, 224 px, {bar:,.0f} img/s): "
                 + ("met" if not slow else f"MISSED by {', '.join(sorted(slow))}"))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (the parity part checks determinism)")
    parser.add_argument("--quick", action="store_true", help="every part small: a minute on a CPU")
    parser.add_argument("--out", default="runs/gpu_check", help="folder for the runs and gpu_check.md")
    parser.add_argument("--online-data", default="fashion-mnist", help="real data of the k-NN (like eval.data)")
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        parser.error("CUDA is not available here; pass --cpu (with --quick: a minute) to run the check on the CPU")
    device = torch.device("cpu" if args.cpu else "cuda")
    plan = QUICK if args.quick else Plan()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    begin = time.perf_counter()
    report = [f"command: scripts/gpu_check.sh {' '.join(sys.argv[1:])}", machine(device), ""]

    tick = [time.perf_counter()]

    def section(title: str, text: str) -> None:
        now = time.perf_counter()
        title, tick[0] = f"{title} ({now - tick[0]:.0f} s)", now
        report.extend([f"### {title}", "", text, ""])
        print(f"### {title}\n\n{text}\n", flush=True)

    print("\n".join(report), flush=True)
    parity = render_parity(device, plan)
    against = "a second CPU render (determinism)" if device.type == "cpu" else "the CPU render"
    section(f"Render parity: {device.type} vs {against}, {plan.parity_images} images at {plan.parity_size} px",
            table(["family", "variant", "max abs pixel difference", "<= 1/255"], parity))

    speed = render_speed(device, plan)
    rows = [[f, GENERATORS.get(f).variants[0], *(f"{speed[f, s]:,.0f}" for s in plan.speed_sizes)]
            for f in GENERATORS.names()]
    section(f"Render speed on {device.type}, images/s (batch {plan.speed_batch})",
            table(["family", "variant", *(f"{s} px" for s in plan.speed_sizes)], rows))

    train = train_throughput(device, plan)
    rows = [[m, b, f"{ips:,.0f}", f"{ms:,.0f}"] for (m, b), (ips, ms) in train.items()]
    precision = {"bf16": "bf16", "none": "fp32"}[plan.amp]
    section(f"{precision} training throughput on {device.type}, {plan.train_size} px, batch {plan.train_batch}, random "
            f"tensors ({plan.train_steps} timed steps)", table(["method", "backbone", "images/s", "ms/step"], rows))

    probe = torchrun_run(device, plan, out / "torchrun")
    section("torchrun --nproc_per_node=1, simclr_gpu preset",
            table(["process group", "steps", "seconds (with start-up)", "images/s (last log)", "loss"],
                  [[probe["group"], probe["steps"], probe["seconds"], probe["images_per_second"], probe["loss"]]]))

    run = timed_run(device, plan, out / "simclr_gpu", float(probe["images_per_second"]), args.online_data)
    section(f"simclr_gpu for about {plan.run_seconds:g} s of training, online k-NN ({args.online_data}) at the end",
            table(["steps", "seconds (with k-NN)", "images/s", "final loss", "k-NN top-1"],
                  [[run["steps"], run["seconds"], run["images_per_second"], run["loss"], run["knn"]]]))

    if device.type == "cuda" and not args.quick:
        section("Targets (issue 14)", "\n".join(targets(speed, train)))
    total = f"total: {time.perf_counter() - begin:.0f} s"
    report.append(total)
    print(total)
    (out / "gpu_check.md").write_text("\n".join(report) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
