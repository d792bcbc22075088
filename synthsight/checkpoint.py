"""Checkpoints that survive crashes: safetensors + JSON (no pickle), written atomically, checked by SHA-256.

Layout of a run folder:
    checkpoints/step-000300/{model.safetensors, optimizer.safetensors, meta.json}
    checkpoints/latest            name of the newest complete checkpoint

A checkpoint directory is assembled under a temporary name, every file fsync'ed, then renamed into place and the
parent directory fsync'ed, so a kill or power loss at any moment leaves either the old set or the new set, never a
half-written one. A write that fails (a full disk) removes its temporary folder and leaves the previous checkpoint
and `latest` untouched. A state holding NaN or Inf (in a parameter, a buffer such as BatchNorm's running variance, or
the optimiser state) is never saved, so every checkpoint on disk is one training can go on from. Loading never
unpickles: tensors come from safetensors, everything else from JSON; a checkpoint whose meta.json lacks the SHA-256
of one of its files is refused, and so are weights that are not finite.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

FILES = ("model.safetensors", "optimizer.safetensors")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated or corrupted."""


class NonFiniteStateError(CheckpointError):
    """A state (weights, buffers or optimiser state) holding NaN or Inf: never saved, and refused when loaded."""


def nonfinite_entries(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or an Inf (one device synchronisation in all)."""
    names = [k for k, v in tensors.items() if isinstance(v, torch.Tensor) and v.is_floating_point() and v.numel()]
    if not names:
        return []
    flags = [torch.isfinite(tensors[k]).all() for k in names]
    same_device = len({f.device for f in flags}) == 1
    finite = torch.stack(flags if same_device else [f.cpu() for f in flags]).tolist()
    return [k for k, ok in zip(names, finite) if not ok]


def name_some(names: list[str], n: int = 5) -> str:
    """'a, b, c and 4 more'."""
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _file_mode() -> int:
    """The mode a plain open() gives a new file under the current umask (0o644 with the usual 022)."""
    try:  # Linux: read it without changing it (os.umask sets it, racing with other threads)
        status = Path("/proc/self/status").read_text()
        umask = int(re.search(r"^Umask:\s*([0-7]+)", status, re.M).group(1), 8)
    except (OSError, AttributeError):
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors' save_file, with its I/O failures raised as OSError (errno kept: a full disk is ENOSPC) and the
    file given the permissions of any other file written here (safetensors renames a 0600 temporary file)."""
    try:
        save_file(tensors, str(path), metadata=metadata)
    except SafetensorError as err:
        found = re.search(r"(.*?)\s*\(os error (\d+)\)", str(err))
        if found is None:
            raise
        code = int(found.group(2))
        raise OSError(code, os.strerror(code), str(path)) from err
    os.chmod(path, _file_mode())


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
    opt_tensors, opt_rest = _split_optimizer_state(optimizer.state_dict()) if optimizer else ({}, None)
    bad = nonfinite_entries(weights) + [f"optimizer state {k}" for k in nonfinite_entries(opt_tensors)]
    if bad:
        raise NonFiniteStateError(f"refusing to save checkpoint step-{step:06d}: NaN or Inf in {name_some(bad)}")
    save_tensors(weights, tmp / FILES[0])
    save_tensors(opt_tensors, tmp / FILES[1])
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
    """Check every file against the SHA-256 in meta.json; returns meta or raises CheckpointError.

    A meta.json without the SHA-256 of each of the checkpoint's files is refused: nothing could be checked."""
    meta = read_meta(ckpt)
    digests = meta.get("sha256") if isinstance(meta, dict) else None
    missing = [f for f in FILES if not isinstance(digests, dict) or not isinstance(digests.get(f), str)]
    if missing:
        raise CheckpointError(
            f"{Path(ckpt) / 'meta.json'} records no SHA-256 for {', '.join(missing)}, so its integrity cannot be "
            "checked; the checkpoint is refused. Use another checkpoint of the run (checkpoints/step-N)"
        )
    for name, digest in digests.items():
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
        model.load_state_dict(load_weights(ckpt))
    if optimizer is not None and meta.get("optimizer") is not None:
        tensors = load_file(str(Path(ckpt) / FILES[1]))
        optimizer.load_state_dict(_join_optimizer_state(tensors, meta["optimizer"]))
        _state_in_parameter_layout(optimizer)
    return meta


def _state_in_parameter_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give each per-parameter state tensor (Adam's moments, SGD's momentum) its parameter's memory layout again.
    Checkpoints store them contiguous (NCHW) while channels_last convolution weights are not; fused optimisers walk
    parameter, gradient and state memory in step, so a state of another layout would be read in the wrong order."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            for name, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.shape == param.shape and value.stride() != param.stride():
                    optimizer.state[param][name] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def load_weights(ckpt: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's model.safetensors (call verify_checkpoint first); raises NonFiniteStateError when a weight
    or buffer holds NaN or Inf, which training never saves (a checkpoint written by an older version might)."""
    weights = load_file(str(Path(ckpt) / FILES[0]))
    bad = nonfinite_entries(weights)
    if bad:
        raise NonFiniteStateError(
            f"{ckpt} holds NaN or Inf in {name_some(bad)}: its features would be meaningless. Use an earlier "
            "checkpoint of the run (checkpoints/step-N)"
        )
    return weights


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
