"""Distil a ResNet-18 teacher into the small ConvNet on synthetic images only; compare them on real data.

1. Pretrains the teacher with the demo recipe (SimCLR on dead leaves + spectrum, 32 px views) but
   model.backbone=resnet18 (small stem), for --teacher-steps steps (default sized to ~10 minutes on 2 CPU cores).
2. Distils it into `smallconv` (the demo's student) with `synthsight distill`'s method: soft targets from the
   teacher's projector + cosine feature matching, --student-steps steps, synthetic images only.
3. Evaluates both with the same k-NN protocol (cosine, k=20, T=0.07) on Fashion-MNIST (60k train / 10k test),
   in one eval run, and measures CPU inference throughput of both backbones (batch 256, 32 px, fp32 and bf16).

Prints k-NN accuracy of teacher and student, the fraction retained (target >= 95%) and the speed-up (target >= 3x).

    python benchmarks/distill.py --teacher-steps 80     # ~25 minutes on 2 cores
    python benchmarks/distill.py --teacher-steps 20 --student-steps 20 --limit 5000   # a quick smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from synthsight.config import EvalConfig, load_config
from synthsight.eval.run import PRETRAINED, load_backbone
from synthsight.provenance import FILENAME
from synthsight.runs import eval_run, pretrain_run


def inference_speed(net: torch.nn.Module, size: int, amp: bool, batch: int = 256, seconds: float = 4.0) -> float:
    """Images per second of a frozen backbone on CPU: eval mode, inference_mode, channels_last, whole batches."""
    net = net.eval().to(memory_format=torch.channels_last)
    x = torch.rand(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        for _ in range(2):
            net(x)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or n < 3:
            net(x)
            n += 1
        return n * batch / (time.perf_counter() - t0)


def finished(run: Path) -> bool:
    return (run / FILENAME).is_file()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--teacher-steps", type=int, default=200, help="ResNet-18 SimCLR steps (batch 256)")
    p.add_argument("--student-steps", type=int, default=600, help="distillation steps (batch 256)")
    p.add_argument("--out", type=Path, default=Path("runs/bench-distill"), help="folder for both runs")
    p.add_argument("--limit", type=int, default=None, help="Fashion-MNIST training images for k-NN (default all)")
    p.add_argument("--loss", default="auto", help="distillation loss: auto | soft | feature | both")
    p.add_argument("--control", action="store_true",
                   help="also pretrain the student architecture with plain SimCLR for the same steps (no teacher)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads for training and timing (0 = all cores; 1 when another job shares the CPU)")
    args = p.parse_args()

    t_start = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = [f"trainer.threads={args.threads}"]
    teacher_dir, student_dir = args.out / "teacher", args.out / f"student-{args.loss}-{args.student_steps}"
    teacher_cfg = load_config("demo", ["model.backbone=resnet18", f"trainer.steps={args.teacher_steps}",
                                       f"trainer.warmup_steps={max(1, args.teacher_steps // 20)}", *threads])
    if finished(teacher_dir) and json.loads((teacher_dir / "config.json").read_text()) == teacher_cfg.to_dict():
        print(f"teacher: reusing {teacher_dir}")
    else:
        pretrain_run(teacher_cfg, teacher_dir)
    teacher_s = json.loads((teacher_dir / "train_summary.json").read_text())["seconds"]

    student_cfg = load_config("demo", [f"trainer.steps={args.student_steps}",
                                       f"trainer.warmup_steps={max(1, args.student_steps // 20)}", *threads])
    student_cfg.method = {"name": "distill", "teachers": [str(teacher_dir)], "loss": args.loss}
    if not finished(student_dir):
        pretrain_run(student_cfg, student_dir)
    student_s = json.loads((student_dir / "train_summary.json").read_text())["seconds"]

    compare = [str(teacher_dir)]
    control_dir = args.out / f"control-simclr-{args.student_steps}"
    if args.control:  # what the student architecture reaches on its own with the demo recipe and the same steps
        control_cfg = load_config("demo", [f"trainer.steps={args.student_steps}",
                                           f"trainer.warmup_steps={max(1, args.student_steps // 20)}", *threads])
        if not finished(control_dir):
            pretrain_run(control_cfg, control_dir)
        compare.append(str(control_dir))
    eval_cfg = EvalConfig(protocols=["knn"], compare=compare, limit=args.limit)
    report = eval_run(student_dir, eval_cfg, student_dir / "eval", device="cpu")
    names = {f"checkpoint {p}": n for p, n in ((teacher_dir, "teacher"), (control_dir, "control"))}
    acc = {}
    for e in report.encoders:
        key = "student" if e.name == PRETRAINED else next(n for prefix, n in names.items() if e.name.startswith(prefix))
        acc[key] = e.results["knn"]

    teacher_net, _, _ = load_backbone(teacher_dir)
    student_net, _, _ = load_backbone(student_dir)
    size = student_cfg.views.size
    speed = {(name, amp): inference_speed(net, size, amp) for name, net in
             (("teacher", teacher_net), ("student", student_net)) for amp in (False, True)}
    params = {n: sum(p.numel() for p in net.parameters()) for n, net in (("teacher", teacher_net),
                                                                        ("student", student_net))}

    retained = acc["student"].top1 / acc["teacher"].top1
    speedup = speed[("student", False)] / speed[("teacher", False)]
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads")
    print(f"teacher: resnet18 (small stem), SimCLR, {args.teacher_steps} steps x 256 synthetic images, "
          f"{teacher_s:.0f} s")
    print(f"student: smallconv, distilled ({args.loss}), {args.student_steps} steps x 256 synthetic images, "
          f"{student_s:.0f} s")
    print(f"k-NN protocol: {acc['student'].describe()}\n")
    print("| model | params | Fashion-MNIST k-NN top-1 | CPU img/s fp32 | CPU img/s bf16 |")
    print("|---|---|---|---|---|")
    for name in ("teacher", "student"):
        print(f"| {name} | {params[name] / 1e6:.2f}M | {100 * acc[name].top1:.2f}% | {speed[(name, False)]:.0f} | "
              f"{speed[(name, True)]:.0f} |")
    if "control" in acc:
        print(f"| control: smallconv, plain SimCLR, {args.student_steps} steps, no teacher | {params['student'] / 1e6:.2f}M | "
              f"{100 * acc['control'].top1:.2f}% | - | - |")
    print(f"\nretained k-NN accuracy: {100 * retained:.1f}% (target >= 95%: {'met' if retained >= 0.95 else 'NOT met'})")
    print(f"student speed-up (fp32): {speedup:.1f}x (target >= 3x: {'met' if speedup >= 3 else 'NOT met'}); "
          f"bf16: {speed[('student', True)] / speed[('teacher', True)]:.1f}x")
    print(f"total {time.perf_counter() - t_start:.0f} s; runs in {args.out}")


if __name__ == "__main__":
    main()
