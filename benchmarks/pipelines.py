"""Real-image SimCLR training: synthsight's pipeline against the standard per-image PIL pipeline, same network.

Both train the simclr_cpu network (smallconv width 64 + SimCLR projector + NT-Xent at T=0.1, AdamW, bf16 autocast,
channels_last, batch 256, 32 px views) on the Fashion-MNIST training images, one optimiser step per batch:

- synthsight: `data.real=fashion-mnist`, the train loop's own step (`train.loop.forward_backward`): the real-image
  stream in trainer.workers DataLoader processes, the views drawn in the training process for the whole batch at
  once (per-image seeded), trainer.threads torch threads.
- per-image PIL: a torchvision `Dataset` over the same images as PIL images, two views per image made by
  torchvision transforms in DataLoader workers (RandomResizedCrop(32, scale=(0.2, 1)), horizontal flip, ColorJitter
  (0.4, 0.4, 0.4, 0.1) with p=0.8, RandomGrayscale(0.2): the same view recipe), then the same network, loss and
  optimiser step.

Setups run one at a time (nothing else prefetching), in A B A B rounds; each round runs in a fresh process, builds
its pipeline, runs --warmup untimed steps, then times --steps steps; a round's figure is the batch divided by its
median step time. synthsight's setups use its allocator setting (`synthsight.allocator`, as `synthsight pretrain`
does) and the PIL ones glibc's default, unless a setup says alloc=0 or alloc=1.
The table shows every round and the median over rounds; the ratio line compares the best configuration of each
pipeline (median over rounds).

Usage:
    python benchmarks/pipelines.py                        # 2 rounds, default setups
    python benchmarks/pipelines.py --rounds 3 --steps 40
    python benchmarks/pipelines.py --ours workers=1,threads=1 --pil "workers=1,threads=1;workers=1,threads=1,alloc=1"
    python benchmarks/pipelines.py --synthetic demo --ours "workers=1,threads=1;workers=1,threads=2;workers=0,threads=2"
    python benchmarks/pipelines.py --synthetic demo --ours "workers=0,threads=2,fixed=1;workers=0,threads=2;workers=1,threads=2,nice=19"
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import statistics
import subprocess
import sys
import time
from typing import Callable

import torch
from machine import cpu_model  # benchmarks/machine.py (scripts run from this folder)
from torch.utils.data import DataLoader, Dataset

from synthsight.config import load_config
from synthsight.eval.data import load_dataset
from synthsight.losses.ntxent import nt_xent
from synthsight.precision import autocast
from synthsight.train.loop import build_training, forward_backward

BATCH = 256


def _one_thread(nice: int, _: int) -> None:
    """A DataLoader worker's set-up: one torch thread, and niceness `nice` (0: unchanged)."""
    torch.set_num_threads(1)
    if nice:
        os.nice(nice)


SETUP_KEYS = ("workers", "threads", "nice", "fixed", "alloc")


def parse_setup(text: str) -> dict[str, int]:
    """'workers=1,threads=2' -> {'workers': 1, 'threads': 2, 'nice': 0, 'fixed': 0, 'alloc': A}. nice: the workers'
    niceness (19: they render only on cycles training leaves idle); fixed=1: one batch of the stream repeated (the
    fixed-batch rate the stream is compared with); alloc=1: synthsight.allocator.keep_freed_memory() in that
    setup's process (what `synthsight pretrain` does), alloc=0: glibc's default. A: 1 for synthsight's setups, 0 for
    the per-image PIL ones unless given."""
    setup = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        if key not in SETUP_KEYS or not value.isdigit():
            raise SystemExit(f"a setup is workers=N,threads=M[,nice=K][,fixed=1][,alloc=0|1], got {text!r}")
        setup[key] = int(value)
    return {"workers": setup.get("workers", 1), "threads": setup.get("threads", 1), "nice": setup.get("nice", 0),
            "fixed": setup.get("fixed", 0), "alloc": setup.get("alloc", -1)}


