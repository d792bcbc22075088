"""scripts/gpu_check.sh --cpu --quick: every part of the prepared GPU check runs on a CPU, so it cannot rot."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from synthsight.generators import GENERATORS

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_every_part_on_cpu_and_prints_its_tables(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.arange(160) % 2
    images = rng.integers(0, 60, size=(160, 12, 12, 3), dtype=np.uint8)
    images[labels == 1, :, :6] += 150  # class 1: a bright left half, so the k-NN has something to find
    np.savez(tmp_path / "knn.npz", images=images, labels=labels)
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    proc = subprocess.run([str(ROOT / "scripts" / "gpu_check.sh"), "--cpu", "--quick", "--out", str(tmp_path / "out"),
                           "--online-data", str(tmp_path / "knn.npz")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    titles = [line for line in out.splitlines() if line.startswith("### ")]
    for part in ("Render parity", "Render speed", "training throughput", "torchrun --nproc_per_node=1",
                 "simclr_gpu for about"):
        assert sum(part in t for t in titles) == 1, part
    variants = [(f, v) for f in GENERATORS.names() for v in GENERATORS.get(f).variants]
    parity = [line for line in out.splitlines() if line.startswith("| ") and line.endswith(" ok |")]
    assert len(parity) == len(variants)  # every family variant rendered the same twice (determinism on CPU)
    assert "| 1 process(es), gloo, rank 0 on cpu |" in out  # torchrun joined a process group (DDP path)
    run = out.split("### simclr_gpu")[1].split("total:")[0]
    row = [line for line in run.splitlines() if line.startswith("| ") and not line.startswith("| steps")][-1]
    cell = row.split("|")[-2].strip()  # the k-NN top-1 of the timed run
    assert cell.endswith("%") and 0 <= float(cell[:-1]) <= 100, run
    assert (tmp_path / "out" / "gpu_check.md").read_text().count("### ") == 5


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_gpu_check_without_cuda_asks_for_cpu(capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))  # the script imports its neighbours, as when run from there
    try:
        spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
        gpu_check = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = gpu_check  # dataclasses look their module up while the script is being executed
        spec.loader.exec_module(gpu_check)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.main(["--quick"])
    assert exit_info.value.code == 2 and "pass --cpu" in capsys.readouterr().err
