"""Data-parallel training with ``torch.distributed``, launched by ``torchrun``.

``torchrun --nproc_per_node=N -m bayescellseg.cli train ...`` (or ``python -m
torch.distributed.run ...``) sets ``WORLD_SIZE`` / ``RANK`` / ``LOCAL_RANK`` / ``MASTER_ADDR`` /
``MASTER_PORT``; :func:`init_distributed` reads them and joins the process group (``nccl`` for
CUDA, ``gloo`` for CPU). Without those variables everything here is a no-op, so the same code
trains in one process. Process management is left entirely to ``torchrun``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from bayescellseg.errors import InputError


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in a (possibly single-process) job.

    Attributes:
        rank: Global rank (0 in a single process).
        world_size: Number of processes.
        local_rank: Rank on this machine (selects the GPU).
        local_world_size: Processes on this machine (shares the CPU cores).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        """Whether more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and reports progress (rank 0)."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InputError(f"${name}", f"must be an integer, got {value!r}") from None


def context_from_env() -> DistContext:
    """Read ``WORLD_SIZE`` / ``RANK`` / ``LOCAL_RANK`` / ``LOCAL_WORLD_SIZE`` (defaults: 1 process)."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    local_world = _env_int("LOCAL_WORLD_SIZE", world)
    if world < 1 or not 0 <= rank < world or not 0 <= local_rank < max(local_world, 1):
        raise InputError("$RANK/$WORLD_SIZE", f"inconsistent values rank={rank} world={world}")
    return DistContext(rank, world, local_rank, max(local_world, 1))


def init_distributed(device_type: str) -> DistContext:
    """Join the process group described by the environment (no-op for a single process).

    Args:
        device_type: ``cpu`` (gloo backend) or ``cuda`` (nccl backend).

    Returns:
        This process's context.
    """
    ctx = context_from_env()
    if ctx.enabled and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(ctx.local_rank)
        dist.init_process_group(backend=backend)
    return ctx


def shutdown(ctx: DistContext, wait: bool = True) -> None:
    """Leave the process group (if one was joined).

    Args:
        ctx: This process's context.
        wait: Wait for the other processes first; pass False after an error (they may be gone,
            and ``torchrun`` stops the job when this process exits with an error).
    """
    if ctx.enabled and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    """Wait for every process (no-op for a single process)."""
    if ctx.enabled and dist.is_initialized():
        dist.barrier()


def wrap_model(model: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """Wrap ``model`` in ``DistributedDataParallel`` when several processes take part.

    DDP broadcasts rank 0's parameters at construction and averages gradients in ``backward``,
    so all ranks hold identical weights after every optimiser step.
    """
    if not ctx.enabled:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def all_reduce_mean(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Mean of ``values`` over all processes (a copy; single process: ``values`` cloned)."""
    out = values.detach().clone()
    if ctx.enabled and dist.is_initialized():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= ctx.world_size
    return out


def broadcast_flag(flag: bool, ctx: DistContext, device: torch.device) -> bool:
    """Rank 0's value of ``flag`` on every rank (e.g. to stop together after an error)."""
    if not ctx.enabled or not dist.is_initialized():
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())
