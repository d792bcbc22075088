"""Masked image modelling on a ViT-Tiny: training speed against DINO, and fine-tuning as the yardstick.

Two subcommands:

throughput
    Training images/second of mae, data2vec and dino on the same ViT-Tiny (32 px, patch 4, bf16 autocast), each
    method as its CPU preset configures it (DINO: 2 global + 4 local crops, 4,096 prototypes), the same global batch
    of fixed random tensors (the training step alone, no image generation). The methods are timed one step each in
    turn, round after round, so that a neighbour loading a shared machine slows them alike; a step is the train
    loop's (forward + backward under autocast, the method's hooks, the optimiser step). Prints the median-step
    images/second and each method's speed relative to DINO (the issue's target: mae >= 4x).

attention
    For each run of a finished `compare` (--out) and its random init (the run's own starting weights): the last
    block's CLS attention on --images Fashion-MNIST test images (a seeded stratified subset), the share of it on
    the garment's patches against their area (synthsight.analysis.attention_focus; ratio 1 = attention ignores the
    object) and the separation (|2 AUC - 1| of each map as a garment-vs-background score: 0 = not object-shaped, 1 =
    it segments the garment, whether it attends to it or to everything around it), and a figure of the maps of one
    test image per class. Prints mean ± std over seeds per model; writes OUT/attention.json, OUT/attention.md and
    OUT/attention/*.png. --blocks adds the separation of every block's CLS attention (where in the network the
    maps follow the object).

compare
    For each seed: pretrain each method (its <method>_cpu preset) on formula images (the preset's families:
    FractalDB, RCDB, Visual Atoms) for --minutes of wall clock, and the same recipe on Fashion-MNIST's training
    images without labels (data.real; the real-data reference, --no-real skips it, --no-synthetic trains only it:
    the random inits are the same weights either way, so a reference-only folder completes a --no-real one). Each
    run trains --minutes of its loop's clock (trainer.minutes: warm-up + cosine follow the share of the budget
    spent, so a host that changes speed cannot stretch or cut the run); a short probe of the real train loop bounds
    its steps (--schedule steps: the probe's planned steps instead, as in sessions 9-10). Then each run and a
    randomly initialised ViT-Tiny (the run's own starting weights; same pooling) are fine-tuned with identical
    settings (`synthsight finetune`: AdamW, cosine, crop + flip, bf16) on a stratified Fashion-MNIST subset and
    tested on the full test split, and probed with frozen features (k-NN, linear). Prints mean ± std over seeds
    and the paired gain over random init in points. Resumable: finished runs, fine-tunes and probes in --out are
    kept; an interrupted run continues from its last checkpoint; other settings in the same --out are refused.

Cost of compare with the defaults: 2 methods x 2 sources x 3 seeds = 12 pretraining runs of --minutes each plus a
~2 min speed probe per method and source, then 15 fine-tunes (12 runs + random init per seed) of 5,000 images x 10
epochs and 15 frozen-feature evaluations. Fine-tuning ViT-Tiny at 32 px is the slow part on a CPU: 3-8 img/s on
this project's 2-core VM with a load average of ~10 (an idle machine is several times faster; not measured), so
plan for hours; --no-real halves the pretraining.

Usage:
    python benchmarks/mim.py throughput                       # ~4 min on the 2-core VM under load
    python benchmarks/mim.py compare --minutes 20 --seeds 0,1,2 --out runs/bench-mim      # the issue's comparison
    python benchmarks/mim.py attention --out runs/bench-mim                                 # after compare
    python benchmarks/mim.py compare --minutes 5 --seeds 0 --methods mae --no-real --finetune-limit 2000 \
        --finetune-epochs 4 --finetune-batch-size 64 --eval-limit 2000 --test-limit 2000 --out runs/bench-mim-pilot
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from machine import cpu_model  # benchmarks/machine.py (scripts run from this folder)
from methods import probe_rate, steps_for_budget, train  # benchmarks/methods.py: the same budget arithmetic
from train_throughput import synthetic_batches

from synthsight.checkpoint import write_text_atomic
from synthsight.config import Config, EvalConfig, load_config
from synthsight.eval.finetune import FinetuneSettings
from synthsight.eval.run import RANDOM, evaluate
from synthsight.study.budget import TIME_CAP
from synthsight.train.distributed import resolve_device
from synthsight.train.loop import build_training, forward_backward, pretrain

PRESETS = {"mae": "mae_cpu", "data2vec": "data2vec_cpu", "dino": "dino_cpu"}
REAL = "fashion-mnist"


def header(device: torch.device, threads: int) -> list[str]:
    lines = [f"command: python {' '.join(sys.argv)}",
             f"machine: {cpu_model()} ({os.cpu_count()} logical cores), torch {torch.__version__}, device {device}, "
             f"torch threads {threads}"]
    if hasattr(os, "getloadavg"):
        lines.append("load average at the start: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    return lines


# ---------------------------------------------------------------------------------------------- throughput


def time_round_robin(configs: dict[str, Config], device: torch.device, warmup: int, rounds: int,
                     fused_attention: bool = False) -> dict[str, list[float]]:
    """Seconds of each timed step per method; every round times one step of each method in turn. With
    `fused_attention` every attention layer uses PyTorch's fused kernel even on CPU (synthsight's ViTs pick the
    explicit one there, `models.backbones.attention_by_device_`): to measure what that choice buys."""
    state = {}
    for name, cfg in configs.items():
        method, optimizer, scaler = build_training(cfg, device)
        method.train()
        if fused_attention:
            for module in method.modules():
                if hasattr(module, "fused_attn"):
                    module._forward_pre_hooks.clear()
                    module.fused_attn = True
        state[name] = (cfg, method, optimizer, scaler, synthetic_batches(cfg.trainer.batch_size, cfg.data.render_size))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {name: [] for name in configs}
    steps = warmup + rounds
    for step in range(steps):
        for name, (cfg, method, optimizer, scaler, batches) in state.items():
            start = time.perf_counter()
            forward_backward(method, optimizer, scaler, batches, cfg, step, device)
            scaler.unscale_(optimizer)
            method.before_optimizer_step(step, steps)
            scaler.step(optimizer)
            scaler.update()
            method.after_optimizer_step(step, steps)  # EMA teachers are part of the cost
            sync()
            if step >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def throughput(args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    print("\n".join(header(device, args.threads)), flush=True)
    common = [f"views.size={args.size}", f"data.render_size={args.size}", f"trainer.batch_size={args.batch_size}",
              f"trainer.device={device}", f"trainer.threads={args.threads}", "model.backbone=vit_tiny",
              f"model.patch_size={args.patch_size}", f"trainer.amp={args.amp}", "trainer.compile=false"]
    methods = [m for m in args.methods.split(",") if m]
    # each method as its CPU preset sets it up (another registered method: the demo preset with method=<name>)
    configs = {m: load_config(PRESETS[m], common) if m in PRESETS else load_config("demo", [f"method={m}", *common])
               for m in methods}
    grid = args.size // args.patch_size
    print(f"ViT-Tiny at {args.size} px, patch {args.patch_size} ({grid}x{grid} patches), global batch "
          f"{args.batch_size}, amp {args.amp}, random tensors; {args.warmup} warm-up + {args.rounds} timed rounds, "
          "one step of each method per round; attention kernel: "
          + ("fused everywhere" if args.fused_attention else "explicit on CPU, fused on GPUs"), flush=True)
    times = time_round_robin(configs, device, args.warmup, args.rounds, args.fused_attention)
    rates = {m: args.batch_size / statistics.median(t) for m, t in times.items()}
    ref = rates.get(args.reference)
    print(f"\n| method (preset) | images/s (median step) | mean step ms | vs {args.reference} |")
    print("|---|---|---|---|")
    for m in methods:
        ratio = f"{rates[m] / ref:.1f}x" if ref else "-"
        print(f"| {m} ({PRESETS.get(m, 'demo')}) | {rates[m]:.1f} | {1000 * statistics.mean(times[m]):.0f} | "
              f"{ratio} |", flush=True)


# ------------------------------------------------------------------------------------------------- compare


def run_config(args: argparse.Namespace, method: str, source: str, seed: int, steps: int,
               extra: list[str] = (), timed: bool = False) -> Config:
    """The method's CPU preset with this benchmark's seed, budget and data source: `steps` steps, or when `timed`
    --minutes of the loop's clock (trainer.minutes) with TIME_CAP x `steps` as the bound; warm-up 5% either way."""
    bound = math.ceil(steps * TIME_CAP) if timed else steps
    overrides = [f"trainer.seed={seed}", f"data.seed={seed}", f"trainer.steps={bound}",
                 f"trainer.warmup_steps={max(1, bound // 20)}", f"trainer.checkpoint_every={max(1, steps // 5)}",
                 f"trainer.device={args.device}", *args.override, *extra]
    if timed:
        overrides.append(f"trainer.minutes={args.minutes}")
    if source == "real":
        overrides.append(f"data.real={REAL}")
    return load_config(PRESETS[method], overrides)


