"""Training checkpoints: model + optimiser + scheduler + RNG states + progress, written atomically.

Everything in a checkpoint is a tensor, a number, a string, or a list / dict of those, so it
loads with ``torch.load(path, weights_only=True)`` (no pickled Python objects are executed).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bayescellseg.errors import InputError
from bayescellseg.io.atomic import atomic_path


def capture_rng_state() -> dict[str, Any]:
    """Snapshot of the Python, NumPy (legacy global), torch CPU and CUDA generators.

    Returns:
        A dict of tensors / lists / numbers that ``torch.load(weights_only=True)`` accepts.
    """
    version, py_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": int(version), "state": list(py_state), "gauss": gauss},
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore generators captured by :func:`capture_rng_state` (CUDA only where present)."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"]), py["gauss"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["cached"]))
    torch.set_rng_state(state["torch"].to(torch.uint8).cpu())
    cuda = state.get("cuda", [])
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.to(torch.uint8).cpu() for s in cuda])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (replacing an older checkpoint).

    A crash (even ``kill -9``) during the write leaves the previous checkpoint intact.

    Args:
        path: Destination, e.g. ``out/checkpoints/last.pt``.
        state: Tensors / numbers / strings / lists / dicts only (see module docstring).
    """
    with atomic_path(path, overwrite=True) as tmp:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Tensors are loaded onto the CPU; the caller moves them.

    Raises:
        InputError: Missing or unreadable checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no checkpoint to resume from (train without resume=True first)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is a bad file
        raise InputError(
            path, f"cannot read the checkpoint ({type(err).__name__}: {err})"
        ) from None
