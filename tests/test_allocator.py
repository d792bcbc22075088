"""synthsight.allocator: a freed large buffer stays in the process for the next step instead of going back to the
kernel (measured through the resident set size, in fresh processes)."""

import subprocess
import sys

import pytest

SCRIPT = """
import os, sys
from synthsight.allocator import keep_freed_memory
applied = keep_freed_memory()
import torch
x = torch.ones(200 * 2**20, dtype=torch.uint8)  # 200 MiB, pages touched
del x
rss_pages = int(open("/proc/self/statm").read().split()[1])
print(applied, rss_pages * os.sysconf("SC_PAGE_SIZE") // 2**20)
"""


def _rss_after_free(env_value: str | None) -> tuple[str, int]:
    import os

    env = dict(os.environ)
    env.pop("SYNTHSIGHT_MALLOC", None)
    if env_value is not None:
        env["SYNTHSIGHT_MALLOC"] = env_value
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, check=True)
    applied, rss_mib = out.stdout.split()
    return applied, int(rss_mib)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_buffers_stay_in_the_process_unless_switched_off():
    applied, kept = _rss_after_free(None)
    off, returned = _rss_after_free("default")
    assert (applied, off) == ("True", "False")
    assert kept - returned > 150  # MiB: the 200 MiB buffer is still resident for reuse, not unmapped
