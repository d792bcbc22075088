"""Run a study's cells, resumably: pretrain (synthsight.runs.pretrain_run), evaluate (synthsight.eval.run), record.

Folder layout of `synthsight study STUDY.yaml --out OUT`:

    OUT/study.yaml        the study file as given (the last invocation's)
    OUT/plan.json         every cell: key, kind, variation, seed, budget, sets, folder
    OUT/probes.json       measured steps/second per recipe (minutes budgets), reused by later invocations
    OUT/runs/<kind>-...-<key>/   one per cell: the run folder of `synthsight pretrain` (config.json, checkpoints,
                          train_summary.json, provenance.json) + cell.json (the harness's record: steps, seconds,
                          images, budget check) + eval-<set>/metrics.json (+ settings.json)
    OUT/results.csv, summary.csv, table.md, per_class.csv, timings.json, report.html, *.png

Resuming: a cell whose folder (found by its key) holds cell.json with status "done" is reused; one with a
checkpoint continues from it (`--resume` semantics); one that failed (failed.json) is skipped unless
retry_failed. An evaluation is reused when its settings.json equals the settings asked for. Probes are kept in
probes.json; a run's steps come from its recipe's finished runs' measured speed when there are any, else from the
probe; a run part-way through keeps the steps it started with.

Example:
    >>> outcome = run_study(load_study(Path("configs/studies/family_screen.yaml")), Path("runs/study-families"))
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import yaml
from tqdm import tqdm

from synthsight.checkpoint import read_meta, write_text_atomic
from synthsight.config import EvalConfig, config_from_dict
from synthsight.family_spec import families_label
from synthsight.run_lock import run_lock
from synthsight.study.budget import (budget_flag, calibrated_rate, log_seconds, on_the_clock, probe, replanned_steps,
                                     steps_for_budget, steps_for_images, with_steps)
from synthsight.study.spec import Cell, EvalSet, Plan, StudySpec, cell_key, expand, select, slug

Selection = tuple[list[str] | None, list[int] | None]  # (variation names, seeds) to run; None: all


@dataclass
class Timings:
    """Where the study's wall-clock went; `harness` is what plain `pretrain` + `eval` would not have spent."""

    wall: float = 0.0
    train_loop: float = 0.0  # inside the train loop (TrainResult.seconds), summed over runs trained now
    pretrain_other: float = 0.0  # pretrain_run around the loop: build, worker start, samples, provenance
    probe: float = 0.0
    eval: float = 0.0
    random_init: float = 0.0  # building and saving random-init checkpoints
    results: float = 0.0  # results.csv, tables, plots, report.html

    @property
    def harness(self) -> float:
        return self.wall - self.train_loop - self.pretrain_other - self.eval - self.random_init

    def to_dict(self) -> dict[str, float]:
        return {**{k: round(v, 2) for k, v in dataclasses.asdict(self).items()}, "harness": round(self.harness, 2)}


@dataclass
class StudyOutcome:
    out: Path
    plan: Plan
    status: dict[str, str] = field(default_factory=dict)  # cell key -> done | failed | reused
    timings: Timings = field(default_factory=Timings)


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def cell_dir(out: Path, cell: Cell) -> Path:
    """The cell's folder: an existing one with its key (variation names may have changed), else a new one."""
    runs = out / "runs"
    found = sorted(runs.glob(f"*-{cell.key}")) if runs.is_dir() else []
    return found[0] if found else runs / cell.folder


def eval_config(cell: Cell, s: EvalSet, protocols: list[str]) -> EvalConfig:
    """The run's eval section with the set's data and the study's protocols; no baselines (random init is a cell)."""
    base = dict(cell.config.get("eval") or {})
    base.update(data=s.data, test_data=s.test_data, protocols=list(protocols), compare=[], limit=s.limit,
                test_limit=s.test_limit, size=s.size or cell.config["views"]["size"])
    return EvalConfig(**base)


