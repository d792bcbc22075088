"""The steps a run folder goes through, shared by the CLI commands: pretrain, evaluate, report."""

from __future__ import annotations

import contextlib
import csv
import json
import time
from pathlib import Path

import torch

from synthsight.augment.views import make_view
from synthsight.checkpoint import read_meta
from synthsight.config import Config, EvalConfig, config_from_dict
from synthsight.distributed import env_world_size, is_main_process
from synthsight.eval.run import EvalReport, evaluate, metric_rows, results_table
from synthsight.generators.io import save_grid
from synthsight.outputs import check_replaceable, is_empty, staged_folder
from synthsight.provenance import FILENAME, write_provenance
from synthsight.run_lock import run_lock
from synthsight.train.build import build_stream
from synthsight.train.echo import stream_steps
from synthsight.train.loop import RunFinishedError, TrainResult, pretrain


def default_run_dir(kind: str) -> Path:
    return Path("runs") / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"


def write_samples(cfg: Config, run_dir: Path, n: int = 32) -> None:
    """The stream's first images and one augmented view of each, as PNG grids."""
    stream = build_stream(cfg)
    images = stream.render(range(n))
    save_grid(images, run_dir / "samples.png", nrow=8)
    g = torch.Generator().manual_seed(cfg.trainer.seed)
    save_grid(make_view(images, g, cfg.views), run_dir / "views.png", nrow=8)


def resolve_match(cfg: Config, run_dir: Path) -> tuple[Config, dict | None]:
    """With data.match set: the config with the matched families, weights and options, and the record (measured
    once; a resumed run reuses run_dir/match.json when it was made for the same target and candidates)."""
    from synthsight.analysis.match import apply_match, matched_config, same_match

    if not cfg.data.match:
        return cfg, None
    path = Path(run_dir) / "match.json"
    previous = json.loads(path.read_text()) if path.is_file() else None
    if same_match(cfg, previous):
        return matched_config(cfg, previous), previous
    matched, record = apply_match(cfg)
    return matched, record.to_dict()  # written to run_dir/match.json and provenance once the run has trained


def pretrain_run(cfg: Config, run_dir: Path, resume: bool = False, progress: bool = True,
                 stop_at: int | None = None) -> TrainResult:
    """Pretrain, then write train_summary.json, provenance.json and the sample grids, in that order: what `verify`
    needs first, optional pictures last (under torchrun: rank 0 only). The run folder stays locked throughout.
    With data.match, the stream is matched to the target first (resolve_match) and provenance records how.
    `stop_at` pauses the run after that step (a checkpoint, no records yet: --resume finishes it).

    --resume of a finished run whose provenance.json is missing (the disk filled up after the last checkpoint)
    writes it and returns a result with `finished_before` set; with provenance.json present it is refused.
    """
    main = is_main_process()
    with run_lock(run_dir) if main else contextlib.nullcontext():
        cfg, match = resolve_match(cfg, run_dir)  # data.match: the stream matched to the target images first
        try:
            result = pretrain(cfg, run_dir, resume=resume, progress=progress, stop_at=stop_at)
        except RunFinishedError as err:
            if not (main and resume and err.checkpoint is not None) or (Path(run_dir) / FILENAME).is_file():
                raise
            return _write_missing_provenance(run_dir, err.checkpoint)
        if not main or result.paused:  # paused (stop_at): records come with the last step
            return result
        _write_records(cfg, run_dir, result, match)
        write_samples(cfg, run_dir)
    return result


def _write_missing_provenance(run_dir: Path, checkpoint: Path) -> TrainResult:
    """provenance.json of a finished run, from the config its final checkpoint was trained with."""
    meta = read_meta(checkpoint)
    cfg = config_from_dict(meta["config"])
    write_provenance(cfg, run_dir, checkpoint, world_size=int(meta.get("world_size", 1)))
    return TrainResult(Path(run_dir), int(meta["step"]), float("nan"), 0.0, 0.0, checkpoint,
                       int(meta.get("skipped_steps", 0)), finished_before=True)


def _unique_images(cfg: Config, steps: int) -> int:
    """Different images the run trained on: data.echo reuses each batch, data.pool draws from a fixed set."""
    images = stream_steps(steps, cfg.data.echo) * cfg.trainer.batch_size
    return images if cfg.data.pool is None else min(images, cfg.data.pool)


def _write_records(cfg: Config, run_dir: Path, result: TrainResult, match: dict | None = None) -> None:
    summary = {
        "steps": result.steps, "final_loss": round(result.final_loss, 4), "seconds": round(result.seconds, 1),
        "images_per_second": round(result.images_per_second, 1), "checkpoint": str(result.checkpoint),
        f"{'real' if cfg.data.real else 'synthetic'}_images_seen": result.steps * cfg.trainer.batch_size,
        "unique_images": _unique_images(cfg, result.steps),
        "device": cfg.trainer.device,
        "threads": torch.get_num_threads(), "processes": env_world_size(), "skipped_steps": result.skipped_steps,
        "last_checks": result.last_checks,  # the collapse alarm's last figures and the online k-NN top-1, with steps
    }
    (run_dir / "train_summary.json").write_text(json.dumps(summary, indent=1))
    write_provenance(cfg, run_dir, result.checkpoint, world_size=env_world_size(), match=match)  # `verify`
    if match is not None:  # reused by a resumed run (resolve_match)
        (Path(run_dir) / "match.json").write_text(json.dumps(match, indent=1))


