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
def _cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags from ``/proc/cpuinfo`` (None where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return None


def _has_any_flag(wanted: tuple[str, ...]) -> bool:
    """Whether the CPU flags hold any of ``wanted``; where ``/proc/cpuinfo`` cannot be read,
    whether torch's CPU capability reports AMX."""
    flags = _cpu_flags()
    if flags is None:
        capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()
        return "AMX" in str(capability).upper()
    return any(f in flags for f in wanted)


def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX-512 BF16 or AMX), so bf16 autocast pays.

    Read from ``/proc/cpuinfo`` (Linux); elsewhere torch's CPU capability must report AMX.
    Without such hardware torch emulates bf16, which is slower than float32.
    """
    return _has_any_flag(_BF16_CPU_FLAGS)


def cpu_has_amx() -> bool:
    """True when the CPU has AMX tiles (Intel Sapphire Rapids and later), where oneDNN's
    training kernels run faster in the channels-last layout (measured: 8.5 against 5.6
    patches/s, ``benchmarks/bench_train.py``); on an earlier AVX-512 BF16 host (an AMD EPYC by
    the project's notes, so without AMX) the default layout was faster (9.8 against 7.3)."""
    return _has_any_flag(("amx_bf16",))
