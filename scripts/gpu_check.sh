#!/usr/bin/env bash
# The prepared GPU check (issue 14), on one GPU in under 8 minutes: render parity CUDA vs CPU and render speed of
# every family, bf16 training throughput (smallconv/resnet18/resnet50/vit_tiny x SimCLR/DINO), a 1-process torchrun
# NCCL run, and a 3-minute simclr_gpu run with its online k-NN. Prints markdown tables for docs/BENCHMARKS.md (also
# written to OUT/gpu_check.md). See benchmarks/gpu_check.py for what each part measures.
#
# Usage: scripts/gpu_check.sh [--cpu] [--quick] [--out DIR] [--online-data SPEC]
#   scripts/gpu_check.sh --cpu --quick    every part small, on the CPU, in about a minute (run by the test suite)
# PYTHON picks the interpreter (default: .venv/bin/python if there, else python3). The k-NN reads Fashion-MNIST
# from SYNTHSIGHT_FASHION_MNIST_DIR (or Debian's /usr/share/datasets/fashion-mnist); on a machine without it the
# k-NN cell says so and everything else still runs.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"; else python=python3; fi
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$python" "$root/benchmarks/gpu_check.py" "$@"
