"""Which float format autocast runs in: bf16 only where the device computes it natively, else float32.

bf16 autocast is a speed switch (weights and optimiser state stay float32). On CPUs whose oneDNN has bf16 kernels
(AVX-512 or AMX: Intel Xeon since Cooper Lake, AMD Zen 4 and later) it trains the CPU presets 1.5-3.8x faster; on
an AVX2-only CPU (AMD Zen 3 and older, most Intel desktops) torch emulates it, and the same step ran 11x *slower* than
float32 (benchmarks/train_throughput.py, session 30: 48 vs 522 img/s on a 2-core AMD EPYC Zen 3). So `bf16`
(trainer.amp, and the evaluations' `amp=True`) means "bf16 where it is fast": float32 on such a CPU, which
`describe` says in the run header. fp16 is taken as asked (it has a loss scaler and is a CUDA choice).

Example:
    >>> with autocast("bf16", torch.device("cpu")):
    ...     features = model(images)
"""

from __future__ import annotations

import contextlib
import functools

import torch

from synthsight.config import AMP_CHOICES

_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16"}


@functools.lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """True where oneDNN has bf16 kernels for this CPU (AVX-512 or AMX); False on AVX2-only CPUs."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN: no fast bf16 either
        return False


def native_bf16(device: torch.device) -> bool:
    """Does `device` run bf16 autocast natively (faster than float32)?"""
    if device.type == "cpu":
        return cpu_has_native_bf16()
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return True  # other accelerators: as asked


def autocast_dtype(amp: str | bool, device: torch.device) -> torch.dtype | None:
    """The dtype autocast runs in for trainer.amp `amp` (True = "bf16", False = "none") on `device`; None for
    float32 (no autocast)."""
    if isinstance(amp, bool):
        amp = "bf16" if amp else "none"
    if amp not in AMP_CHOICES:
        raise ValueError(f"unknown trainer.amp {amp!r}; valid: {', '.join(AMP_CHOICES)}")
    if amp == "fp16":
        return torch.float16
    if amp == "bf16" and native_bf16(device):
        return torch.bfloat16
    return None


def autocast(amp: str | bool, device: torch.device) -> contextlib.AbstractContextManager:
    """torch.autocast in autocast_dtype(amp, device), or nothing for float32."""
    dtype = autocast_dtype(amp, device)
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def describe(amp: str | bool, device: torch.device) -> str:
    """The precision a run uses, for its header: "bf16 autocast", "float32", or float32 with the reason."""
    dtype = autocast_dtype(amp, device)
    if dtype is not None:
        return f"{_NAMES[dtype]} autocast"
    if amp in ("bf16", True):
        return f"float32 (trainer.amp=bf16, but this {device.type.upper()} has no native bf16: it would run slower)"
    return "float32"
