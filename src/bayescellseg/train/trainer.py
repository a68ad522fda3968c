"""Training loop: ``bayescellseg train``.

Layout of the output folder (a model folder that :func:`bayescellseg.model.store.load_model`
reads, plus training records)::

    out/
      config.json, weights.safetensors   best model so far (by the macro validation DSB score)
      training_config.json               the TrainConfig, written at the start
      split.json                         every source's folder, train / val IDs and crop share
      train_log.csv, training_curve.png  one row / point per epoch (:mod:`bayescellseg.train.history`)
      checkpoints/last.pt                full training state after the last finished epoch
      checkpoints/member_<k>_best.pt     best weights of ensemble member k (ensembles only)

Ensembles are trained member by member (sequentially), each member with its own seed
(``seed + 1000 * k``) for crops, augmentation and dropout; weights are initialised by
``build_model(model_config, seed)`` (member ``k`` with ``seed + k``). ``last.pt`` records the
member in progress, so ``--resume`` continues an ensemble where it stopped. The model folder is
written when the last member finishes, with the validation scores of the whole ensemble.

Reproducibility: every epoch re-seeds torch's generator from ``(member seed, epoch, rank)`` and
crop ``i`` of the run is fixed by ``(member seed, i)`` (see :class:`_EpochIndices`), so a run
resumed from ``last.pt`` repeats the uninterrupted run bit for bit on the CPU (checked by the
tests). A ``kill -9`` loses at most the epoch in progress: checkpoints are replaced atomically.

Data parallelism: under ``torchrun`` every process trains on its own share of each epoch's
crops (``batch_size`` per process and step), DDP averages the gradients, and only rank 0
validates and writes files (see :mod:`bayescellseg.train.distributed`).

Devices: CPU by default; ``device="cuda"`` trains with autocast (bf16 where supported, else fp16
with a ``GradScaler``). On CPUs with native bf16 (AVX-512 BF16 or AMX) the CPU trains with bf16
autocast too (fp32 master weights and loss), in the channels-last memory format.

Data: :mod:`bayescellseg.train.prepare` reads the sources, makes the split and the sampling
weights; validation is per source (:mod:`bayescellseg.train.validation`).
"""

from __future__ import annotations

import hashlib
import math
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from bayescellseg.data.dataset import CropDataset, imaging_type_weights
from bayescellseg.data.normalize import imaging_type
from bayescellseg.data.sizes import median_diameter
from bayescellseg.data.sources import SourceSpec, parse_source
from bayescellseg.errors import InputError
from bayescellseg.io.atomic import write_text_atomic
from bayescellseg.io.dsb import Sample
from bayescellseg.model.build import build_model
from bayescellseg.model.config import ModelConfig
from bayescellseg.model.layers import kl_divergence
from bayescellseg.model.precision import cpu_has_bf16
from bayescellseg.model.store import WEIGHTS_FILE, load_model, save_model, update_extras
from bayescellseg.train import distributed as D
from bayescellseg.train.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from bayescellseg.train.config import RESUMABLE_FIELDS, TrainConfig, init_folder
from bayescellseg.train.history import report_epoch, write_log
from bayescellseg.train.loss import elbo_loss, segmentation_loss
from bayescellseg.train.prepare import prepare_data
from bayescellseg.train.validation import validate_sources

CHECKPOINT_FORMAT = 1
# Files of ours that --overwrite may replace; nothing else in the folder is touched.
_OWN_FILES = (
    "config.json",
    "weights.safetensors",
    "training_config.json",
    "train_log.csv",
    "training_curve.png",
)


@dataclass(frozen=True)
class _Runtime:
    """Per-process settings derived from the config and the environment."""

    ctx: D.DistContext
    device: torch.device
    amp: bool
    amp_dtype: torch.dtype
    scaler: bool  # fp16 needs loss scaling; bf16 does not
    channels_last: bool


@dataclass
class _Run:
    """What every stage of one training run needs."""

    config: TrainConfig
    model_cfg: Any  # ModelConfig
    out_dir: Path
    rt: _Runtime
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


