"""Which reduced precision this machine runs natively."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


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
