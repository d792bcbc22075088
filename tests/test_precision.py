"""trainer.amp=bf16 means bf16 where the device computes it natively, float32 where torch would emulate it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from synthsight import precision
from synthsight.eval.features import extract_features

CPU = torch.device("cpu")


@pytest.fixture(params=[True, False], ids=["native-bf16-cpu", "avx2-cpu"])
def native(request, monkeypatch) -> bool:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: request.param)
    return request.param


def test_bf16_only_where_the_cpu_has_it(native: bool) -> None:
    layer = nn.Linear(4, 3)
    with precision.autocast("bf16", CPU):
        y = layer(torch.randn(2, 4))
    assert y.dtype == (torch.bfloat16 if native else torch.float32)
    assert precision.autocast_dtype(True, CPU) == precision.autocast_dtype("bf16", CPU)
    assert precision.autocast_dtype("none", CPU) is None and precision.autocast_dtype(False, CPU) is None
    assert precision.autocast_dtype("fp16", CPU) == torch.float16  # taken as asked
    header = precision.describe("bf16", CPU)
    assert header == "bf16 autocast" if native else header.startswith("float32") and "no native bf16" in header


def test_unknown_amp_names_the_choices() -> None:
    with pytest.raises(ValueError, match="fp61.*bf16, fp16, none"):
        precision.autocast_dtype("fp61", CPU)


def test_features_on_a_cpu_without_bf16_are_float32_features(native: bool) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    full, amp = extract_features(net, images, amp=False), extract_features(net, images, amp=True)
    assert torch.equal(full, amp) != native  # bf16 rounds the features; float32 reproduces them exactly


def test_the_run_header_says_which_precision_trains(native: bool, tmp_path) -> None:
    from synthsight.config import Config
    from synthsight.train.loop import run_header

    line = run_header(Config(), tmp_path, CPU, 1, 0, None)
    assert ("bf16 autocast" in line) == native and ("float32" in line) != native