def probe(args: argparse.Namespace, method: str, source: str) -> dict[str, Any]:
    """Steady-state steps/second of the real train loop (stream, worker, AMP, optimiser) for this run kind."""
    n = args.probe_warmup + args.probe_steps
    cfg = run_config(args, method, source, 0, n, ["trainer.log_every=1", f"trainer.checkpoint_every={n}",
                                                  f"trainer.warmup_steps={args.probe_warmup}"])
    folder = args.out / "probes" / f"{method}-{source}"
    shutil.rmtree(folder, ignore_errors=True)
    pretrain(cfg, folder, progress=False)
    with open(folder / "train_log.csv") as f:
        rate = probe_rate(list(csv.DictReader(f)), args.probe_warmup, cfg.trainer.batch_size)
    shutil.rmtree(folder, ignore_errors=True)
    return {"steps_per_second": rate, "images_per_second": rate * cfg.trainer.batch_size,
            "steps": steps_for_budget(args.minutes, rate)}


def finetune_settings(args: argparse.Namespace, seed: int) -> FinetuneSettings:
    return FinetuneSettings(epochs=args.finetune_epochs, lr=args.finetune_lr, batch_size=args.finetune_batch_size,
                            layer_decay=args.layer_decay, head=args.finetune_head, seed=seed)