def check_eval_out(out_dir: Path, checkpoint: Path, cfg: EvalConfig, overwrite: bool) -> None:
    """Refuse (before any work) a file, or a non-empty folder unless `overwrite`; never one that holds the
    checkpoint, a compared checkpoint, the data, or a run."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is an existing file, not a folder; choose a folder path")
    if is_empty(out_dir):
        return
    specs = [cfg.data, cfg.test_data, *(c for c in cfg.compare if c not in ("random", "pixels"))]
    check_replaceable(out_dir, [Path(checkpoint), *(Path(s.partition(":")[2] or s).expanduser() for s in specs)])
    if not overwrite:
        what = "an earlier evaluation (metrics.json)" if (out_dir / "metrics.json").is_file() else "other files"
        raise ValueError(f"{out_dir} already holds {what}; pass --overwrite to replace it, or choose another --out")


def eval_run(checkpoint: Path, cfg: EvalConfig, out_dir: Path, device: str = "cpu", progress: bool = True,
             analysis: bool = True, overwrite: bool = False) -> EvalReport:
    """Evaluate and write metrics.json, metrics.csv (encoder x protocol x metric), per_class.csv and table.md;
    with `analysis`, also the feature analysis (t-SNE, unit selectivity, retrieval, attention maps, per class).

    out_dir is written under a temporary name and swapped in once complete, so it never mixes two evaluations and a
    failure leaves an earlier one as it was; a non-empty out_dir is replaced only with `overwrite`."""
    out_dir = Path(out_dir)
    check_eval_out(out_dir, checkpoint, cfg, overwrite)
    t0 = time.perf_counter()
    report = evaluate(checkpoint, cfg, device=device, progress=progress)
    with staged_folder(out_dir) as tmp:
        _write_evaluation(report, cfg, tmp, time.perf_counter() - t0, analysis, progress)
    return report


def _write_evaluation(report: EvalReport, cfg: EvalConfig, out_dir: Path, seconds: float, analysis: bool,
                      progress: bool) -> None:
    data = report.to_dict()
    data["seconds"] = round(seconds, 1)
    (out_dir / "metrics.json").write_text(json.dumps(data, indent=1))
    for name, rows in (("metrics.csv", metric_rows(report.encoders)), ("per_class.csv", report.per_class_rows())):
        with open(out_dir / name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["encoder", "protocol"])
            writer.writeheader()
            writer.writerows(rows)
    (out_dir / "table.md").write_text(results_table(report.encoders, cfg.protocols) + "\n")
    if analysis:
        from synthsight.analysis.run import run_analyses

        run_analyses(report, out_dir, progress=progress)


def finetune_run(checkpoint: Path, out_dir: Path, data: str = "fashion-mnist", test_data: str = "fashion-mnist",
                 settings=None, init: str = "pretrained", size: int | None = None, limit: int | None = None,
                 test_limit: int | None = None, device: str = "cpu", skip_bad: bool = False, progress: bool = True,
                 log=print, pool: str | None = None):
    """Fine-tune a checkpoint's backbone (or, init="random", the same architecture from its starting weights) on
    real data; write metrics.json (result, settings, per-epoch history), history.csv and per_class.csv. `pool`
    (token | avg) replaces the run's model.pool for a ViT."""
    from synthsight.eval.data import load_dataset
    from synthsight.eval.finetune import FinetuneSettings, finetune
    from synthsight.eval.run import load_backbone, random_backbone

    if init not in ("pretrained", "random"):
        raise ValueError(f"init must be 'pretrained' or 'random', got {init!r}")
    s = settings or FinetuneSettings()
    backbone, run_cfg, ckpt = load_backbone(checkpoint, pool)
    if init == "random":
        backbone = random_backbone(run_cfg)
    size = size or run_cfg.views.size
    train = load_dataset(data, "train", size=size, limit=limit, seed=s.seed, skip_bad=skip_bad)
    test = load_dataset(test_data, "test", size=size, limit=test_limit, seed=s.seed, skip_bad=skip_bad)
    log(f"finetune: {init} {run_cfg.model.backbone} from {ckpt}; {len(train)} train images from {train.source}, "
        f"{len(test)} test from {test.source}, {s.epochs} epochs on {device}")
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    run = finetune(backbone, train, test, s, device=device, progress=progress, log=log)
    record = {"checkpoint": str(ckpt), "init": init, "backbone": run_cfg.model.backbone, "pool": run_cfg.model.pool,
              "train_data": train.source,
              "test_data": test.source, "classes": list(test.classes), "size": size, "device": str(device),
              "seconds": round(time.perf_counter() - t0, 1), "result": run.result.to_dict(), "history": run.history}
    (out_dir / "metrics.json").write_text(json.dumps(record, indent=1))
    with open(out_dir / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(run.history[0]))
        writer.writeheader()
        writer.writerows(run.history)
    with open(out_dir / "per_class.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class_index", "class", "top1"])
        writer.writerows([c, test.classes[c] if c < len(test.classes) else c, acc]
                         for c, acc in enumerate(run.result.per_class or []))
    return run
