"""Checkpoints that survive crashes: safetensors + JSON (no pickle), written atomically, checked by SHA-256.

Layout of a run folder:
    checkpoints/step-000300/{model.safetensors, optimizer.safetensors, meta.json}
    checkpoints/latest            name of the newest complete checkpoint

A checkpoint directory is assembled under a temporary name, every file fsync'ed, then renamed into place and the
parent directory fsync'ed, so a kill or power loss at any moment leaves either the old set or the new set, never a
half-written one. A write that fails (a full disk) removes its temporary folder and leaves the previous checkpoint
and `latest` untouched. Loading never unpickles: tensors come from safetensors, everything else from JSON.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

FILES = ("model.safetensors", "optimizer.safetensors")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated or corrupted."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (POSIX); a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    """Write via a temporary file, fsync, rename and fsync the directory."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def remove_stale_temporaries(run_dir: Path) -> None:
    """Delete half-written checkpoint folders left by a killed run (never a complete checkpoint)."""
    root = Path(run_dir) / "checkpoints"
    if root.is_dir():
        for tmp in list(root.glob(".tmp-*")) + list(root.glob(".old-*")) + list(root.glob(".latest.tmp-*")):
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)


def _split_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, rest = {}, {"param_groups": state["param_groups"], "state": {}}
    for pid, entries in state["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                rest["state"].setdefault(str(pid), {})[name] = value
    return tensors, rest


def _join_optimizer_state(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in rest["state"].items()}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def save_checkpoint(
    run_dir: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, meta: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write checkpoints/step-{step}/ atomically, point `latest` at it, and keep only the newest `keep`.

    Raises CheckpointError (naming the previous checkpoint, which stays intact) when the write fails, e.g. ENOSPC.
    """
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:06d}"
    tmp = root / f".tmp-{name}-{os.getpid()}"
    try:
        _write_checkpoint_dir(tmp, step, model, optimizer, meta)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(_write_failed_message(root, name, err)) from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    final = root / name
    old = root / f".old-{name}-{os.getpid()}"
    if final.exists():  # rewriting a step (after a fall-back resume): move the old copy aside, never delete first
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_dir(root)
    shutil.rmtree(old, ignore_errors=True)
    try:
        write_text_atomic(root / "latest", name)
    except OSError as err:
        raise CheckpointError(
            f"{final} was written but {root / 'latest'} could not be updated ({err}); the checkpoint itself is "
            "complete and --resume will find it"
        ) from err
    for stale in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(stale, ignore_errors=True)
    return final


def _write_checkpoint_dir(
    tmp: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, meta: dict[str, Any]
) -> None:
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(tmp / FILES[0]))
    opt_tensors, opt_rest = _split_optimizer_state(optimizer.state_dict()) if optimizer else ({}, None)
    save_file(opt_tensors, str(tmp / FILES[1]))
    record = dict(meta, step=step, saved_at=time.strftime("%Y-%m-%dT%H:%M:%S"), optimizer=opt_rest)
    record["sha256"] = {f: sha256_file(tmp / f) for f in FILES}
    (tmp / "meta.json").write_text(json.dumps(record, indent=1))
    for f in (*FILES, "meta.json"):
        _fsync(tmp / f)
    _fsync_dir(tmp)


def _write_failed_message(root: Path, name: str, err: OSError) -> str:
    previous = (root / "latest").read_text().strip() if (root / "latest").is_file() else None
    kept = f"the previous checkpoint {root / previous} is intact and `latest` still points to it" if previous \
        else "no earlier checkpoint exists"
    reason = "the disk is full" if err.errno in (errno.ENOSPC, errno.EDQUOT) else f"{type(err).__name__}"
    return (
        f"could not write checkpoint {name} in {root}: {reason} ({err.strerror or err}); {kept}. "
        "Free some space (or lower trainer.keep_checkpoints), then continue with --resume"
    )


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete-looking checkpoint directories, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step-*") if p.is_dir() and p.name[5:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[5:]))  # numerically: step-1000000 comes after step-999999


def read_meta(ckpt: Path) -> dict[str, Any]:
    path = Path(ckpt) / "meta.json"
    if not path.is_file():
        raise CheckpointError(f"{ckpt} is not a checkpoint: {path.name} is missing")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is corrupt ({err}); use an earlier checkpoint") from err


def verify_checkpoint(ckpt: Path) -> dict[str, Any]:
    """Check every file against the SHA-256 in meta.json; returns meta or raises CheckpointError."""
    meta = read_meta(ckpt)
    for name, digest in meta.get("sha256", {}).items():
        path = Path(ckpt) / name
        if not path.is_file():
            raise CheckpointError(f"{path} is missing; the checkpoint is incomplete")
        if sha256_file(path) != digest:
            raise CheckpointError(f"{path} does not match its SHA-256 in meta.json: the file is corrupt or truncated")
    return meta


def latest_good_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint that verifies; corrupt newer ones are skipped (with a warning)."""
    for ckpt in reversed(list_checkpoints(run_dir)):
        try:
            verify_checkpoint(ckpt)
            return ckpt
        except CheckpointError as err:
            print(f"warning: skipping {err}")
    return None


def load_checkpoint(
    ckpt: Path, model: torch.nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None
) -> dict[str, Any]:
    """Verify, then load weights (and optimiser state) in place; returns meta.json's content."""
    meta = verify_checkpoint(ckpt)
    if model is not None:
        model.load_state_dict(load_file(str(Path(ckpt) / FILES[0])))
    if optimizer is not None and meta.get("optimizer") is not None:
        tensors = load_file(str(Path(ckpt) / FILES[1]))
        optimizer.load_state_dict(_join_optimizer_state(tensors, meta["optimizer"]))
    return meta


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint directory, or a run folder (its newest good checkpoint)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint path {path} does not exist; pass a run folder or checkpoints/step-N")
    if (path / "meta.json").is_file():
        return path
    ckpt = latest_good_checkpoint(path)
    if ckpt is None:
        raise CheckpointError(f"{path} holds no valid checkpoint (looked in {path / 'checkpoints'})")
    return ckpt