def fine_tuned(args: argparse.Namespace, run_dir: Path, out: Path, init: str, seed: int, log) -> float:
    """Fine-tune top-1 of the run's backbone (or its random init), computed once and kept in out/metrics.json."""
    from synthsight.runs import finetune_run

    path = out / "metrics.json"
    if not path.is_file():
        torch.set_num_threads(args.eval_threads or os.cpu_count() or 1)  # no generation worker runs beside it
        finetune_run(run_dir, out, REAL, REAL, finetune_settings(args, seed), init=init, limit=args.finetune_limit,
                     test_limit=args.test_limit, device=str(resolve_device(args.device)), progress=args.progress,
                     log=lambda text: log("    " + text))
    return json.loads(path.read_text())["result"]["top1"]


def probed(args: argparse.Namespace, run_dir: Path, with_random: bool, log) -> dict[str, dict[str, float]]:
    """Frozen-feature k-NN and linear top-1 of the run (and of its random init), kept in run_dir/probes.json."""
    path = run_dir / "probes.json"
    if not path.is_file():
        torch.set_num_threads(args.eval_threads or os.cpu_count() or 1)
        cfg = EvalConfig(data=REAL, test_data=REAL, protocols=["knn", "linear"],
                         compare=["random"] if with_random else [], size=32, limit=args.eval_limit,
                         test_limit=args.test_limit)
        report = evaluate(run_dir, cfg, device=resolve_device(args.device), progress=False,
                          log=lambda text: log("    " + text))
        result = {("random" if e.name == RANDOM else "pretrained"): {p: r.top1 for p, r in e.results.items()}
                  for e in report.encoders}
        write_text_atomic(path, json.dumps(result, indent=1))
    return json.loads(path.read_text())