class StudyRunner:
    """Runs the cells of one plan into `out`; see the module doc."""

    def __init__(self, spec: StudySpec, out: Path, progress: bool = True, retry_failed: bool = False,
                 log: Callable[[str], None] | None = None, only: Selection | None = None) -> None:
        self.spec, self.out, self.progress, self.retry_failed = spec, Path(out), progress, retry_failed
        self.plan = expand(spec)
        self.cells = select(self.plan, *(only or (None, None)))  # what this invocation runs; tables read all
        self.sets = {s.name: s for s in spec.sets}
        self.timings = Timings()
        self.t0 = time.perf_counter()
        self._log = log

    # ------------------------------------------------------------------------------------------- helpers

    def log(self, text: str) -> None:
        line = f"[{(time.perf_counter() - self.t0) / 60:5.1f} min] {text}"
        if self._log is not None:
            self._log(line)
        else:
            tqdm.write(line)

    def write_plan(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.out / "study.yaml", yaml.safe_dump(self.spec.source, sort_keys=False))
        cells = [{"key": c.key, "kind": c.kind, "variation": c.variation, "seed": c.seed,
                  "budget": c.budget.to_dict() if c.budget else None, "sets": c.sets, "real_set": c.real_set,
                  "folder": str(cell_dir(self.out, c).relative_to(self.out))} for c in self.plan.cells]
        write_text_atomic(self.out / "plan.json", json.dumps({"study": self.spec.name, "cells": cells,
                                                              "notes": self.plan.notes}, indent=1))

    def steps(self, cell: Cell) -> tuple[int, dict[str, Any] | None]:
        """Steps for the cell's budget; a minutes budget uses the speed of the recipe's finished runs, or before the
        first one has finished its probe (measured once, kept)."""
        cfg = config_from_dict(cell.config)
        if cfg.data.match:  # the probe must time the matched families, as the run will train on them
            from synthsight.analysis.match import apply_match

            cfg = apply_match(cfg)[0]
        if cell.budget.unit == "images":
            return steps_for_images(cell.budget.value, cfg.trainer.batch_size), None
        recipe = json.loads(json.dumps(cell.config))
        recipe["trainer"]["seed"] = recipe["data"]["seed"] = 0  # speed does not depend on the seed
        key = cell_key("probe", recipe, None)
        path = self.out / "probes.json"
        probes = _json(path) or {}
        if key not in probes:
            t0 = time.perf_counter()
            probes[key] = probe(cfg, self.out / "probes" / key, self.spec.probe_warmup, self.spec.probe_steps)
            self.timings.probe += time.perf_counter() - t0
            write_text_atomic(path, json.dumps(probes, indent=1))
            rate = probes[key]["steps_per_second"]
            self.log(f"probe {cell.variation}{' (' + cell.kind + ')' if cell.kind != 'synthetic' else ''}: "
                     f"{rate:.3f} steps/s ({rate * cfg.trainer.batch_size:.0f} img/s) in "
                     f"{probes[key]['seconds']:.0f} s")
        runs = self.finished_runs(key)
        rate = calibrated_rate(probes[key]["steps_per_second"], runs)
        info = {"key": key, **probes[key], "rate": rate,
                "rate_from": f"{len(runs)} finished run(s) of the recipe" if runs else "probe"}
        first = {} if runs else probes[key].get("first_epoch") or {}  # finished runs' rate has it in proportion
        return steps_for_budget(cell.budget.value, rate, first.get("steps", 0), first.get("steps_per_second")), info

    def finished_runs(self, probe_key: str) -> list[tuple[int, float]]:
        """(steps, training seconds) of this study's finished minutes-budget runs of one recipe."""
        runs = []
        for c in self.plan.cells:
            record = _json(cell_dir(self.out, c) / "cell.json") if c.budget and c.budget.unit == "minutes" else None
            if record and record.get("status") == "done" and (record.get("probe") or {}).get("key") == probe_key:
                runs.append((int(record["steps"]), float(record["train_seconds"])))
        return runs

    # ------------------------------------------------------------------------------------------- cells

    def run_config(self, cell: Cell, steps: int, started: dict[str, Any] | None, timed: bool = False) -> Any:
        """The cell's config for `steps` planned steps, on the clock of its minutes budget when `timed`; a run that
        has started keeps its schedule and the worker/thread split it trained with (trainer.split=auto probes only at
        the start and writes its choice into config.json)."""
        values = json.loads(json.dumps(cell.config))
        if started:
            values["trainer"].update({k: started["trainer"][k] for k in ("workers", "threads")})
            if timed:  # its config.json holds the bound it started with
                values["trainer"].update({k: started["trainer"][k] for k in ("steps", "warmup_steps",
                                                                              "checkpoint_every", "minutes")})
                return config_from_dict(values)
        if timed:
            return on_the_clock(config_from_dict(values), steps, cell.budget.value, self.spec.checkpoints)
        return with_steps(config_from_dict(values), steps, self.spec.checkpoints)

    def train(self, cell: Cell, folder: Path) -> dict[str, Any]:
        """Pretrain the cell into `folder` (continuing from a checkpoint when there is one); its cell.json."""
        from synthsight.runs import pretrain_run
        from synthsight.checkpoint import latest_good_checkpoint

        record = _json(folder / "cell.json")
        if record and record.get("status") == "done" and record.get("key") == cell.key:
            return record
        latest = latest_good_checkpoint(folder) if (folder / "checkpoints").is_dir() else None
        resume = latest is not None or (folder / "checkpoints" / "latest").exists()
        steps, probe_info = self.steps(cell)
        started = _json(folder / "config.json") if resume else None
        timed = cell.budget.unit == "minutes" and self.spec.schedule == "time"
        if started:  # a run part-way through keeps its schedule, whatever the rate or the study says now
            steps, timed = int(started["trainer"]["steps"]), bool(started["trainer"].get("minutes"))
        cfg = self.run_config(cell, steps, started, timed)
        t0 = time.perf_counter()
        replan, loop_seconds, done = None, 0.0, None
        if latest is not None and _finished(latest, cfg):  # killed after the last checkpoint
            from synthsight.provenance import write_provenance
            from synthsight.runs import write_samples

            write_samples(cfg, folder)
            write_provenance(cfg, folder, latest)
            done = int(latest.name.split("-")[1])
        else:
            pause = round(steps * self.spec.replan_at) if cell.budget.unit == "minutes" and not (resume or timed) else 0
            if 0 < pause < steps:  # equal wall-clock enforced: the run re-plans its steps at the speed it measures
                loop_seconds = pretrain_run(cfg, folder, progress=self.progress, stop_at=pause).seconds
                replan = replanned_steps(folder / "train_log.csv", cfg, cell.budget.seconds)
                self.log(f"{self.describe(cell)}: {steps} steps planned, {replan['at_step']} done in "
                         f"{replan['seconds']:.0f} s at {replan['steps_per_second']:.2f} steps/s: "
                         f"{replan['steps']} steps fill the budget")
                write_text_atomic(folder / "replan.json", json.dumps(replan, indent=1))
                steps, resume = replan["steps"], True
                cfg = self.run_config(cell, steps, _json(folder / "config.json"))
            result = pretrain_run(cfg, folder, resume=resume, progress=self.progress)
            loop_seconds, done = loop_seconds + result.seconds, result.steps
        self.timings.train_loop += loop_seconds
        self.timings.pretrain_other += time.perf_counter() - t0 - loop_seconds
        seconds = log_seconds(folder / "train_log.csv", cfg.trainer.batch_size) if resume else loop_seconds
        budget_seconds = cell.budget.seconds
        record = {
            "key": cell.key, "kind": cell.kind, "variation": cell.variation, "seed": cell.seed,
            "budget": cell.budget.to_dict(), "steps": done, "batch_size": cfg.trainer.batch_size,
            "images_seen": done * cfg.trainer.batch_size, "train_seconds": round(seconds, 2),
            **({"schedule": "time", "step_bound": cfg.trainer.steps} if timed else
               {"schedule": "steps", "planned_steps": steps}),
            "budget_seconds": budget_seconds,
            "budget_ratio": round(seconds / budget_seconds, 4) if budget_seconds else None,
            "budget_flag": budget_flag(seconds, budget_seconds), "resumed": resume and replan is None,
            "probe": probe_info, "replan": replan or _json(folder / "replan.json"),
            "pretrained_on": f"real images: {cfg.data.real}" if cfg.data.real else families_label(cfg.data.families),
            "status": "done",
        }
        write_text_atomic(folder / "cell.json", json.dumps(record, indent=1))
        return record

    def random_init(self, cell: Cell, folder: Path) -> dict[str, Any]:
        """The architecture's starting weights at the cell's seed, saved as a step-0 checkpoint (as the
        methods benchmark: torch.manual_seed(trainer.seed), then the method, whose backbone is built first)."""
        from synthsight.train.build import build_method
        from synthsight.checkpoint import save_checkpoint

        record = _json(folder / "cell.json")
        if record and record.get("status") == "done" and record.get("key") == cell.key:
            return record
        t0 = time.perf_counter()
        cfg = config_from_dict(cell.config)
        with torch.random.fork_rng():
            torch.manual_seed(cfg.trainer.seed)
            method = build_method(cfg)
        save_checkpoint(folder, 0, method, None, {"config": cfg.to_dict()})
        write_text_atomic(folder / "config.json", json.dumps(cfg.to_dict(), indent=1))
        self.timings.random_init += time.perf_counter() - t0
        record = {"key": cell.key, "kind": "random", "variation": cell.variation, "seed": cell.seed, "steps": 0,
                  "images_seen": 0, "train_seconds": 0.0, "budget": None, "status": "done",
                  "pretrained_on": "none (random init)", "model": cfg.model.backbone}
        write_text_atomic(folder / "cell.json", json.dumps(record, indent=1))
        return record

    def evaluate(self, cell: Cell, folder: Path, set_name: str) -> dict[str, Any]:
        """metrics.json of the cell's checkpoint on one set (reused when its settings.json matches)."""
        from synthsight.eval.run import evaluate
        from synthsight.train.distributed import resolve_device

        cfg = eval_config(cell, self.sets[set_name], self.spec.protocols)
        where = folder / f"eval-{slug(set_name)}"
        settings = json.loads(json.dumps(dataclasses.asdict(cfg)))
        if _json(where / "settings.json") == settings and (where / "metrics.json").is_file():
            return _json(where / "metrics.json")
        threads = torch.get_num_threads()
        torch.set_num_threads(self.spec.eval_threads or os.cpu_count() or 1)  # no generation worker runs now
        t0 = time.perf_counter()
        try:
            report = evaluate(folder, cfg, device=resolve_device(cell.config["trainer"]["device"]),
                              progress=False, log=lambda _: None)
        finally:
            torch.set_num_threads(threads)
        seconds = time.perf_counter() - t0
        self.timings.eval += seconds
        record = {**report.to_dict(), "seconds": round(seconds, 2), "set": set_name}
        where.mkdir(parents=True, exist_ok=True)
        write_text_atomic(where / "metrics.json", json.dumps(record, indent=1))
        write_text_atomic(where / "settings.json", json.dumps(settings, indent=1))
        return record

    def run_cell(self, cell: Cell) -> str:
        folder = cell_dir(self.out, cell)
        failed = folder / "failed.json"
        if failed.is_file():
            if not self.retry_failed:
                return "failed"
            failed.unlink()
        done_before = (_json(folder / "cell.json") or {}).get("status") == "done"
        try:
            record = self.random_init(cell, folder) if cell.kind == "random" else self.train(cell, folder)
            tops = {}
            for s in cell.sets:
                metrics = self.evaluate(cell, folder, s)
                tops[s] = {p: r["top1"] for p, r in metrics["encoders"][-1]["results"].items()}
        except Exception as err:  # noqa: BLE001  (recorded beside the results; the study goes on)
            folder.mkdir(parents=True, exist_ok=True)
            write_text_atomic(failed, json.dumps({"key": cell.key, "error": f"{type(err).__name__}: {err}",
                                                  "traceback": traceback.format_exc()[-4000:]}, indent=1))
            self.log(f"{self.describe(cell)}: FAILED: {type(err).__name__}: {err}")
            return "failed"
        budget = ""
        if cell.kind != "random":
            flag = record.get("budget_flag")
            budget = (f"{record['steps']} steps, {record['images_seen']} images in {record['train_seconds']:.0f} s"
                      + (f" (budget {record['budget_seconds']:.0f} s: {flag})" if flag else "") + "; ")
        numbers = "; ".join(f"{s} " + ", ".join(f"{p} {100 * v:.2f}%" for p, v in t.items()) for s, t in tops.items())
        self.log(f"{self.describe(cell)}: {'reused' if done_before else 'done'}: {budget}{numbers}")
        return "reused" if done_before else "done"

    def describe(self, cell: Cell) -> str:
        what = {"synthetic": "synthetic", "real": f"real reference on {cell.real_set}", "random": "random init"}
        budget = f", {cell.budget.label}" if cell.budget else ""
        return f"{cell.variation} [{what[cell.kind]}, seed {cell.seed}{budget}]"

    def run(self) -> StudyOutcome:
        from synthsight.study.results import write_results

        self.write_plan()
        outcome = StudyOutcome(self.out, self.plan, timings=self.timings)
        cells = self.cells
        counts = ", ".join(f"{sum(c.kind == k for c in cells)} {k}" for k in ("synthetic", "real", "random"))
        chosen = "" if len(cells) == len(self.plan.cells) else f" of {len(self.plan.cells)}"
        self.log(f"study {self.spec.name}: {len(cells)}{chosen} cells ({counts}) into {self.out}")
        for note in self.plan.notes:
            self.log(f"note: {note}")
        bar = tqdm(cells, desc=f"study {self.spec.name}", unit="cell", disable=not self.progress, dynamic_ncols=True,
                   position=0)
        for cell in bar:
            bar.set_postfix_str(self.describe(cell)[:60])
            outcome.status[cell.key] = self.run_cell(cell)
            t0 = time.perf_counter()
            write_results(self.spec, self.plan, self.out, report=False)
            self.timings.results += time.perf_counter() - t0
        bar.close()
        t0 = time.perf_counter()
        self.timings.wall = time.perf_counter() - self.t0  # provisional, for the report's timing table
        write_results(self.spec, self.plan, self.out, report=True, timings=self.timings)
        self.timings.results += time.perf_counter() - t0
        self.timings.wall = time.perf_counter() - self.t0
        write_text_atomic(self.out / "timings.json", json.dumps(self.timings.to_dict(), indent=1))
        failed = sum(v == "failed" for v in outcome.status.values())
        self.log(f"study {self.spec.name} finished in {self.timings.wall / 60:.1f} min ({failed} failed cells); "
                 f"harness overhead {self.timings.harness:.1f} s; see {self.out / 'report.html'}")
        return outcome


def run_study(spec: StudySpec, out: Path, progress: bool = True, retry_failed: bool = False,
              log: Callable[[str], None] | None = None, only: Selection | None = None) -> StudyOutcome:
    """Run (or continue) the study into `out`; see the module doc. `only` = (variation names, seeds), either None
    for all: run just the cells those results read (spec.select); the tables still show every finished cell.
    One study process per folder: a second one is refused before it touches anything (it would otherwise meet the
    first one's run locks cell by cell and record those cells as failed)."""
    with run_lock(Path(out)):
        return StudyRunner(spec, out, progress, retry_failed, log, only).run()


def _finished(checkpoint: Path, cfg: Any) -> bool:
    """Whether a run's checkpoint is its last: at trainer.steps, or with trainer.minutes past that budget."""
    t = cfg.trainer
    if int(checkpoint.name.split("-")[1]) >= t.steps:
        return True
    return bool(t.minutes) and float(read_meta(checkpoint).get("train_seconds", 0.0)) >= t.minutes * 60
