"""Optional TensorBoard logging (trainer.log=tensorboard): the rows of train_log.csv as scalars in RUN/tensorboard.

Example:
    >>> writer = open_tensorboard(run_dir)          # needs `pip install 'synthsight[tensorboard]'`
    >>> log_row(writer, {"step": 10, "loss": "4.2", "lr": "0.002"})
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthsight.config import ConfigError


def open_tensorboard(run_dir: Path) -> Any:
    """A SummaryWriter on run_dir/tensorboard (appends on resume); a clear error when tensorboard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ConfigError("trainer.log=tensorboard needs the tensorboard package: pip install 'synthsight[tensorboard]'"
                          " (or use trainer.log=csv; train_log.csv is always written)") from err
    return SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))


def log_row(writer: Any, row: dict[str, Any]) -> None:
    """Every numeric column of a log row (loss, lr, images/s, collapse figures, online k-NN) at its step."""
    step = int(row["step"])
    for key, value in row.items():
        if key == "step":
            continue
        try:
            writer.add_scalar(f"train/{key}", float(value), step)
        except (TypeError, ValueError):
            continue  # a non-numeric column (none today) is not a scalar
