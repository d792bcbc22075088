"""Every pretraining method on the same synthetic stream and the same wall-clock budget, measured on real data.

For each method in the registry (all but `distill`, which learns from teacher checkpoints; see
benchmarks/distill.py) this script:

1. probes the training speed: --probe-warmup steps, then --probe-steps timed steps of the real train loop
   (stream, DataLoader worker, AMP, optimiser) on that data source, so trainer.steps = budget x measured
   steps/second gives every run the same wall-clock budget while the warm-up + cosine LR schedule still spans the
   whole run (a time limit inside the loop would cut the schedule short);
2. pretrains it on the synthetic stream (the same images for every method, see SYNTHETIC_FAMILIES) and, for
   self-supervised methods, once more on Fashion-MNIST's training images without labels (data.real): the
   real-data reference, same budget measured the same way;
3. evaluates every run with k-NN and a linear probe on Fashion-MNIST (frozen features, --eval-limit training
   images, stratified, and the full 10,000-image test split), next to a random initialisation of the same
   architecture (the weights every run starts from, evaluated once);
4. prints and writes (JSON + Markdown) a table with the gap closed, per metric:
       G = (synthetic - random) / (real - random)
   0 = no better than random init, 1 = as good as pretraining on the real images themselves.

Everything is resumable: the probe results (plan.json), finished runs (provenance.json) and evaluations
(eval/metrics.json) in --out are kept, an interrupted run continues from its last checkpoint, so running the same
command again only does what is missing. Settings that change results are recorded in settings.json; a second
invocation with other settings refuses the folder instead of mixing results.

Usage:
    python benchmarks/methods.py                                   # ~89 min on 2 idle CPU cores: see the plan
    python benchmarks/methods.py --methods simclr,byol --minutes 2 --out runs/bench-methods-2min
    python benchmarks/methods.py --minutes 0.05 --eval-limit 500 --methods simclr --out /tmp/bench-smoke  # smoke
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from synthsight.checkpoint import save_checkpoint, write_text_atomic
from synthsight.config import Config, EvalConfig, apply_overrides, config_from_dict, preset_path
from synthsight.eval.run import PRETRAINED, RANDOM, evaluate
from synthsight.registry import METHODS
from synthsight.study.budget import probe_rate, steps_for_budget  # noqa: F401  (shared with `synthsight study`)
from synthsight.study.stats import gap_closed  # noqa: F401
from synthsight.train.build import build_method
from synthsight.train.distributed import resolve_device
from synthsight.train.loop import pretrain

# One stream for every method: supervised methods (supcon, ce) need the generators' class labels, and the only
# families with categories are the formula-driven ones, so self-supervised methods train on them too (their labels
# unused). Same images for all, so the table compares methods and nothing else. Each family has 1,000 categories:
# 3,000 classes in all, so at batch 256 SupCon has few same-class positives besides the other view.
SYNTHETIC_FAMILIES = ["fractal_ifs/fractaldb", "contours/rcdb", "programs"]
REAL = "fashion-mnist"  # the real-data reference (training split, labels unused) and the evaluation data
EXCLUDED = {"distill": "learns from teacher checkpoints, not from images alone (benchmarks/distill.py)",
            "mae": "masks ViT patches and needs a ViT backbone (benchmarks/mim.py)",
            "data2vec": "masks ViT patches and needs a ViT backbone (benchmarks/mim.py)"}

# Per-method options at CPU scale (method.<key>, or trainer.* / views.* keys), applied only where the method's
# config has that key: a key it lacks is listed as skipped in the header, never silently dropped.
# The methods' own defaults are already at CPU scale (narrow heads; EMA momentum 0.99 for byol, moco_v2, moco_v3;
# DINO with 4,096 prototypes and 4 local crops of 16 px), so only what they leave at paper scale is changed here.
METHOD_OPTIONS: dict[str, dict[str, Any]] = {
    # DINO's teacher EMA starts at the paper's 0.996, tuned for 100+ ImageNet epochs; a budget of minutes buys a
    # few hundred steps on a CPU, where the teacher must keep up with the student (DINOConfig: 0.99 for ~1k steps).
    "dino": {"momentum": 0.99},
}
OPTION_SECTIONS = ("trainer.", "views.", "model.", "data.")

# Rough costs for the printed plan, measured on this project's 2-core VM with smallconv at 32 px, idle: one
# evaluation took 9.8 s with 20,000 training images and 19.4 s with all 60,000 (10,000 test images either way);
# with neighbours loading the machine (load average ~7) the same took 61 s and 211 s, so on a busy machine add
# ~3 min per evaluation to the plan or pass --eval-limit 20000.
EVAL_MINUTES_FIXED = 0.1  # test-split features, loading, k-NN on 10,000 test images
EVAL_MINUTES_PER_1K = 0.005  # per 1,000 training images: features + linear-probe weight-decay search
PROBE_MINUTES = 0.3  # build, worker start, 8 warm-up + 10 timed steps at batch 256 (simclr: 9 s idle)
RUN_OVERHEAD_MINUTES = 0.1  # worker start, sample grids, provenance record, checkpoints
FASHION_MNIST_TRAIN = 60000


# ------------------------------------------------------------------------------------------- pure helpers


def eval_minutes(limit: int | None) -> float:
    return EVAL_MINUTES_FIXED + EVAL_MINUTES_PER_1K * (limit or FASHION_MNIST_TRAIN) / 1000


@dataclass
class Plan:
    """How long the benchmark should take: the arithmetic printed before it starts."""

    runs: int  # training runs: self-supervised methods x 2 sources + supervised methods x 1
    evals: int  # one per run, plus random init
    minutes: float  # training budget per run
    eval_each: float
    probe_each: float = PROBE_MINUTES
    overhead_each: float = RUN_OVERHEAD_MINUTES

    @classmethod
    def of(cls, n_self_supervised: int, n_supervised: int, minutes: float, limit: int | None) -> "Plan":
        runs = 2 * n_self_supervised + n_supervised
        return cls(runs, runs + 1, minutes, eval_minutes(limit))

    @property
    def total(self) -> float:
        return self.runs * (self.minutes + self.probe_each + self.overhead_each) + self.evals * self.eval_each

    def describe(self) -> str:
        return (f"{self.runs} runs x ({self.minutes:g} min training + ~{self.probe_each:g} probe + "
                f"~{self.overhead_each:g} overhead) + {self.evals} evaluations x ~{self.eval_each:.2f} min "
                f"= ~{self.total:.0f} min")


def split_options(method_fields: list[str], options: dict[str, Any]) -> tuple[dict, list[str], list[str]]:
    """(method options the method has, dotted config overrides, skipped keys) from a METHOD_OPTIONS entry."""
    method_opts, overrides, skipped = {}, [], []
    for key, value in options.items():
        if key.startswith(OPTION_SECTIONS):
            overrides.append(f"{key}={json.dumps(value)}")
        elif key in method_fields:
            method_opts[key] = value
        else:
            skipped.append(key)
    return method_opts, overrides, skipped


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The results table (top-1 % and G) from result rows (see `result_row`)."""
    head = ("| method | kind | steps synthetic / real | synthetic k-NN | synthetic linear | real k-NN | real linear "
            "| random k-NN | random linear | G k-NN | G linear |")
    lines = [head, "|" + "---|" * 11]

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.2f}"

    def g(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2f}"

    for r in rows:
        s, re, rnd, gap = r["synthetic"], r["real"] or {}, r["random"], r["gap_closed"]
        steps = f"{r['steps']['synthetic'] or 'n/a'} / {r['steps'].get('real') or 'n/a'}"
        lines.append(f"| {r['method']} | {r['kind']} | {steps} | {pct(s.get('knn'))} | {pct(s.get('linear'))} | "
                     f"{pct(re.get('knn'))} | {pct(re.get('linear'))} | {pct(rnd.get('knn'))} | "
                     f"{pct(rnd.get('linear'))} | {g(gap.get('knn'))} | {g(gap.get('linear'))} |")
    return "\n".join(lines)