# ----------------------------------------------------------------------------- public entry points


def train(
    data: Sequence[str | Path | SourceSpec] | str | Path | None,
    out_dir: str | Path,
    config: TrainConfig,
    resume: bool = False,
    overwrite: bool = False,
) -> Path:
    """Train a model on one or more annotated dataset folders (sources).

    Args:
        data: Dataset folders (any layout of :mod:`bayescellseg.io.datasets`, ``NAME=DIR``
            names a source) or :class:`SourceSpec` s; they replace ``config.sources``. None =
            ``config.sources`` (e.g. on resume).
        out_dir: Model folder to create (see the module docstring for its contents).
        config: Training settings (see :class:`TrainConfig`).
        resume: Continue from ``out_dir/checkpoints/last.pt``.
        overwrite: Start afresh in an existing ``out_dir`` (replaces this module's files only).

    Returns:
        ``out_dir``, a model folder loadable with ``load_model``.

    Raises:
        InputError: Bad data, split, config, or an existing ``out_dir`` without
            ``resume`` / ``overwrite``.
    """
    out_dir = Path(out_dir)
    if data is not None:
        items = [data] if isinstance(data, (str, Path, SourceSpec)) else list(data)
        specs = [d if isinstance(d, SourceSpec) else parse_source(d) for d in items]
        config = replace(config, sources=[s.to_dict() for s in specs])
    config = replace(config, sources=[_absolute(d) for d in config.sources])
    if resume:
        config = _resumed_config(out_dir, config)
    else:
        _check_out_dir(out_dir, overwrite)
        _clear_own_files(out_dir)
    prepared = prepare_data(config, out_dir, resume)
    return fit(prepared.train, prepared.val, config, out_dir, resume, True, prepared.provenance,
               prepared.weights)  # fmt: skip


def _absolute(source: dict[str, Any]) -> dict[str, Any]:
    """A source with absolute paths, so that the stored config works from any folder."""
    spec = SourceSpec.from_dict(source)
    paths = {k: getattr(spec, k) for k in ("path", "labels", "groups")}
    return replace(spec, **{k: str(Path(v).resolve()) for k, v in paths.items() if v}).to_dict()


def fit(
    train_samples: Sequence[Sample],
    val_samples: Sequence[Sample] | Mapping[str, Sequence[Sample]],
    config: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    provenance: dict[str, Any] | None = None,
    weights: Sequence[float] | None = None,
) -> Path:
    """Train on in-memory samples (what :func:`train` calls; tests call it with synthetic data).

    Args:
        train_samples: Training images with instance labels.
        val_samples: Validation images (whole images, validated with sampling off), as one
            list or by source name; may be empty, then the last epoch counts as the best.
        config: Training settings.
        out_dir: Model folder.
        resume: Continue from ``out_dir/checkpoints/last.pt``.
        overwrite: Start afresh in an existing ``out_dir``.
        provenance: Extra facts stored under ``extras["training"]`` (data root, split hash...).
        weights: Sampling probability of each training sample (None = round robin).

    Returns:
        ``out_dir``.
    """
    out_dir = Path(out_dir)
    if not train_samples:
        raise InputError(out_dir, "no training images")
    rt = _runtime(config)
    try:
        state: dict[str, Any] | None = None
        if resume:
            config = _resumed_config(out_dir, config)
            state = load_checkpoint(out_dir / "checkpoints" / "last.pt")
        else:
            _check_out_dir(out_dir, overwrite)
        D.barrier(rt.ctx)  # every rank has checked the folder before rank 0 writes into it
        if rt.ctx.is_main:
            if not resume:
                _clear_own_files(out_dir)
            write_text_atomic(out_dir / "training_config.json", config.to_json(), overwrite=True)
        model_cfg = ModelConfig.from_dict(config.model)
        provenance = {
            **(provenance or {}),
            "git_commit": _git_commit(),
            "world_size": rt.ctx.world_size,
        }
        if config.init_from is not None:  # recorded once: a resume needs no init folder
            recorded = state.get("init_from") if state else None
            provenance["init_from"] = recorded or _init_provenance(config.init_from)
        history = list(state["history"]) if state else []
        val = dict(val_samples) if isinstance(val_samples, Mapping) else {"val": val_samples}
        run = _Run(config, model_cfg, out_dir, rt, train_samples, val, provenance, history, weights)
        _fit_all(run, state)
    except BaseException:
        D.shutdown(rt.ctx, wait=False)
        raise
    D.shutdown(rt.ctx)
    return out_dir


