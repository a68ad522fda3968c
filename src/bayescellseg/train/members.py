"""Training the members of a model one after another, validating and exporting them.

Ensembles are trained member by member (sequentially), each with its own seed
(``seed + 1000 * k``) for crops, augmentation and dropout. ``last.pt`` records the member in
progress, so a resumed run continues an ensemble where it stopped. A single network is exported
whenever its validation score improves; an ensemble is exported when its last member finishes,
with the validation scores of the whole ensemble.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from bayescellseg.data.dataset import CropDataset, imaging_type_weights
from bayescellseg.data.normalize import imaging_type
from bayescellseg.data.sizes import median_diameter
from bayescellseg.errors import InputError
from bayescellseg.io.dsb import Sample
from bayescellseg.io.tables import json_safe
from bayescellseg.model.build import build_model
from bayescellseg.model.config import ModelConfig
from bayescellseg.model.store import WEIGHTS_FILE, load_model, save_model, update_extras
from bayescellseg.train import distributed as D
from bayescellseg.train.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from bayescellseg.train.config import TrainConfig, init_folder
from bayescellseg.train.history import report_epoch, write_log
from bayescellseg.train.steps import (
    Runtime,
    derived_seed,
    loader,
    make_optimizer,
    make_scheduler,
    member_seed,
    train_epoch,
)
from bayescellseg.train.validation import validate_sources

CHECKPOINT_FORMAT = 1


@dataclass
class Run:
    """What every stage of one training run needs."""

    config: TrainConfig
    model_cfg: ModelConfig
    out_dir: Path
    rt: Runtime
    train_samples: Sequence[Sample]
    val_samples: Mapping[str, Sequence[Sample]]
    provenance: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    weights: Sequence[float] | None = None

    def nucleus_extras(self) -> dict[str, float]:
        """``{"nucleus_diameter": median over the training nuclei}`` (px), for ``--diameter``;
        empty without training nuclei."""
        diameter = median_diameter(s.labels for s in self.train_samples)
        return {} if math.isnan(diameter) else {"nucleus_diameter": round(diameter, 3)}


def _members(model: nn.Module) -> list[nn.Module]:
    members = getattr(model, "members", None)
    return list(members) if isinstance(members, nn.ModuleList) else [model]


def _load_init_weights(model: nn.Module, model_cfg: ModelConfig, init_from: str) -> None:
    """Copy the weights of the ``init_from`` model folder into ``model`` (same architecture)."""
    folder = init_folder(init_from)
    loaded = load_model(folder)
    if loaded.config.to_dict() != model_cfg.to_dict():
        raise InputError(folder, "init_from: its model config differs from this run's")
    model.load_state_dict(loaded.model.state_dict(), strict=True)


def _validate(nets: Sequence[nn.Module], run: Run) -> dict[str, Any]:
    rt = run.rt
    dtype = rt.amp_dtype if rt.amp else None
    return validate_sources(nets, run.val_samples, run.model_cfg, dtype)


def _val_columns(metrics: dict[str, Any]) -> dict[str, float]:
    """Log columns of a validation: macro means, then ``val_<score>/<source>`` (2+ sources)."""
    row = {f"val_{k}": metrics[k] for k in ("dice", "dsb", "ap50")}
    if len(metrics["per_source"]) < 2:  # one source: the same figures as the means
        return row
    for name, scores in metrics["per_source"].items():
        for k in ("dsb", "ap50", "dice"):
            row[f"val_{k}/{name}"] = scores[k]
    return row


def fit_all(run: Run, state: dict[str, Any] | None) -> None:
    model = build_model(run.model_cfg, seed=run.config.seed)
    if state is None and run.config.init_from is not None:
        _load_init_weights(model, run.model_cfg, run.config.init_from)
    model = model.to(run.rt.device)
    members = _members(model)
    start_member = int(state["member"]) if state else 0
    trained = False
    for k in range(len(members)):
        best_path = run.out_dir / "checkpoints" / f"member_{k}_best.pt"
        done = k < start_member or (state and k == start_member and _member_done(state, run))
        if not done:
            fit_member(run, members[k], k, len(members), state if k == start_member else None)
            trained = True
        if len(members) > 1:  # continue with the member's best weights
            members[k].load_state_dict(load_checkpoint(best_path)["model"])
    if not run.rt.ctx.is_main:
        return
    if not trained and (run.out_dir / WEIGHTS_FILE).exists():  # the model folder is current
        return
    if len(members) > 1:  # also when a run was stopped between its last member and the export
        metrics = _validate(members, run)
        _export(run, model, metrics, best_epoch=None)
    else:  # the best weights were exported during training; refresh their extras
        best = _best_row(run.history)
        metrics = {k: best.get(f"val_{k}", float("nan")) for k in ("dice", "dsb", "ap50")}
        metrics["n_images"] = sum(len(v) for v in run.val_samples.values())
        metrics["per_source"] = {
            name: {k: best.get(f"val_{k}/{name}", float("nan")) for k in ("dsb", "ap50", "dice")}
            for name, samples in run.val_samples.items()
            if samples
        }
        _refresh_training_extras(run, metrics, best_epoch=int(best["epoch"]))


def _crop_weights(run: Run) -> Sequence[float] | None:
    """The run's sampling weights, or the brightfield share's when ``fit`` got none."""
    if run.weights is not None or run.config.brightfield_share is None:
        return run.weights
    kinds = [imaging_type(s.image) for s in run.train_samples]
    return imaging_type_weights(kinds, run.config.brightfield_share).tolist()


def _best_row(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The epoch whose weights were exported: first highest val DSB, or the last without val."""
    if any(math.isnan(r["val_dsb"]) for r in history):
        return history[-1]
    return max(history, key=lambda r: r["val_dsb"])  # max keeps the first of equal scores


