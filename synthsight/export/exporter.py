"""`synthsight export`: one folder holding the formats asked for, a model card and a provenance record.

    OUT/model.safetensors   backbone weights (timm's key names for timm architectures)
    OUT/config.json         timm config, only when timm can rebuild the backbone (see timm_weights.py)
    OUT/head.safetensors    with --with-head: the method's head (SimCLR projector, distillation head)
    OUT/model.onnx          ONNX graph (images -> features[, head]), checked with onnxruntime
    OUT/export.json         synthsight's description: architecture, inputs, files, the ONNX check
    OUT/README.md           the model card
    OUT/provenance.json     the run's provenance, with the SHA-256 of these files and of the source checkpoint

Loading never unpickles: the checkpoint is read from safetensors and JSON only.

Example:
    >>> export(Path("runs/demo"), ["safetensors", "onnx"], Path("exports/demo"), with_head=False)
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from synthsight import __version__
from synthsight.config import config_from_dict
from synthsight.export.distill import load_teacher
from synthsight.export.model_card import model_card
from synthsight.export.onnx_model import ONNX_FILE, ExportError, export_onnx
from synthsight.export.timm_weights import EXPORT_INFO, WEIGHTS, write_weights
from synthsight.models.preprocess import MEAN, STD
from synthsight.provenance import FILENAME, build_provenance, git_state, weights_record
from synthsight.registry import unknown_name_message
from synthsight.train.checkpoint import FILES, read_meta, resolve_checkpoint, sha256_file

FORMATS = ("safetensors", "onnx")
CARD = "README.md"


def parse_formats(text: str | list[str]) -> list[str]:
    formats = [f.strip() for f in (text.split(",") if isinstance(text, str) else text) if f.strip()]
    if not formats:
        raise ValueError(f"--format is empty; choose from {', '.join(FORMATS)}")
    for f in formats:
        if f not in FORMATS:
            raise ValueError(unknown_name_message("export format", f, list(FORMATS)))
    return formats


def _prepare_out(out_dir: Path) -> None:
    """Create out_dir; refuse a non-empty folder unless it holds an earlier export (which is replaced)."""
    if out_dir.exists() and any(out_dir.iterdir()):
        if not (out_dir / EXPORT_INFO).is_file():
            raise ValueError(f"{out_dir} is not empty and holds no {EXPORT_INFO}: refusing to write an export among "
                             "other files; choose a new or empty --out")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)


def _provenance(cfg, ckpt: Path, run_dir: Path | None, out_dir: Path, files: list[str], step: int) -> dict[str, Any]:
    """The run's provenance record when it describes this checkpoint, else a new one; turned into an export's."""
    source_sha = sha256_file(ckpt / FILES[0])
    run_record = None
    if run_dir is not None and (run_dir / FILENAME).is_file():
        candidate = json.loads((run_dir / FILENAME).read_text())
        if source_sha in candidate.get("weights", {}).values():
            run_record = candidate
    record = run_record or build_provenance(cfg, out_dir, [], steps_done=step)
    record["recorded"] = "during training" if run_record else "at export (the run folder has no matching record)"
    commit, dirty = git_state()
    weight_files = [out_dir / f for f in files if f.endswith((".safetensors", ".onnx"))]
    record.update(
        kind="export",
        exported={"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "synthsight": __version__, "git_commit": commit,
                  "git_dirty": dirty},
        weights=weights_record(out_dir, weight_files),
        source={"checkpoint": str(ckpt.resolve()), "weights": str((ckpt / FILES[0]).resolve()),
                "weights_sha256": source_sha},
    )
    return record


def export(checkpoint: Path, formats: list[str], out_dir: Path, with_head: bool = False,
           progress: bool = True) -> dict[str, Any]:
    """Export a checkpoint (or a run folder's newest good one); returns the export.json description."""
    formats = parse_formats(formats)
    ckpt = resolve_checkpoint(Path(checkpoint))
    meta = read_meta(ckpt)
    cfg = config_from_dict(meta["config"])
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else None
    if "onnx" in formats:
        from synthsight.export.onnx_model import INSTALL_HINT, onnx_available

        if not onnx_available():
            raise ExportError(INSTALL_HINT)
    out_dir = Path(out_dir)
    _prepare_out(out_dir)
    bar = tqdm(total=len(formats) + 3, desc="export", unit="step", disable=not progress)

    net = load_teacher(ckpt)  # verifies the checkpoint's SHA-256, builds the method without its teachers, frozen
    head = net.head if with_head else None
    if with_head and head is None:
        raise ValueError(f"--with-head: the {cfg.method.get('name')} checkpoint {ckpt} has no head to export")
    bar.update(1)
    info: dict[str, Any] = {
        "format": "synthsight-export/1", "checkpoint": str(ckpt), "step": meta.get("step"),
        "model": asdict(cfg.model), "method": cfg.method, "num_features": net.num_features,
        "parameters": sum(p.numel() for p in net.backbone.parameters()), "image_size": cfg.views.size,
        "normalisation": {"mean": list(MEAN), "std": list(STD), "input": "x in [0, 1], then (x - mean) / std"},
        "with_head": with_head, "head_out_dim": net.out_dim if with_head else None, "files": [],
    }
    if "safetensors" in formats:
        described = write_weights(net.backbone, cfg, out_dir, head=head)
        info["files"] += described["files"]
        info.update(timm_architecture=described["timm_architecture"], timm_reason=described["timm_reason"],
                    timm_model_args=described["timm_model_args"])
        bar.update(1)
    else:
        from synthsight.export.timm_weights import timm_compatibility, timm_model_args

        arch, reason = timm_compatibility(cfg, net.backbone)
        info.update(timm_architecture=arch, timm_reason=reason,
                    timm_model_args=timm_model_args(cfg) if arch is not None else {})
    if "onnx" in formats:
        info["onnx"] = export_onnx(net.backbone, out_dir / ONNX_FILE, cfg.views.size, head=head)
        info["files"].append(ONNX_FILE)
        bar.update(1)

    record = _provenance(cfg, ckpt, run_dir, out_dir, info["files"], int(meta.get("step", cfg.trainer.steps)))
    (out_dir / FILENAME).write_text(json.dumps(record, indent=1))
    bar.update(1)
    info["files"] += [EXPORT_INFO, CARD, FILENAME]
    (out_dir / EXPORT_INFO).write_text(json.dumps(info, indent=1))
    (out_dir / CARD).write_text(model_card(info, cfg, run_dir, record))
    bar.update(1)
    bar.close()
    return info


__all__ = ["export", "parse_formats", "FORMATS", "WEIGHTS", "CARD"]
