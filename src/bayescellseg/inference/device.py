"""Which torch device to run on: ``--device auto`` (the default), ``cpu``, ``cuda``, ``cuda:N``
or ``mps``, checked up front so a wrong choice is a one-line error, never a traceback.

``auto`` takes the first CUDA GPU when torch sees one, else the CPU. It does not take Apple's
MPS by itself: MPS is used when asked for (``--device mps``) on a torch build and machine that
have it (macOS on Apple silicon); CI cannot test it.
"""

from __future__ import annotations

import torch

from bayescellseg.errors import InputError

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
DEVICE_HELP = (
    "auto (default: the first CUDA GPU if torch sees one, else the CPU), cpu, cuda, cuda:N, "
    "or mps (Apple silicon)"
)
_USE_CPU = "use device='cpu' or device='auto'"


def _cuda(device: torch.device, asked: str) -> torch.device:
    if not torch.cuda.is_available():
        built = torch.version.cuda
        why = (
            "torch sees no CUDA GPU (driver missing, or CUDA_VISIBLE_DEVICES hides them)"
            if built
            else f"this torch ({torch.__version__}) is a CPU-only build; install a CUDA build "
            "(see the README's install section)"
        )
        raise InputError("device", f"{asked!r} requested but {why}; {_USE_CPU}")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        have = (
            "1 CUDA device (cuda:0)" if count == 1 else f"{count} CUDA devices (cuda:0-{count - 1})"
        )
        raise InputError("device", f"{asked!r} requested but torch sees {have}")
    return device


def _mps(asked: str) -> torch.device:
    backend = getattr(torch.backends, "mps", None)
    if backend is None or not backend.is_built():
        raise InputError(
            "device",
            f"{asked!r} requested but this torch ({torch.__version__}) has no MPS support; MPS "
            f"exists only in macOS builds of torch on Apple silicon; {_USE_CPU}",
        )
    if not backend.is_available():
        raise InputError(
            "device",
            f"{asked!r} requested but MPS is not available on this machine (it needs Apple "
            f"silicon and macOS 12.3 or later); {_USE_CPU}",
        )
    return torch.device("mps")


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """The torch device for a ``--device`` value.

    Args:
        name: ``auto`` (or None), ``cpu``, ``cuda``, ``cuda:N``, ``mps``, or a torch.device.

    Returns:
        A concrete device (``auto`` resolved).

    Raises:
        InputError: An unknown name, or a device this machine or torch build does not have
            (the message says which and what to use instead).
    """
    if isinstance(name, torch.device):
        asked = str(name)
    else:
        asked = "auto" if name is None else str(name).strip().lower()
    if asked == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(asked)
    except (RuntimeError, ValueError) as err:
        raise InputError("device", f"unknown device {asked!r}; use {DEVICE_CHOICES}") from err
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        return _cuda(device, asked)
    if device.type == "mps":
        return _mps(asked)
    raise InputError("device", f"unsupported device {asked!r}; use {DEVICE_CHOICES}")