def _member_done(state: dict[str, Any], run: Run) -> bool:
    return int(state["epoch"]) >= run.config.epochs


@dataclass
class _Member:
    """One ensemble member being trained: its network, optimiser and where it starts.

    Attributes:
        k: Member index (0-based).
        n_members: Number of members.
        net: The member's network (on the run's device).
        opt: Its optimiser.
        sched: Its learning-rate schedule.
        scaler: Its gradient scaler (fp16 autocast only; disabled otherwise).
        start_epoch: First epoch to train (a resumed member's epochs done).
        best: Best validation score so far (``-inf`` before the first epoch).
        best_epoch: Epoch (1-based) of ``best``, or None.
    """

    k: int
    n_members: int
    net: nn.Module
    opt: torch.optim.Optimizer
    sched: Any
    scaler: torch.amp.GradScaler
    start_epoch: int = 0
    best: float = -math.inf
    best_epoch: int | None = None


def _start_member(
    run: Run, net: nn.Module, k: int, n_members: int, state: dict[str, Any] | None
) -> _Member:
    """Put ``net`` on the device and build its optimiser; restore a resumed member's state."""
    config, rt = run.config, run.rt
    net.to(rt.device)
    if rt.channels_last:
        net.to(memory_format=torch.channels_last)
    opt = make_optimizer(net, config)
    sched = make_scheduler(opt, config)
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.scaler)
    member = _Member(k, n_members, net, opt, sched, scaler)
    if state is not None:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"])
        member.start_epoch = int(state["epoch"])
        member.best = float(state["best_metric"])
        member.best_epoch = int(state["best_epoch"]) if state["best_epoch"] >= 0 else None
    return member


def _member_dataset(run: Run, seed: int) -> CropDataset:
    """The crops of the member's whole run (see ``steps.EpochIndices``)."""
    config = run.config
    length = config.epochs * config.steps_per_epoch * config.batch_size * run.rt.ctx.world_size
    return CropDataset(
        list(run.train_samples),
        crop=config.crop,
        augment=config.augment,
        seed=seed,
        length=length,
        weights=_crop_weights(run),
        scale_range=tuple(config.scale_range),
    )