def describe(setup: dict[str, int]) -> str:
    extra = (f" nice={setup['nice']}" if setup["nice"] else "") + (" fixed batch" if setup["fixed"] else "")
    return f"workers={setup['workers']} threads={setup['threads']} alloc={setup['alloc']}{extra}"


class PILTwoViews(Dataset):
    """Fashion-MNIST training images as PIL images, two torchvision-augmented views each (Tensor[3, 32, 32])."""

    def __init__(self, images: torch.Tensor) -> None:
        from torchvision import transforms as T

        self.images = images  # uint8 [N, 1, 28, 28]
        self.transform = T.Compose([
            T.RandomResizedCrop(32, scale=(0.2, 1.0)),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.ToTensor(),
        ])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image

        image = Image.fromarray(self.images[i, 0].numpy()).convert("RGB")
        return self.transform(image), self.transform(image)


OVERRIDES: list[str] = []  # --set: config overrides for both pipelines (e.g. model.backbone=smallconv)


def ours(setup: dict[str, int], preset: str = "simclr_cpu", real: str | None = "fashion-mnist") -> Callable[[int], float]:
    """synthsight's train step of `preset` on data.real=`real` (None: the preset's synthetic stream) with the given
    workers and threads."""
    from synthsight.train.build import build_stream
    from synthsight.train.echo import echo_batches

    data = [f"data.real={real}"] if real else []
    cfg = load_config(preset, [*data, *OVERRIDES, f"trainer.workers={setup['workers']}",
                               f"trainer.threads={setup['threads']}"])
    torch.set_num_threads(setup["threads"])
    device = torch.device("cpu")
    method, optimizer, scaler = build_training(cfg, device)
    method.train()
    loader = DataLoader(build_stream(cfg), batch_size=None, num_workers=setup["workers"],
                        worker_init_fn=functools.partial(_one_thread, setup["nice"]),
                        prefetch_factor=4 if setup["workers"] else None)
    batches = echo_batches(iter(loader), cfg.trainer.accumulate, cfg.data.echo)  # --set data.echo=N: as pretrain
    if setup["fixed"]:  # the same step on one rendered batch, again and again: no rendering or loading in the loop
        batches = itertools.repeat(next(batches))

    def step(i: int) -> float:
        start = time.perf_counter()
        forward_backward(method, optimizer, scaler, batches, cfg, i, device)
        scaler.step(optimizer)
        scaler.update()
        return time.perf_counter() - start

    return step


def per_image_pil(setup: dict[str, int]) -> Callable[[int], float]:
    """The same network, loss and optimiser fed by torchvision transforms on PIL images in DataLoader workers."""
    cfg = load_config("simclr_cpu", [*OVERRIDES, f"trainer.threads={setup['threads']}"])
    torch.set_num_threads(setup["threads"])
    device = torch.device("cpu")
    method, optimizer, _ = build_training(cfg, device)
    method.train()
    images = load_dataset("fashion-mnist", "train", size=28).images[:, :1].contiguous()
    loader = DataLoader(PILTwoViews(images), batch_size=BATCH, shuffle=True, drop_last=True,
                        num_workers=setup["workers"], worker_init_fn=functools.partial(_one_thread, setup["nice"]),
                        prefetch_factor=4 if setup["workers"] else None, persistent_workers=setup["workers"] > 0)
    batches = iter(loader)
    temperature = cfg.method["temperature"]

    def step(i: int) -> float:
        nonlocal batches
        start = time.perf_counter()
        try:
            v1, v2 = next(batches)
        except StopIteration:
            batches = iter(loader)
            v1, v2 = next(batches)
        optimizer.zero_grad(set_to_none=True)
        with autocast(cfg.trainer.amp, device):
            z = method.projector(method.backbone(method.network_input(v1, v2)))
            loss = nt_xent(*z.chunk(2), temperature)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    return step