def mean_std(values: list[float]) -> str:
    if not values:
        return "n/a"
    pts = [100 * v for v in values]
    spread = f" ± {statistics.stdev(pts):.2f}" if len(pts) > 1 else ""
    return f"{statistics.mean(pts):.2f}{spread} (n={len(pts)})"


def table(rows: dict[str, dict[int, dict[str, float]]], steps: dict[str, dict[int, int]]) -> str:
    """rows: model -> seed -> {finetune, linear, knn} top-1; gains are paired with random init's same seed."""
    metrics = ("finetune", "linear", "knn")
    head = ("| model | pretraining steps | fine-tune top-1 % | gain (pts) | linear top-1 % | gain (pts) | "
            "k-NN top-1 % | gain (pts) |")
    lines = [head, "|" + "---|" * 8]
    random = rows.get("random init", {})
    for model, by_seed in rows.items():
        cells = []
        for m in metrics:
            values = [r[m] for r in by_seed.values() if m in r]
            gains = [r[m] - random[s][m] for s, r in by_seed.items() if m in r and m in random.get(s, {})]
            cells += [mean_std(values), "-" if model == "random init" else mean_std(gains)]
        n_steps = sorted(set(steps.get(model, {}).values()))
        lines.append(f"| {model} | {', '.join(map(str, n_steps)) or '-'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def settings_record(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("minutes", "methods", "real", "finetune_epochs", "finetune_lr", "finetune_batch_size", "finetune_limit",
            "layer_decay", "finetune_head", "eval_limit", "test_limit", "probe_warmup", "probe_steps", "override", "device")
    record = {k: getattr(args, k) for k in keys}
    if args.schedule != "steps":  # (folders of session 10 and before trained planned steps and do not record it)
        record["schedule"] = args.schedule
    if not args.synthetic:  # (a reference-only folder; earlier folders always trained on formula images)
        record["synthetic"] = False
    return record


