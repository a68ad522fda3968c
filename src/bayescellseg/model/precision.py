"""Which reduced precision this machine runs natively."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch

_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
#: Logged when bf16 is asked for on a CPU that emulates it (measured on a 2-core AVX2 EPYC:
#: training 0.29 patches/s in bf16 against 3.45 in fp32, ``benchmarks/bench_train.py``).
EMULATED_BF16 = (
    "this CPU has no native bf16 (AVX-512 BF16 or AMX): torch emulates it, which is about 10x "
    "slower than fp32 here; 'auto' would choose fp32"
)
log = logging.getLogger(__name__)


def warn_if_emulated_bf16() -> bool:
    """Log :data:`EMULATED_BF16` when this CPU lacks native bf16; True when it was logged."""
    if cpu_has_bf16():
        return False
    log.warning(EMULATED_BF16)
    return True


@functools.cache
def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX-512 BF16 or AMX), so bf16 autocast pays.

    Read from ``/proc/cpuinfo`` (Linux); elsewhere torch's CPU capability must report AMX.
    Without such hardware torch emulates bf16, which is slower than float32.
    """
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return any(f in flags for f in _BF16_CPU_FLAGS)
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()
    return "AMX" in str(capability).upper()