def result_row(method: str, supervised: bool, runs: dict[str, dict], random: dict[str, float]) -> dict[str, Any]:
    """One table row from the finished runs ({source: {"steps", "top1": {protocol: acc}, ...}}, or {"error": why}
    for a run that failed)."""
    syn, real = (runs[s] if "top1" in runs.get(s, {}) else None for s in ("synthetic", "real"))
    gap = {p: gap_closed(syn["top1"][p], real["top1"][p], random[p]) if syn and real and p in random else None
           for p in ("knn", "linear")}
    return {"method": method, "kind": "supervised" if supervised else "self-supervised",
            "steps": {k: "failed" if "error" in runs.get(k, {}) else (v or {}).get("steps")
                      for k, v in (("synthetic", syn), ("real", real))},
            "synthetic": (syn or {}).get("top1", {}), "real": real["top1"] if real else None, "random": random,
            "gap_closed": gap, "runs": runs}


# --------------------------------------------------------------------------------------------- the runs


def options_of(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """METHOD_OPTIONS of `method`, with --option METHOD.KEY=VALUE on top."""
    return {**METHOD_OPTIONS.get(method, {}), **args.options.get(method, {})}


def base_config(args: argparse.Namespace, method: str, source: str, steps: int, extra: list[str] = (),
                options: bool = True) -> Config:
    """The demo preset with the benchmark's shared settings, the method's options (unless `options` is false)
    and `steps` steps."""
    values = yaml.safe_load(preset_path("demo").read_text()) or {}
    fields = [f.name for f in dataclasses.fields(METHODS.get(method).config_class)]
    method_opts, option_overrides, _ = split_options(fields, options_of(args, method) if options else {})
    values["method"] = {"name": method, **method_opts}  # the preset's SimCLR options belong to another method
    overrides = [
        f"model.backbone={args.backbone}", f"trainer.batch_size={args.batch_size}", f"trainer.steps={steps}",
        f"trainer.warmup_steps={max(1, steps // 20)}", f"trainer.threads={args.threads}",
        f"trainer.device={args.device}", f"trainer.checkpoint_every={max(1, steps // 5)}",
        f"data.families=[{', '.join(args.families)}]", f"trainer.seed={args.seed}", f"data.seed={args.seed}",
        *option_overrides, *extra,
    ]
    if source == "real":
        overrides.append(f"data.real={REAL}")
    return config_from_dict(apply_overrides(values, overrides))


def probe(args: argparse.Namespace, method: str, source: str) -> dict[str, Any]:
    """Measured steady-state steps/second of the real train loop on this method and data source."""
    n = args.probe_warmup + args.probe_steps
    cfg = base_config(args, method, source, n, ["trainer.log_every=1", f"trainer.checkpoint_every={n}",
                                                f"trainer.warmup_steps={args.probe_warmup}"])
    folder = args.out / "probes" / f"{method}-{source}"
    shutil.rmtree(folder, ignore_errors=True)
    t0 = time.perf_counter()
    pretrain(cfg, folder, progress=False)
    with open(folder / "train_log.csv") as f:
        rate = probe_rate(list(csv.DictReader(f)), args.probe_warmup, args.batch_size)
    shutil.rmtree(folder, ignore_errors=True)
    return {"steps_per_second": rate, "probe_warmup": args.probe_warmup, "probe_steps": args.probe_steps,
            "probe_seconds": round(time.perf_counter() - t0, 1), "steps": steps_for_budget(args.minutes, rate)}


def train(cfg: Config, run_dir: Path, progress: bool) -> str:
    """Pretrain into run_dir unless finished; continue an interrupted run from its last checkpoint."""
    from synthsight.runs import pretrain_run

    if (run_dir / "provenance.json").is_file():  # settings.json guarantees the benchmark's settings are the same
        same = json.loads((run_dir / "config.json").read_text()) == cfg.to_dict()
        return "finished earlier" + ("" if same else " (kept; the code's config defaults have changed since)")
    resume = (run_dir / "checkpoints" / "latest").exists()
    pretrain_run(cfg, run_dir, resume=resume, progress=progress)
    return "resumed" if resume else "trained"


def evaluate_run(args: argparse.Namespace, run_dir: Path, eval_cfg: EvalConfig, name: str | None = None
                 ) -> dict[str, Any]:
    """Evaluate once (kept in run_dir/eval/metrics.json); returns the metrics. `name` renames the checkpoint's
    encoder (the random-init checkpoint is not pretrained)."""
    path = run_dir / "eval" / "metrics.json"
    if not path.is_file():
        torch.set_num_threads(args.eval_threads or os.cpu_count() or 1)  # no generation worker runs beside it
        t0 = time.perf_counter()
        def log(text: str) -> None:
            print("    " + (text.replace(PRETRAINED, name) if name else text), flush=True)

        report = evaluate(run_dir, eval_cfg, device=resolve_device(args.device), progress=False, log=log)
        if name:
            report.encoders[-1].name = name
        record = {**report.to_dict(), "seconds": round(time.perf_counter() - t0, 1)}
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(record, indent=1))
    return json.loads(path.read_text())