def compare(args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    settings = json.loads(json.dumps(settings_record(args)))
    path = args.out / "settings.json"
    if path.is_file() and json.loads(path.read_text()) != settings:
        previous = json.loads(path.read_text())
        diffs = [f"{k}: {previous.get(k)!r} there, {v!r} now" for k, v in settings.items() if previous.get(k) != v]
        sys.exit(f"{args.out} holds a benchmark with other settings ({'; '.join(diffs)}); choose another --out")
    write_text_atomic(path, json.dumps(settings, indent=1))
    head = header(resolve_device(args.device), args.eval_threads or os.cpu_count() or 1)
    on = [*(["formula images"] if args.synthetic else []),
          *([f"{REAL} training images without labels"] if args.real else [])]
    head += [f"pretraining: {', '.join(f'{m} ({PRESETS[m]})' for m in args.methods)} on {' and on '.join(on)}"
             + f", {args.minutes:g} min of wall clock each ("
             + ("trainer.minutes: the schedule follows the clock; a probe of " if args.schedule == "time" else
                "steps from a probe of ")
             + f"{args.probe_steps} steps after {args.probe_warmup} warm-up"
             + (" bounds the steps)" if args.schedule == "time" else ")")
             + f", seeds {', '.join(map(str, args.seeds))}"
             + (f", overrides {' '.join(args.override)}" if args.override else ""),
             f"fine-tuning (same for every model, random init included): {args.finetune_epochs} epochs, lr "
             f"{args.finetune_lr:g}, batch {args.finetune_batch_size}, layer decay {args.layer_decay:g}, head "
             f"{args.finetune_head}, "
             f"{args.finetune_limit or 60000} {REAL} training images (stratified, seeded by the seed), "
             f"{args.test_limit or 10000} test images",
             f"probes: k-NN (k=20) and linear on frozen features, {args.eval_limit or 60000} training images"]
    print("\n".join(head), flush=True)
    t0 = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{(time.perf_counter() - t0) / 60:6.1f} min] {text}", flush=True)

    plan_path = args.out / "plan.json"
    plan = json.loads(plan_path.read_text()) if plan_path.is_file() else {}
    sources = [s for s, wanted in (("synthetic", args.synthetic), ("real", args.real)) if wanted]
    rows: dict[str, dict[int, dict[str, float]]] = {"random init": {}}
    steps: dict[str, dict[int, int]] = {}
    for seed in args.seeds:
        first_run = None
        for method in args.methods:
            for source in sources:
                key, model = f"{method}-{source}", f"{method} on {'formula' if source == 'synthetic' else REAL} images"
                if key not in plan:
                    log(f"{key}: probing the training speed")
                    plan[key] = probe(args, method, source)
                    write_text_atomic(plan_path, json.dumps(plan, indent=1))
                pr = plan[key]
                run_dir = args.out / "runs" / f"{key}-seed{seed}"
                timed = args.schedule == "time"
                cfg = run_config(args, method, source, seed, pr["steps"], timed=timed)
                length = (f"{args.minutes:g} min on the clock (probe: {pr['images_per_second']:.0f} img/s, at most "
                          f"{cfg.trainer.steps} steps)" if timed else
                          f"{pr['images_per_second']:.0f} img/s x {args.minutes:g} min = {pr['steps']} steps")
                log(f"{key} seed {seed}: {length}; pretraining")
                how = train(cfg, run_dir, args.progress)
                summary = json.loads((run_dir / "train_summary.json").read_text())
                log(f"{key} seed {seed}: {how}, {summary['steps']} steps in {summary['seconds']:.0f} s, final loss "
                    f"{summary['final_loss']:.4f}; fine-tuning and probing")
                result = {"finetune": fine_tuned(args, run_dir, run_dir / "finetune-bench", "pretrained", seed, log)}
                with_random = first_run is None
                probes = probed(args, run_dir, with_random, log)
                result.update(probes["pretrained"])
                rows.setdefault(model, {})[seed] = result
                steps.setdefault(model, {})[seed] = summary["steps"]
                log(f"{key} seed {seed}: " + ", ".join(f"{k} {100 * v:.2f}%" for k, v in result.items()))
                if first_run is None:
                    first_run = run_dir
                    random = {"finetune": fine_tuned(args, run_dir, args.out / f"random-seed{seed}", "random", seed,
                                                     log), **probes["random"]}
                    rows["random init"][seed] = random
                    log(f"random init seed {seed}: " + ", ".join(f"{k} {100 * v:.2f}%" for k, v in random.items()))
                text = table(rows, steps)
                write_text_atomic(args.out / "results.md", "\n".join(["```", *head, "```", "", text, ""]))
                write_text_atomic(args.out / "results.json", json.dumps({"settings": settings, "header": head,
                                                                        "rows": rows, "steps": steps}, indent=1))
    print("\n" + table(rows, steps))
    log(f"done: {args.out / 'results.md'}")


# ---------------------------------------------------------------------------------------------- attention


