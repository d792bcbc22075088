"""`synthsight export`: one folder holding the formats asked for, a model card and a provenance record.

    OUT/model.safetensors   backbone weights (timm's key names for timm architectures)
    OUT/config.json         timm config, only when timm can rebuild the backbone (see timm_weights.py)
    OUT/head.safetensors    with --with-head: the method's head (SimCLR projector, distillation head)
    OUT/model.onnx          ONNX graph (images -> features[, head]), checked with onnxruntime
    OUT/export.json         synthsight's description: architecture, inputs, files, the ONNX check
    OUT/README.md           the model card
    OUT/provenance.json     the run's provenance, with the SHA-256 of these files and of the source checkpoint

Loading never unpickles: the checkpoint is read from safetensors and JSON only.

The folder is assembled under a temporary name and swapped in only once every file is written, so a failed export
leaves an earlier one untouched. An earlier export is replaced; a folder holding anything else (files added to an
export included) only with `overwrite`.

Example:
    >>> export(Path("runs/demo"), ["safetensors", "onnx"], Path("exports/demo"), with_head=False)
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from synthsight import __version__
from synthsight.checkpoint import FILES, read_meta, resolve_checkpoint, sha256_file
from synthsight.config import config_from_dict
from synthsight.export.model_card import model_card
from synthsight.export.onnx_model import ONNX_FILE, ExportError, export_onnx
from synthsight.export.timm_weights import EXPORT_INFO, WEIGHTS, write_weights
from synthsight.models.preprocess import MEAN, STD
from synthsight.outputs import check_replaceable, is_empty, staged_folder
from synthsight.provenance import FILENAME, build_provenance, git_state, weights_record
from synthsight.registry import unknown_name_message
from synthsight.train.build import load_teacher

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


def _check_out(out_dir: Path, ckpt: Path, overwrite: bool) -> None:
    """Refuse (before any work) a file, or a non-empty folder that is not exactly an earlier export unless
    `overwrite`; never a folder that holds the checkpoint or a run."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is an existing file, not a folder; choose a folder path")
    if is_empty(out_dir):
        return
    check_replaceable(out_dir, [ckpt])
    if overwrite:
        return
    try:
        listed = set(json.loads((out_dir / EXPORT_INFO).read_text()).get("files", []))
    except (OSError, ValueError, AttributeError):
        listed = None
    if listed is None:
        raise ValueError(f"{out_dir} is not empty and holds no earlier export ({EXPORT_INFO}); refusing to replace "
                         "it: choose a new or empty --out, or pass --overwrite to replace its content")
    others = sorted(p.name for p in out_dir.iterdir() if p.name not in listed)
    if others:
        raise ValueError(f"{out_dir} holds an earlier export and other files ({', '.join(others[:5])}); refusing to "
                         "delete them: move them, choose another --out, or pass --overwrite to replace it all")


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
           progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Export a checkpoint (or a run folder's newest good one); returns the export.json description.

    out_dir appears only once complete; an earlier export there is replaced, anything else only with `overwrite`."""
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
    _check_out(out_dir, ckpt, overwrite)
    bar = tqdm(total=len(formats) + 3, desc="export", unit="step", disable=not progress)
    with bar, staged_folder(out_dir) as tmp:  # the bar is closed on failure too, before the error is printed
        return _export(ckpt, meta, cfg, run_dir, formats, tmp, with_head, bar)


def _export(ckpt: Path, meta: dict[str, Any], cfg, run_dir: Path | None, formats: list[str], out_dir: Path,
            with_head: bool, bar: tqdm) -> dict[str, Any]:

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