def top1(metrics: dict[str, Any], name: str | None = None) -> dict[str, float]:
    """{protocol: top-1} of the encoder `name` (default: the pretrained one, listed last)."""
    enc = metrics["encoders"][-1] if name is None else next(e for e in metrics["encoders"] if e["name"] == name)
    return {p: r["top1"] for p, r in enc["results"].items()}


def random_baseline(args: argparse.Namespace, eval_cfg: EvalConfig) -> dict[str, float]:
    """Random init of the architecture every run starts from (same seed), evaluated like the runs."""
    folder = args.out / "random-init"
    if not (folder / "checkpoints" / "latest").exists():
        cfg = base_config(args, "simclr", "synthetic", 1, options=False)  # only the backbone matters
        save_checkpoint(folder, 0, build_method(cfg), None, {"config": cfg.to_dict()})
    return top1(evaluate_run(args, folder, eval_cfg, name=RANDOM))


def settings_record(args: argparse.Namespace) -> dict[str, Any]:
    """What makes results comparable; a folder holding other settings is refused."""
    return {"minutes": args.minutes, "backbone": args.backbone, "batch_size": args.batch_size,
            "families": args.families, "real": REAL, "threads": args.threads, "device": args.device,
            "seed": args.seed, "probe_warmup": args.probe_warmup, "probe_steps": args.probe_steps,
            "eval_limit": args.eval_limit, "eval_test_limit": args.eval_test_limit,
            "method_options": {m: options_of(args, m) for m in sorted({*METHOD_OPTIONS, *args.options})}}