def time_round(kind: str, setup: dict[str, int], args: argparse.Namespace) -> float:
    """Images per second of one round, measured in a fresh process (allocator settings and caches are per process):
    the batch / the median timed step."""
    spec = ",".join(f"{k}={v}" for k, v in setup.items())
    command = [sys.executable, __file__, "--one", f"{kind}:{spec}", "--steps", str(args.steps), "--warmup",
               str(args.warmup)] + [f"--set={o}" for o in args.set]
    if args.synthetic:
        command += ["--synthetic", args.synthetic]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"setup {kind} {spec} failed:\n{out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def one_round(build: Callable[[dict[str, int]], Callable[[int], float]], setup: dict[str, int], warmup: int,
              steps: int) -> float:
    """In this process: build the setup, run `warmup` untimed and `steps` timed steps; img/s of the median step."""
    if setup["alloc"]:
        from synthsight.allocator import keep_freed_memory

        keep_freed_memory()
    step = build(setup)
    times = []
    for i in range(warmup + steps):
        seconds = step(i)
        if i >= warmup:
            times.append(seconds)
    return BATCH / statistics.median(times)


def with_alloc(setup: dict[str, int], default: int) -> dict[str, int]:
    return {**setup, "alloc": default if setup["alloc"] < 0 else setup["alloc"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="A B rounds (each setup once per round)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (workers start, caches fill)")
    parser.add_argument("--ours", default="workers=1,threads=1;workers=0,threads=2",
                        help="synthsight setups, ';'-separated")
    parser.add_argument("--pil", default="workers=1,threads=1;workers=2,threads=1",
                        help="per-image PIL setups, ';'-separated ('' for none)")
    parser.add_argument("--synthetic", default=None, metavar="PRESET",
                        help="time synthsight's setups on this preset's synthetic stream instead of real images "
                             "(e.g. demo), to choose its workers/threads split; no PIL rows then")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every setup (repeatable), e.g. --set model.backbone=smallconv")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: one round in this process
    args = parser.parse_args()
    OVERRIDES.extend(args.set)
    ours_build = functools.partial(ours, preset=args.synthetic, real=None) if args.synthetic else ours
    builders = {"synthsight": ours_build, "per-image PIL": per_image_pil}
    if args.one:
        kind, _, spec = args.one.partition(":")
        print(one_round(builders[kind], parse_setup(spec), args.warmup, args.steps))
        return
    setups = [("synthsight", with_alloc(parse_setup(s), 1)) for s in args.ours.split(";")]
    if not args.synthetic:
        setups += [("per-image PIL", with_alloc(parse_setup(s), 0)) for s in args.pil.split(";") if s]
    print(f"command: python {' '.join(sys.argv)}\nmachine: {cpu_model()}, torch {torch.__version__}, load average "
          f"{os.getloadavg()[0]:.2f} at the start\n")
    rates: dict[int, list[float]] = {k: [] for k in range(len(setups))}
    for r in range(args.rounds):
        order = range(len(setups)) if r % 2 == 0 else reversed(range(len(setups)))
        for k in order:
            name, setup = setups[k]
            rates[k].append(time_round(name, setup, args))
            print(f"round {r + 1}: {name} {describe(setup)}: {rates[k][-1]:.0f} img/s", flush=True)
    print("\n| pipeline | setup | img/s per round | median |")
    print("|---|---|---|---|")
    for k, (name, setup) in enumerate(setups):
        print(f"| {name} | {describe(setup)} | {' / '.join(f'{x:.0f}' for x in rates[k])} | "
              f"{statistics.median(rates[k]):.0f} |")
    best = {}
    for k, (name, setup) in enumerate(setups):
        name = "fixed batch" if setup["fixed"] else name
        best[name] = max(best.get(name, 0.0), statistics.median(rates[k]))
    if "fixed batch" in best and "synthsight" in best:
        print(f"\nbest stream / best fixed batch: {100 * best['synthsight'] / best['fixed batch']:.0f}% "
              "(target >= 95%)")
    if "per-image PIL" not in best:
        return
    print(f"\nbest synthsight / best per-image PIL: {best['synthsight'] / best['per-image PIL']:.2f}x "
          f"(target >= 1.5x)")


if __name__ == "__main__":
    main()
