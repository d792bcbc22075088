"""The steps a run folder goes through, shared by the CLI commands: pretrain, evaluate, report."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import torch

from synthsight.augment.views import make_view
from synthsight.config import Config, EvalConfig
from synthsight.eval.run import EvalReport, evaluate, results_table
from synthsight.generators.io import save_grid
from synthsight.provenance import write_provenance
from synthsight.train.build import build_stream
from synthsight.train.distributed import env_world_size, is_main_process
from synthsight.train.loop import TrainResult, pretrain


def default_run_dir(kind: str) -> Path:
    return Path("runs") / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"


def write_samples(cfg: Config, run_dir: Path, n: int = 32) -> None:
    """The stream's first images and one augmented view of each, as PNG grids."""
    stream = build_stream(cfg)
    images = stream.render(range(n))
    save_grid(images, run_dir / "samples.png", nrow=8)
    g = torch.Generator().manual_seed(cfg.trainer.seed)
    save_grid(make_view(images, g, cfg.views), run_dir / "views.png", nrow=8)


def pretrain_run(cfg: Config, run_dir: Path, resume: bool = False, progress: bool = True) -> TrainResult:
    """Pretrain, then write sample grids, train_summary.json and provenance.json (under torchrun: rank 0 only)."""
    result = pretrain(cfg, run_dir, resume=resume, progress=progress)
    if not is_main_process():
        return result
    write_samples(cfg, run_dir)
    summary = {
        "steps": result.steps, "final_loss": round(result.final_loss, 4), "seconds": round(result.seconds, 1),
        "images_per_second": round(result.images_per_second, 1), "checkpoint": str(result.checkpoint),
        "synthetic_images_seen": result.steps * cfg.trainer.batch_size, "device": cfg.trainer.device,
        "threads": torch.get_num_threads(), "processes": env_world_size(), "skipped_steps": result.skipped_steps,
    }
    (run_dir / "train_summary.json").write_text(json.dumps(summary, indent=1))
    write_provenance(cfg, run_dir, result.checkpoint, world_size=env_world_size())  # what `synthsight verify` checks
    return result


def eval_run(checkpoint: Path, cfg: EvalConfig, out_dir: Path, device: str = "cpu", progress: bool = True) -> EvalReport:
    """Evaluate and write metrics.json, metrics.csv and table.md into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    report = evaluate(checkpoint, cfg, device=device, progress=progress)
    data = report.to_dict()
    data["seconds"] = round(time.perf_counter() - t0, 1)
    (out_dir / "metrics.json").write_text(json.dumps(data, indent=1))
    with open(out_dir / "metrics.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["encoder", "protocol", "top1", "description"])
        for enc in report.encoders:
            for name, r in enc.results.items():
                writer.writerow([enc.name, name, f"{r.top1:.4f}", r.describe()])
    (out_dir / "table.md").write_text(results_table(report.encoders, cfg.protocols) + "\n")
    return report