def fit_member(
    run: Run, net: nn.Module, k: int, n_members: int, state: dict[str, Any] | None
) -> None:
    config, rt = run.config, run.rt
    seed = member_seed(config, k)
    member = _start_member(run, net, k, n_members, state)
    ddp_net = D.wrap_model(net, rt.ctx, rt.device)
    dataset = _member_dataset(run, seed)
    who = f"member {k + 1}/{n_members}" if n_members > 1 else "training"
    bar = tqdm(
        total=config.epochs * config.steps_per_epoch,
        initial=member.start_epoch * config.steps_per_epoch,
        desc=who,
        unit="step",
        disable=not (config.progress and rt.ctx.is_main),
        dynamic_ncols=True,
    )  # the whole member, so its ETA is the member's
    for epoch in range(member.start_epoch, config.epochs):
        t0 = time.perf_counter()
        torch.manual_seed(derived_seed(seed, epoch, rt.ctx.rank))
        bar.set_description(f"{who} epoch {epoch + 1}/{config.epochs}")
        stats = train_epoch(
            run,
            ddp_net,
            loader(dataset, epoch, config, rt),
            (member.opt, member.sched, member.scaler),
            epoch * config.steps_per_epoch,
            bar,
        )
        if rt.ctx.is_main:
            _end_epoch(run, member, epoch, stats, t0)
        D.barrier(rt.ctx)
    bar.close()


def _end_epoch(run: Run, member: _Member, epoch: int, stats: dict[str, float], t0: float) -> None:
    """Validate, log the epoch, keep the best weights and write ``last.pt`` (main process).

    Appends the epoch's row to ``run.history`` and updates ``member.best`` / ``best_epoch``.
    """
    lr = float(member.opt.param_groups[0]["lr"])
    metrics = _validate([member.net], run)
    score = metrics["dsb"] if not math.isnan(metrics["dsb"]) else float(epoch)
    row = {
        "member": member.k,
        "epoch": epoch + 1,
        **stats,
        **_val_columns(metrics),
        "lr": lr,
        "seconds": time.perf_counter() - t0,
    }
    run.history.append(row)
    report_epoch(row, member.n_members)
    if score > member.best:
        member.best, member.best_epoch = score, epoch + 1
        if member.n_members == 1:
            _export(run, member.net, metrics, member.best_epoch)
        else:
            save_checkpoint(
                run.out_dir / "checkpoints" / f"member_{member.k}_best.pt",
                {"model": member.net.state_dict(), "epoch": epoch + 1, "metric": score},
            )
    write_log(run.out_dir, run.history)
    save_checkpoint(run.out_dir / "checkpoints" / "last.pt", _last_state(run, member, epoch))


def _last_state(run: Run, member: _Member, epoch: int) -> dict[str, Any]:
    """What ``last.pt`` holds after ``epoch`` (0-based) of ``member``."""
    return {
        "format": CHECKPOINT_FORMAT,
        "config": run.config.to_dict(),
        "member": member.k,
        "epoch": epoch + 1,
        "model": member.net.state_dict(),
        "optimizer": member.opt.state_dict(),
        "scheduler": member.sched.state_dict(),
        "scaler": member.scaler.state_dict(),
        "rng": capture_rng_state(),
        "best_metric": member.best,
        "best_epoch": member.best_epoch if member.best_epoch is not None else -1,
        "history": run.history,
        "init_from": run.provenance.get("init_from"),
    }


def _export(run: Run, model: nn.Module, metrics: dict[str, float], best_epoch: int | None) -> None:
    """Write new weights: the folder's other extras (calibration) belonged to the old ones."""
    extras = {"training": _training_extras(run, metrics, best_epoch), **run.nucleus_extras()}
    save_model(run.out_dir, model, run.model_cfg, extras, overwrite=True)


def _refresh_training_extras(run: Run, metrics: dict[str, float], best_epoch: int | None) -> None:
    """Same weights: update ``training`` only, keeping what ``calibrate`` wrote."""
    update_extras(run.out_dir, training=_training_extras(run, metrics, best_epoch))


def _training_extras(run: Run, metrics: dict[str, float], best_epoch: int | None) -> dict[str, Any]:
    epochs_done = max((int(r["epoch"]) for r in run.history), default=0)
    return {
        **run.provenance,
        "config": run.config.to_dict(),
        "seed": run.config.seed,
        "epochs_done": epochs_done,
        "best_epoch": best_epoch,
        "val_metrics": json_safe(metrics),
    }
