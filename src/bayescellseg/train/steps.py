"""One training epoch: the crops of an epoch, the optimiser, the schedule and the steps.

Crop ``i`` of a run is fixed by ``(member seed, i)`` (see :class:`EpochIndices`) and every epoch
re-seeds torch's generator, so a resumed run repeats the uninterrupted one bit for bit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from bayescellseg.model.layers import kl_divergence
from bayescellseg.train import distributed as D
from bayescellseg.train.config import TrainConfig
from bayescellseg.train.loss import elbo_loss, segmentation_loss


@dataclass(frozen=True)
class Runtime:
    """Per-process settings derived from the config and the environment."""

    ctx: D.DistContext
    device: torch.device
    amp: bool
    amp_dtype: torch.dtype
    scaler: bool  # fp16 needs loss scaling; bf16 does not
    channels_last: bool


def derived_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def member_seed(config: TrainConfig, member: int) -> int:
    """Seed of ensemble member ``member`` (crops, augmentation, dropout)."""
    return config.seed + 1000 * member


def make_optimizer(net: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in net.named_parameters():
        # no weight decay on norms, biases, and variational posterior parameters
        (no_decay if p.ndim <= 1 or "rho" in name else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr)


def make_scheduler(opt: torch.optim.Optimizer, config: TrainConfig):  # noqa: ANN202
    total = config.epochs * config.steps_per_epoch
    if config.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=config.lr, total_steps=total, pct_start=max(config.warmup_fraction, 1e-3)
        )
    warmup = int(round(config.warmup_fraction * total))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def kl_weight(config: TrainConfig, global_step: int) -> float:
    if config.kl_anneal_epochs == 0:
        return config.kl_weight
    ramp = config.kl_anneal_epochs * config.steps_per_epoch
    return config.kl_weight * min(1.0, (global_step + 1) / ramp)


class EpochIndices(torch.utils.data.Sampler[int]):
    """Indices ``epoch * L + rank, epoch * L + rank + world, ...`` below ``(epoch + 1) * L``.

    The crop dataset spans the whole run (``epochs * L`` items, ``L`` = patches per epoch over
    all processes), so its round robin over the training images carries on from one epoch to
    the next (every image is used even when an epoch has fewer patches than there are images),
    each item is fixed by its index alone, and the processes of a DDP job get disjoint shares.
    """

    def __init__(self, epoch: int, per_epoch: int, rank: int, world: int) -> None:
        self.start, self.stop = epoch * per_epoch + rank, (epoch + 1) * per_epoch
        self.world = world

    def __iter__(self):  # noqa: ANN204
        return iter(range(self.start, self.stop, self.world))

    def __len__(self) -> int:
        return len(range(self.start, self.stop, self.world))


def loader(dataset: Any, epoch: int, config: TrainConfig, rt: Runtime) -> Any:
    per_epoch = config.steps_per_epoch * config.batch_size * rt.ctx.world_size
    sampler = EpochIndices(epoch, per_epoch, rt.ctx.rank, rt.ctx.world_size)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=config.workers,
        drop_last=True,
        pin_memory=rt.device.type == "cuda",
    )


_LOSS_PARTS = ("total", "bce_fg", "dice_fg", "bce_contour", "kl")


def train_epoch(
    run: Any,
    ddp_net: nn.Module,
    loader: Any,
    optim: tuple[torch.optim.Optimizer, Any, Any],
    first_step: int,
    bar: tqdm,
) -> dict[str, float]:
    config, rt = run.config, run.rt
    opt, sched, scaler = optim
    n_train = config.n_train or len(run.train_samples)
    net = D.unwrap_model(ddp_net)
    variational = getattr(getattr(net, "config", None), "method", None) == "variational"
    memory_format = torch.channels_last if rt.channels_last else torch.preserve_format
    ddp_net.train()
    sums = torch.zeros(len(_LOSS_PARTS), dtype=torch.float64, device=rt.device)
    zero = torch.zeros((), device=rt.device)
    t0 = time.perf_counter()
    patches = config.batch_size * rt.ctx.world_size
    beta = 0.0
    n_steps = 0
    for i, (x, y) in enumerate(loader):
        if i >= config.steps_per_epoch:
            break
        x = x.to(rt.device, non_blocking=True).contiguous(memory_format=memory_format)
        y = y.to(rt.device, non_blocking=True)
        with torch.autocast(rt.device.type, dtype=rt.amp_dtype, enabled=rt.amp):
            logits = ddp_net(x)
        if variational:
            beta = kl_weight(config, first_step + i)
            parts = elbo_loss(
                logits.float(),
                y,
                kl_divergence(net),
                n_train,
                beta,
                contour_weight=config.contour_weight,
            )
        else:
            parts = segmentation_loss(logits.float(), y, config.contour_weight)
        loss = parts["total"]
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if config.grad_clip > 0:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
        scaler.step(opt)
        scaler.update()
        sched.step()
        sums += torch.stack([parts.get(k, zero).detach().double() for k in _LOSS_PARTS])
        n_steps += 1
        bar.update(1)
        if i % 10 == 0 or i + 1 == config.steps_per_epoch:  # .item() syncs a GPU: not every step
            mean_loss = sums[0].item() / n_steps
            if not math.isfinite(mean_loss):
                raise FloatingPointError(
                    f"training loss became {mean_loss} by step "
                    f"{first_step + i}; lower --lr or check the data"
                )
            speed = patches * n_steps / (time.perf_counter() - t0)
            bar.set_postfix(loss=f"{mean_loss:.4f}", patches_s=f"{speed:.1f}")
    seconds = time.perf_counter() - t0
    means = D.all_reduce_mean(sums / max(n_steps, 1), rt.ctx).tolist()
    stats = dict(zip(("loss", *_LOSS_PARTS[1:]), means, strict=True))
    return {**stats, "kl_weight": beta, "patches_per_s": patches * n_steps / seconds}