def attention(args: argparse.Namespace) -> None:
    from synthsight.analysis.attention import cls_attention_by_block
    from synthsight.analysis.attention_focus import attention_focus, foreground_patches
    from synthsight.analysis.attention_plot import plot_attention
    from synthsight.analysis.retrieval import pick_queries
    from synthsight.eval.data import load_dataset
    from synthsight.eval.run import load_backbone, random_backbone
    from synthsight.models.preprocess import normalize_images

    runs = sorted(d for d in (args.out / "runs").glob("*-seed*") if (d / "train_summary.json").is_file())
    if not runs:
        sys.exit(f"{args.out / 'runs'} holds no finished run; run `compare --out {args.out}` first")
    test = load_dataset(REAL, "test", size=32, limit=args.images, seed=0)
    shown = pick_queries(test.labels, 1, 0, 10)  # one image per class in the figures
    figures = args.out / "attention"
    figures.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[int, dict[str, float]]] = {}  # model -> seed -> focus of the last block
    per_block: dict[str, dict[int, dict[int, dict[str, float]]]] = {}  # --blocks: model -> seed -> block -> focus

    def cls_maps(net: torch.nn.Module) -> torch.Tensor:  # Tensor[blocks, B, heads, h, w]: every block or the last
        blocks = None if args.blocks else [-1]
        return torch.cat([cls_attention_by_block(net, normalize_images(x), blocks) for x in test.images.split(256)], 1)

    with torch.no_grad():
        for run in runs:
            backbone, cfg, _ = load_backbone(run)
            seed = int(run.name.rsplit("seed", 1)[1])
            method, source = run.name.rsplit("-seed", 1)[0].split("-", 1)
            name = f"{method} on {'formula' if source == 'synthetic' else REAL} images"
            random = random_backbone(cfg)
            for model, net, stem in ((name, backbone, run.name), ("random init", random, f"random-seed{seed}")):
                if seed in results.get(model, {}):
                    continue
                net.eval()
                by_block = cls_maps(net)
                foreground = foreground_patches(test.images, test.images.shape[-1] // by_block.shape[-1])
                focus_by_block = [attention_focus(m, foreground) for m in by_block]
                if args.blocks:
                    per_block.setdefault(model, {})[seed] = dict(enumerate(focus_by_block))
                maps, focus = by_block[-1], focus_by_block[-1]  # the last block's: the table and the figure
                results.setdefault(model, {})[seed] = focus
                plot_attention(maps[shown], test.images[shown], figures / f"{stem}.png", test.labels[shown],
                               test.classes, title=f"{model}, seed {seed}: CLS attention of the last block, per head")
                print(f"{model} seed {seed}: {100 * focus['attention_share']:.1f}% of the attention on "
                      f"{100 * focus['area_share']:.1f}% of the patches (ratio {focus['ratio']:.2f}), separation "
                      f"{focus['separation']:.3f} (best head {focus['separation_best_head']:.3f})", flush=True)
    lines = ["| model | seeds | attention on the object % | object's share of the patches % | ratio | "
             "separation | best head's separation |", "|---|---|---|---|---|---|---|"]
    for model, by_seed in results.items():
        cells = [mean_std([r[k] for r in by_seed.values()]) for k in ("attention_share", "area_share")]
        for k in ("ratio", "separation", "separation_best_head"):
            values = [r[k] for r in by_seed.values()]
            spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
            cells.append(f"{statistics.mean(values):.3f}{spread}")
        lines.append(f"| {model} | {', '.join(map(str, sorted(by_seed)))} | " + " | ".join(cells) + " |")
    if per_block:  # separation per block: where in the network the maps follow the object
        depth = max(len(b) for by_seed in per_block.values() for b in by_seed.values())
        lines += ["", "separation per block (mean over seeds; block 0 is the first):", "",
                  "| model | " + " | ".join(map(str, range(depth))) + " |", "|---|" + "---|" * depth]
        for model, by_seed in per_block.items():
            lines.append(f"| {model} | " + " | ".join(
                f"{statistics.mean(b[i]['separation'] for b in by_seed.values()):.2f}" for i in range(depth)) + " |")
    text = "\n".join(lines)
    write_text_atomic(args.out / "attention.md", f"command: python {' '.join(sys.argv)}\n\n{text}\n")
    write_text_atomic(args.out / "attention.json", json.dumps(
        {**results, **({"per_block": per_block} if per_block else {})}, indent=1))
    print("\n" + text + f"\n\nfigures: {figures}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("throughput", help="training images/second of mae, data2vec and dino on ViT-Tiny")
    t.add_argument("--methods", default="mae,data2vec,dino")
    t.add_argument("--reference", default="dino", help="the method the others are compared with")
    t.add_argument("--batch-size", type=int, default=64, help="global batch, the same for every method")
    t.add_argument("--size", type=int, default=32, help="view side in pixels")
    t.add_argument("--patch-size", type=int, default=4)
    t.add_argument("--amp", default="bf16", help="bf16 (the presets'), fp16 or none")
    t.add_argument("--rounds", type=int, default=6, help="timed steps per method")
    t.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    t.add_argument("--threads", type=int, default=1, help="torch threads (the CPU presets train on 1)")
    t.add_argument("--device", default="cpu")
    t.add_argument("--fused-attention", action="store_true",
                   help="PyTorch's fused attention kernel on CPU too (slower there; for comparison)")

    a = sub.add_parser("attention", help="CLS attention of compare's runs and their random inits on real images")
    a.add_argument("--out", type=Path, default=Path("runs/bench-mim"), help="the folder of a finished compare")
    a.add_argument("--images", type=int, default=1000, help="Fashion-MNIST test images (stratified subset)")
    a.add_argument("--blocks", action="store_true",
                   help="also measure every block's CLS attention (a separation per block), not only the last's")

    c = sub.add_parser("compare", help="pretrain for N minutes, fine-tune and probe, compare with random init")
    c.add_argument("--methods", default="mae,data2vec", help="comma-separated: mae, data2vec")
    c.add_argument("--minutes", type=float, default=20, help="pretraining wall clock per run")
    c.add_argument("--seeds", default="0,1,2", help="comma-separated trainer/data/fine-tune seeds")
    c.add_argument("--schedule", default="time", choices=["time", "steps"],
                   help="time (default): each run trains --minutes of its loop (trainer.minutes), its schedule "
                   "following the clock; steps: the steps a speed probe plans for --minutes (the host's speed drifts)")
    c.add_argument("--no-real", dest="real", action="store_false",
                   help="skip the real-data reference (the same recipe pretrained on Fashion-MNIST images)")
    c.add_argument("--no-synthetic", dest="synthetic", action="store_false",
                   help="train only the real-data reference (and measure its random init, the same weights as the "
                   "formula run's of that seed): to add the reference to a finished --no-real comparison")
    c.add_argument("--finetune-epochs", type=int, default=10)
    c.add_argument("--finetune-lr", type=float, default=1e-3)
    c.add_argument("--finetune-batch-size", type=int, default=128, help="(5000 images: 39 steps per epoch)")
    c.add_argument("--finetune-limit", type=int, default=5000,
                   help="Fashion-MNIST training images to fine-tune on (stratified; 0 = all 60000)")
    c.add_argument("--finetune-head", default="bn", choices=["linear", "bn"],
                   help="the fine-tuning head, the same for every model: bn (default: BatchNorm without affine, then "
                   "linear; MAE's probe head) or linear. Session 9's diagnostic (docs/BENCHMARKS.md): after 400 MAE "
                   "steps a linear head fine-tuned 17 points below random init, the bn head 9 points above it")
    c.add_argument("--layer-decay", type=float, default=1.0,
                   help="layer-wise lr decay of every fine-tune, random init included (default 1 = off)")
    c.add_argument("--eval-limit", type=int, default=10000,
                   help="training images of the k-NN / linear probes (0 = all 60000)")
    c.add_argument("--test-limit", type=int, default=None, help="test images (default all 10000)")
    c.add_argument("--probe-steps", type=int, default=10)
    c.add_argument("--probe-warmup", type=int, default=8)
    c.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override for every pretraining run (repeatable), e.g. trainer.batch_size=64")
    c.add_argument("--eval-threads", type=int, default=0,
                   help="torch threads for fine-tuning and probes (0 = all); 1 when another job keeps a core busy "
                   "(session 11: 2 threads beside a busy core fine-tuned ~10x slower than 1 thread)")
    c.add_argument("--device", default="auto")
    c.add_argument("--progress", action="store_true")
    c.add_argument("--out", type=Path, default=Path("runs/bench-mim"))
    args = p.parse_args()
    if args.command == "throughput":
        throughput(args)
        return
    if args.command == "attention":
        attention(args)
        return
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in args.methods:
        if m not in ("mae", "data2vec"):
            sys.exit(f"compare: unknown method {m!r}; choose among mae, data2vec")
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if not (args.synthetic or args.real):
        sys.exit("compare: --no-real and --no-synthetic leave nothing to pretrain; drop one of them")
    args.finetune_limit, args.eval_limit = args.finetune_limit or None, args.eval_limit or None
    compare(args)


if __name__ == "__main__":
    main()
