"""Where one CPU training step of a preset spends its time: views, forward + loss, backward, optimiser, and the
operators inside (torch profiler).

A fixed batch of random images at the preset's render size (the stream is measured by train_throughput.py), the
preset's switches (amp, channels_last), trainer.threads torch threads; --warmup untimed steps, then --steps timed
ones, each phase timed on its own (median ms per phase). SimCLR and SupCon presets: the step is what their
`training_step` does, split at the network input.

Usage:
    python benchmarks/step_profile.py                     # the demo preset
    python benchmarks/step_profile.py --preset simclr_cpu --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from machine import cpu_model  # benchmarks/machine.py (scripts run from this folder)

from synthsight.augment.rng import PerImageRandom
from synthsight.augment.views import two_views
from synthsight.config import load_config
from synthsight.precision import autocast
from synthsight.train.loop import build_training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--ops", type=int, default=12, help="operator rows of the profiler table (0: none)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override (repeatable), e.g. --set model.backbone=smallconv")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.preset, [*args.set, f"trainer.threads={args.threads}"])
    device = torch.device("cpu")
    method, optimizer, _ = build_training(cfg, device)
    method.train()
    batch, size = cfg.trainer.batch_size, cfg.data.render_size
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 2000, (batch,), generator=torch.Generator().manual_seed(1))
    indices = list(range(batch))
    print(f"command: python {' '.join(sys.argv)}\nmachine: {cpu_model()}, torch {torch.__version__}, "
          f"{args.threads} thread(s)\npreset {args.preset}: {cfg.method['name']}, {cfg.model.backbone} width "
          f"{cfg.model.width}, batch {batch}, {size} px -> {cfg.views.size} px views, amp {cfg.trainer.amp}, "
          f"channels_last {cfg.trainer.channels_last}\n")

    def step(i: int) -> list[float]:
        marks = [time.perf_counter()]
        g = PerImageRandom.for_images(cfg.trainer.seed, i, indices)
        v1, v2 = two_views(images, g, cfg.views)
        marks.append(time.perf_counter())
        with autocast(cfg.trainer.amp, device):
            out = _loss_on_views(method, v1, v2, labels)
        marks.append(time.perf_counter())
        optimizer.zero_grad(set_to_none=True)
        out.backward()
        marks.append(time.perf_counter())
        optimizer.step()
        marks.append(time.perf_counter())
        return [b - a for a, b in zip(marks, marks[1:])]

    phases = ("views", "forward + loss", "backward", "optimiser")
    times: list[list[float]] = []
    for i in range(args.warmup + args.steps):
        t = step(i)
        if i >= args.warmup:
            times.append(t)
    medians = [statistics.median(t[k] for t in times) * 1000 for k in range(len(phases))]
    total = sum(medians)
    print("| phase | ms per step (median) | share |")
    print("|---|---|---|")
    for name, ms in zip(phases, medians):
        print(f"| {name} | {ms:.1f} | {100 * ms / total:.0f}% |")
    print(f"| total | {total:.1f} | {batch / total * 1000:.0f} img/s |")
    if args.ops:
        from torch.profiler import profile

        with profile() as prof:
            for i in range(3):
                step(args.warmup + args.steps + i)
        print()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.ops))


def _loss_on_views(method: torch.nn.Module, v1: torch.Tensor, v2: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The contrastive methods' loss from two given views (SimCLR's NT-Xent, SupCon's loss)."""
    from synthsight.losses.ntxent import nt_xent
    from synthsight.losses.supcon import supcon_loss

    z1, z2 = method.projector(method.backbone(method.network_input(v1, v2))).chunk(2)
    name = type(method).__name__.lower()
    if name == "supcon":
        return supcon_loss(z1, z2, labels, method.cfg.temperature)
    if name == "simclr":
        return nt_xent(z1, z2, method.cfg.temperature)
    raise SystemExit(f"step_profile.py profiles simclr and supcon presets, not {name}")


if __name__ == "__main__":
    main()