def check_settings(args: argparse.Namespace) -> None:
    path = args.out / "settings.json"
    current = json.loads(json.dumps(settings_record(args)))
    if path.is_file():
        previous = json.loads(path.read_text())
        diffs = [f"{k}: {previous.get(k)!r} there, {current.get(k)!r} now" for k in current
                 if previous.get(k) != current.get(k)]
        if diffs:
            sys.exit(f"{args.out} holds a benchmark with other settings ({'; '.join(diffs)}); choose another --out")
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(current, indent=1))


def parse_options(items: list[str]) -> dict[str, dict[str, Any]]:
    """['dino.local_crops=4', 'byol.trainer.lr=0.001'] -> {'dino': {'local_crops': 4}, 'byol': {'trainer.lr': ...}}."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        method, dot, option = key.partition(".")
        if not (sep and dot and option):
            raise SystemExit(f"--option {item!r}: expected METHOD.KEY=VALUE, e.g. dino.local_crops=4")
        value = yaml.safe_load(raw)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
            try:
                value = float(value)
            except ValueError:
                pass
        out.setdefault(method, {})[option] = value
    return out


# --------------------------------------------------------------------------------------------------- main


def header(args: argparse.Namespace, methods: list[str], plan: Plan) -> list[str]:
    from machine import cpu_model  # benchmarks/machine.py (scripts run from this folder)

    lines = [f"command: python {' '.join(sys.argv)}",
             f"machine: {cpu_model()} ({os.cpu_count()} logical cores), torch {torch.__version__}, device "
             f"{resolve_device(args.device)}, trainer.threads={args.threads} + 1 data-loader worker",
             f"methods: {', '.join(methods)}"
             + "".join(f"; {m} left out: {why}" for m, why in EXCLUDED.items()),
             f"backbone {args.backbone}, global batch {args.batch_size}, demo preset views (32 px) and optimiser "
             "(AdamW, lr 2e-3, 5% warm-up + cosine), the same for every method",
             f"synthetic stream (every method, labels used only by supervised ones): {', '.join(args.families)}",
             f"real-data reference: the same method on {REAL} training images without labels (data.real); "
             "supervised methods have none (n/a): without labels they cannot train, and with the labels it would be "
             "supervised training on the evaluation task itself",
             f"budget: {args.minutes:g} min of training per run; steps = budget x steps/s measured by a probe of "
             f"{args.probe_steps} steps after {args.probe_warmup} warm-up steps",
             "evaluation: Fashion-MNIST k-NN + linear probe, "
             + (f"{args.eval_limit} training images (stratified), " if args.eval_limit else
                f"all {FASHION_MNIST_TRAIN} training images, ") + f"{args.eval_test_limit or 10000} test images",
             f"plan: {plan.describe()}",
             "per-method options (CPU scale):"]
    for m in methods:
        fields = [f.name for f in dataclasses.fields(METHODS.get(m).config_class)]
        opts, overrides, skipped = split_options(fields, options_of(args, m))
        if opts or overrides or skipped:
            text = ", ".join([f"{k}={v}" for k, v in opts.items()] + overrides)
            lines.append(f"  {m}: {text or '-'}" + (f" (skipped, not options of {m}: {', '.join(skipped)})"
                                                   if skipped else ""))
    if lines[-1].endswith("(CPU scale):"):
        lines[-1] += " none for these methods"
    return lines


def write_results(args: argparse.Namespace, head: list[str], rows: list[dict], random: dict[str, float]) -> str:
    table = markdown_table(rows)
    notes = ["G = (synthetic - random) / (real - random) per metric: 0 = no better than random init, 1 = as good "
             "as pretraining on the real training images without labels; n/a where there is no real-data "
             "reference (supervised methods) or real pretraining did not beat random init by half a point.",
             "Steps differ between methods and sources: every run got the same wall-clock budget at its own speed."]
    notes += [f"{r['method']} on {source} images failed: {run['error']}" for r in rows
              for source, run in r["runs"].items() if "error" in run]
    text = "\n".join(["# Methods benchmark", "", "```", *head, "```", "", table, "", *notes, ""])
    write_text_atomic(args.out / "results.md", text)
    record = {"settings": settings_record(args), "header": head, "random": random, "rows": rows}
    write_text_atomic(args.out / "results.json", json.dumps(record, indent=1))
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    names = [m for m in METHODS.names() if m not in EXCLUDED]
    p.add_argument("--methods", default=",".join(names), help=f"comma-separated, among: {', '.join(names)}")
    p.add_argument("--minutes", type=float, default=5.5,
                   help="training wall-clock per run (default 5.5: ~89 min in all with 8 methods on an idle "
                        "machine, see the plan printed)")
    p.add_argument("--backbone", default="smallconv", help="smallconv or resnet18 (resnet18: ~10x slower per step)")
    p.add_argument("--batch-size", type=int, default=256, help="global batch of every run")
    p.add_argument("--families", default=",".join(SYNTHETIC_FAMILIES), help="synthetic families (with categories)")
    p.add_argument("--eval-limit", type=int, default=0,
                   help="Fashion-MNIST training images for k-NN / linear (stratified; default 0 = all 60000: ~20 s "
                        "per evaluation on an idle machine, 10 s with 20000; a busy one can take 10x longer)")
    p.add_argument("--eval-test-limit", type=int, default=0,
                   help="Fashion-MNIST test images (stratified; 0 = all 10000; fewer only for smoke runs)")
    p.add_argument("--probe-steps", type=int, default=10, help="timed steps of each speed probe")
    p.add_argument("--probe-warmup", type=int, default=8,
                   help="untimed steps before them: worker start-up, and the 4 batches the data loader renders "
                        "ahead get used up, which would otherwise make a generator-bound run look faster (by up "
                        "to ~5%% with 8 warm-up and 10 timed steps)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for training (the demo's 1: the data-loader worker takes the other core)")
    p.add_argument("--eval-threads", type=int, default=0, help="torch threads for evaluation (0 = all cores)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0, help="trainer.seed and data.seed of every run")
    p.add_argument("--option", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="extra per-method option, e.g. dino.local_crops=4 or byol.trainer.lr=0.001 (repeatable)")
    p.add_argument("--progress", action="store_true", help="show each run's progress bar")
    p.add_argument("--out", type=Path, default=Path("runs/bench-methods"))
    args = p.parse_args()
    args.families = [f.strip() for f in args.families.split(",") if f.strip()]
    args.eval_limit = args.eval_limit or None
    args.eval_test_limit = args.eval_test_limit or None
    args.options = parse_options(args.option)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        METHODS.get(m)  # an unknown name lists the valid ones
        if m in EXCLUDED:
            sys.exit(f"{m} is not part of this benchmark: it {EXCLUDED[m]}")
    supervised = {m for m in methods if METHODS.get(m).needs_labels}
    plan = Plan.of(len(methods) - len(supervised), len(supervised), args.minutes, args.eval_limit)
    check_settings(args)
    head = header(args, methods, plan)
    print("\n".join(head), flush=True)

    t_start = time.perf_counter()
    eval_cfg = EvalConfig(data=REAL, test_data=REAL, protocols=["knn", "linear"], compare=[], size=32,
                          limit=args.eval_limit, test_limit=args.eval_test_limit)

    def log(text: str) -> None:
        print(f"[{(time.perf_counter() - t_start) / 60:5.1f} min] {text}", flush=True)

    log("random init: evaluating")
    random = random_baseline(args, eval_cfg)
    log("random init: " + ", ".join(f"{p} {100 * v:.2f}%" for p, v in random.items()))
    plan_path = args.out / "plan.json"
    probes = json.loads(plan_path.read_text()) if plan_path.is_file() else {}
    jobs = [(m, s) for m in methods for s in (("synthetic",) if m in supervised else ("synthetic", "real"))]
    finished: dict[str, dict[str, dict]] = {}
    for k, (method, source) in enumerate(jobs, 1):
        key, tag = f"{method}-{source}", f"[{k}/{len(jobs)}] {method} on {source} images"
        try:  # one failing run (e.g. the collapse alarm stopping it) is recorded; the benchmark goes on
            if key not in probes:
                probes[key] = probe(args, method, source)
                write_text_atomic(plan_path, json.dumps(probes, indent=1))
            pr = probes[key]
            log(f"{tag}: probe {pr['steps_per_second']:.3f} steps/s ({pr['steps_per_second'] * args.batch_size:.0f}"
                f" img/s) x {args.minutes:g} min budget = {pr['steps']} steps")
            cfg = base_config(args, method, source, pr["steps"])
            run_dir = args.out / "runs" / key
            how = train(cfg, run_dir, args.progress)
            summary = json.loads((run_dir / "train_summary.json").read_text())
            log(f"{tag}: {how}: {summary['steps']} steps in {summary['seconds']:.0f} s (budget "
                f"{60 * args.minutes:.0f} s), final loss {summary['final_loss']}; evaluation")
            acc = top1(evaluate_run(args, run_dir, eval_cfg))
        except Exception as err:  # noqa: BLE001  (reported in the table and the log, then the next run)
            log(f"{tag}: FAILED: {type(err).__name__}: {err}")
            finished.setdefault(method, {})[source] = {"error": f"{type(err).__name__}: {err}"}
        else:
            log(f"{tag}: " + ", ".join(f"{p} {100 * v:.2f}%" for p, v in acc.items()))
            finished.setdefault(method, {})[source] = {
                "steps": summary["steps"], "train_seconds": summary["seconds"],
                "steps_per_second_probe": pr["steps_per_second"], "top1": acc, "run_dir": str(run_dir)}
        rows = [result_row(m, m in supervised, finished[m], random) for m in methods if m in finished]
        write_results(args, head, rows, random)
    rows = [result_row(m, m in supervised, finished[m], random) for m in methods if m in finished]
    print("\n" + write_results(args, head, rows, random))
    log(f"done: {args.out / 'results.md'} and results.json (plan was ~{plan.total:.0f} min)")


if __name__ == "__main__":
    main()
