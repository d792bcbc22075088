"""Run `synthsight <args>` under torchrun and record which stream images this rank rendered.

Used by tests/test_distributed.py:  torchrun --standalone --nproc_per_node=2 tests/ddp_worker.py RECORD_DIR pretrain ...
Writes RECORD_DIR/rank<r>.json with the global image indices this rank trained on, in order.
"""

import json
import os
import sys
from pathlib import Path

from synthsight.cli import main
from synthsight.generators.stream import SyntheticStream

record_dir, argv = Path(sys.argv[1]), sys.argv[2:]
seen: list[int] = []
_iter = SyntheticStream.__iter__


def _recording_iter(self):
    for images, indices in _iter(self):
        seen.extend(indices.tolist())
        yield images, indices


SyntheticStream.__iter__ = _recording_iter
if os.environ.get("FAST_CLOCK_RANK") == os.environ["RANK"]:  # this rank's clock runs 3x fast (trainer.minutes tests)
    import time

    _perf, _start = time.perf_counter, time.perf_counter()
    time.perf_counter = lambda: _start + 3 * (_perf() - _start)
code = main(argv)
(record_dir / f"rank{os.environ['RANK']}.json").write_text(json.dumps(seen))
raise SystemExit(code)
