"""Keep glibc's allocator from returning large tensor buffers to the kernel after every use.

glibc serves an allocation above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and
unmaps it on ``free``. A width-16 U-Net on a batch of 8 256x256 crops has full-resolution
activations of 32 MiB and more, so every training step (and every large inference tile) maps,
page-faults in and unmaps the same few hundred MiB again. On the project's 2-core CPU machine
that kernel work was 20-30 % of a training process's CPU time. With the allocator told to
keep such blocks (:func:`keep_freed_memory`), one training thread ran at 2.8 instead of 2.0
patches/s and T = 20 sampling took half the time (``benchmarks/bench_train.py --malloc default
tuned``, ``benchmarks/bench_predict.py --malloc default``), with the same outputs.

The price is that freed memory stays with the process (its resident size does not shrink after
a peak) instead of going back to the system. That suits a command-line run, so the
``bayescellseg`` command calls :func:`keep_freed_memory` at start; library users decide for
themselves. ``BAYESCELLSEG_MALLOC=default`` in the environment leaves the allocator alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: ``mallopt`` parameters (glibc ``malloc.h``).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4

#: Freed memory at the top of the heap beyond this many bytes (2 GiB, the largest value
#: ``mallopt`` takes) is still returned to the system.
TRIM_THRESHOLD = 2**31 - 1

ENV_VAR = "BAYESCELLSEG_MALLOC"


def keep_freed_memory() -> bool:
    """Serve large allocations from the heap and keep freed memory (glibc on Linux only).

    Returns:
        True if the allocator was tuned; False on other platforms or C libraries, or when
        ``BAYESCELLSEG_MALLOC=default`` is set.
    """
    if os.environ.get(ENV_VAR, "").lower() == "default" or not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 (only glibc has it: musl's mallopt is a no-op)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    trimmed = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(trimmed)
