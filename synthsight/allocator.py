"""Keep freed memory in the process for reuse: CPU training allocates and frees the same large activation buffers
every step, and glibc's default hands buffers of more than ~128 KB-32 MB back to the kernel (mmap/munmap), so
every step page-faults them in again and the kernel zeroes the pages.

`keep_freed_memory()` tells glibc's malloc (mallopt) never to serve allocations with mmap and not to trim the heap
below 1 GiB of free memory, so a buffer freed at step n is reused at step n + 1. Measured on the 2-core machine
(smallconv_fast SimCLR step, 256 images, 2 threads): ~1,360 -> ~1,690 img/s (docs/BENCHMARKS.md). The price: the
process keeps its peak heap (it does not shrink after a large transient allocation). Linux with glibc only; a
no-op elsewhere. `SYNTHSIGHT_MALLOC=default` in the environment leaves malloc as it is.

Example:
    >>> keep_freed_memory()       # True where applied
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4  # glibc's mallopt parameter numbers (malloc.h)
ENV = "SYNTHSIGHT_MALLOC"


@functools.cache
def keep_freed_memory() -> bool:
    """Apply the settings once per process; True if glibc accepted them."""
    if not sys.platform.startswith("linux") or os.environ.get(ENV, "") == "default":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in
               ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 64 << 20)))