# ----------------------------------------------------------------------------- set-up helpers


def _runtime(config: TrainConfig) -> _Runtime:
    name = config.device.strip().lower()
    if not (name == "cpu" or name == "cuda" or name.startswith("cuda:")):
        raise InputError("--device", f"unknown device {config.device!r} (use cpu, cuda or cuda:N)")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device", "CUDA was asked for but torch sees no CUDA device")
    ctx = D.init_distributed("cuda" if name.startswith("cuda") else "cpu")
    if name == "cpu":
        device = torch.device("cpu")
        if config.num_threads is not None:
            torch.set_num_threads(config.num_threads)
        elif ctx.local_world_size > 1:
            # processes share the cores: oversubscription makes gloo training crawl
            torch.set_num_threads(max(1, (torch.get_num_threads()) // ctx.local_world_size))
    elif ctx.enabled:
        device = torch.device("cuda", ctx.local_rank)
    else:
        device = torch.device(name)
    cpu = device.type == "cpu"
    if config.amp is None:  # CPU autocast without native bf16 is slower than float32
        amp = cpu_has_bf16() if cpu else True
    else:
        amp = bool(config.amp)
    bf16 = cpu or torch.cuda.is_bf16_supported()
    dtype = torch.bfloat16 if bf16 else torch.float16
    channels_last = True if config.channels_last is None else bool(config.channels_last)
    return _Runtime(ctx, device, amp, dtype, amp and not bf16, channels_last)


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, "exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise InputError(
            out_dir,
            "already exists and is not empty; pass --resume to continue the "
            "run saved there or --overwrite to start afresh",
        )


def _clear_own_files(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in _OWN_FILES:
        (out_dir / name).unlink(missing_ok=True)
    ckpt = out_dir / "checkpoints"
    if ckpt.is_dir():
        for f in ckpt.glob("*.pt"):
            f.unlink()


def _resumed_config(out_dir: Path, config: TrainConfig) -> TrainConfig:
    """The stored config, with the fields that may change on resume taken from ``config``."""
    stored_path = out_dir / "training_config.json"
    if not (out_dir / "checkpoints" / "last.pt").is_file() or not stored_path.is_file():
        raise InputError(
            out_dir,
            "nothing to resume here (no checkpoints/last.pt or "
            "training_config.json); train without --resume first",
        )
    stored = TrainConfig.from_json(stored_path.read_text(encoding="utf-8"), stored_path)
    new, old = config.to_dict(), stored.to_dict()
    changed = sorted(k for k in old if k not in RESUMABLE_FIELDS and old[k] != new[k])
    if changed:
        raise InputError(
            stored_path,
            "--resume needs the same training settings; these differ "
            f"from the stored run: {', '.join(changed)} (only "
            f"{', '.join(sorted(RESUMABLE_FIELDS))} may change)",
        )
    return TrainConfig.from_dict({**old, **{k: new[k] for k in RESUMABLE_FIELDS}})


def _init_provenance(init_from: str) -> dict[str, Any]:
    """Where the starting weights came from: the folder and its weights' SHA-256."""
    folder = init_folder(init_from)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise InputError(weights, "missing; init_from needs a model folder with weights")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    return {"folder": str(folder.resolve()), "weights_sha256": digest}


def _load_init_weights(model: nn.Module, model_cfg: Any, init_from: str) -> None:
    """Copy the weights of the ``init_from`` model folder into ``model`` (same architecture)."""
    folder = init_folder(init_from)
    loaded = load_model(folder)
    if loaded.config.to_dict() != model_cfg.to_dict():
        raise InputError(folder, "init_from: its model config differs from this run's")
    model.load_state_dict(loaded.model.state_dict(), strict=True)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _derived_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def member_seed(config: TrainConfig, member: int) -> int:
    """Seed of ensemble member ``member`` (crops, augmentation, dropout)."""
    return config.seed + 1000 * member


def _members(model: nn.Module) -> list[nn.Module]:
    members = getattr(model, "members", None)
    return list(members) if isinstance(members, nn.ModuleList) else [model]


def _make_optimizer(net: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in net.named_parameters():
        # no weight decay on norms, biases, and variational posterior parameters
        (no_decay if p.ndim <= 1 or "rho" in name else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr)


def _make_scheduler(opt: torch.optim.Optimizer, config: TrainConfig):  # noqa: ANN202
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


def _kl_weight(config: TrainConfig, global_step: int) -> float:
    if config.kl_anneal_epochs == 0:
        return config.kl_weight
    ramp = config.kl_anneal_epochs * config.steps_per_epoch
    return config.kl_weight * min(1.0, (global_step + 1) / ramp)


def _validate(nets: Sequence[nn.Module], run: _Run) -> dict[str, Any]:
    rt = run.rt
    dtype = rt.amp_dtype if rt.amp else None
    return validate_sources(nets, run.val_samples, run.model_cfg.normalization, rt.device, dtype)


def _val_columns(metrics: dict[str, Any]) -> dict[str, float]:
    """Log columns of a validation: macro means, then ``val_<score>/<source>`` (2+ sources)."""
    row = {f"val_{k}": metrics[k] for k in ("dice", "dsb", "ap50")}
    if len(metrics["per_source"]) < 2:  # one source: the same figures as the means
        return row
    for name, scores in metrics["per_source"].items():
        for k in ("dsb", "ap50", "dice"):
            row[f"val_{k}/{name}"] = scores[k]
    return row


# ----------------------------------------------------------------------------- training


class _EpochIndices(torch.utils.data.Sampler[int]):
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


def _loader(dataset: Any, epoch: int, config: TrainConfig, rt: _Runtime) -> Any:
    per_epoch = config.steps_per_epoch * config.batch_size * rt.ctx.world_size
    sampler = _EpochIndices(epoch, per_epoch, rt.ctx.rank, rt.ctx.world_size)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=config.workers,
        drop_last=True,
        pin_memory=rt.device.type == "cuda",
    )


_LOSS_PARTS = ("total", "bce_fg", "dice_fg", "bce_contour", "kl")


def _train_epoch(
    run: _Run,
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
            beta = _kl_weight(config, first_step + i)
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


def _fit_all(run: _Run, state: dict[str, Any] | None) -> None:
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
            _fit_member(run, members[k], k, len(members), state if k == start_member else None)
            trained = True
        if len(members) > 1:  # continue with the member's best weights
            members[k].load_state_dict(load_checkpoint(best_path)["model"])
    if not run.rt.ctx.is_main or not trained:  # nothing trained: the model folder is current
        return
    if len(members) > 1:
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


def _crop_weights(run: _Run) -> Sequence[float] | None:
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


def _member_done(state: dict[str, Any], run: _Run) -> bool:
    return int(state["epoch"]) >= run.config.epochs


def _fit_member(
    run: _Run, net: nn.Module, k: int, n_members: int, state: dict[str, Any] | None
) -> None:
    config, rt, out_dir, history = run.config, run.rt, run.out_dir, run.history
    seed = member_seed(config, k)
    net.to(rt.device)
    if config.channels_last:
        net.to(memory_format=torch.channels_last)
    opt = _make_optimizer(net, config)
    sched = _make_scheduler(opt, config)
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.scaler)
    start_epoch, best = 0, -math.inf
    best_epoch: int | None = None
    if state is not None:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"])
        start_epoch = int(state["epoch"])
        best = float(state["best_metric"])
        best_epoch = int(state["best_epoch"]) if state["best_epoch"] >= 0 else None
    ddp_net = D.wrap_model(net, rt.ctx, rt.device)
    length = config.epochs * config.steps_per_epoch * config.batch_size * rt.ctx.world_size
    dataset = CropDataset(
        list(run.train_samples),
        crop=config.crop,
        augment=config.augment,
        seed=seed,
        length=length,
        weights=_crop_weights(run),
        scale_range=tuple(config.scale_range),
    )  # the whole run; see _EpochIndices
    who = f"member {k + 1}/{n_members}" if n_members > 1 else "training"
    bar = tqdm(
        total=config.epochs * config.steps_per_epoch,
        initial=start_epoch * config.steps_per_epoch,
        desc=who,
        unit="step",
        disable=not (config.progress and rt.ctx.is_main),
        dynamic_ncols=True,
    )  # the whole member, so its ETA is the member's
    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        torch.manual_seed(_derived_seed(seed, epoch, rt.ctx.rank))
        bar.set_description(f"{who} epoch {epoch + 1}/{config.epochs}")
        stats = _train_epoch(
            run,
            ddp_net,
            _loader(dataset, epoch, config, rt),
            (opt, sched, scaler),
            epoch * config.steps_per_epoch,
            bar,
        )
        lr = float(opt.param_groups[0]["lr"])
        if rt.ctx.is_main:
            metrics = _validate([net], run)
            score = metrics["dsb"] if not math.isnan(metrics["dsb"]) else float(epoch)
            row = {
                "member": k,
                "epoch": epoch + 1,
                **stats,
                **_val_columns(metrics),
                "lr": lr,
                "seconds": time.perf_counter() - t0,
            }
            history.append(row)
            report_epoch(row, n_members)
            if score > best:
                best, best_epoch = score, epoch + 1
                if n_members == 1:
                    _export(run, net, metrics, best_epoch)
                else:
                    save_checkpoint(
                        out_dir / "checkpoints" / f"member_{k}_best.pt",
                        {"model": net.state_dict(), "epoch": epoch + 1, "metric": score},
                    )
            write_log(out_dir, history)
            save_checkpoint(
                out_dir / "checkpoints" / "last.pt",
                {
                    "format": CHECKPOINT_FORMAT,
                    "config": config.to_dict(),
                    "member": k,
                    "epoch": epoch + 1,
                    "model": net.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "scaler": scaler.state_dict(),
                    "rng": capture_rng_state(),
                    "best_metric": best,
                    "best_epoch": best_epoch if best_epoch is not None else -1,
                    "history": history,
                    "init_from": run.provenance.get("init_from"),
                },
            )
        D.barrier(rt.ctx)
    bar.close()


def _export(run: _Run, model: nn.Module, metrics: dict[str, float], best_epoch: int | None) -> None:
    """Write new weights: the folder's other extras (calibration) belonged to the old ones."""
    extras = {"training": _training_extras(run, metrics, best_epoch), **run.nucleus_extras()}
    save_model(run.out_dir, model, run.model_cfg, extras, overwrite=True)


def _refresh_training_extras(run: _Run, metrics: dict[str, float], best_epoch: int | None) -> None:
    """Same weights: update ``training`` only, keeping what ``calibrate`` wrote."""
    update_extras(run.out_dir, training=_training_extras(run, metrics, best_epoch))


def _training_extras(
    run: _Run, metrics: dict[str, float], best_epoch: int | None
) -> dict[str, Any]:
    epochs_done = max((int(r["epoch"]) for r in run.history), default=0)
    return {
        **run.provenance,
        "config": run.config.to_dict(),
        "seed": run.config.seed,
        "epochs_done": epochs_done,
        "best_epoch": best_epoch,
        "val_metrics": _json_safe(metrics),
    }


def _json_safe(value: Any) -> Any:
    """NaN as None, recursively (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return None if isinstance(value, float) and math.isnan(value) else value
