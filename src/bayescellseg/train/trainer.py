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
crop ``i`` of the run is fixed by ``(member seed, i)`` (see :class:`bayescellseg.train.steps.EpochIndices`), so a run
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
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from bayescellseg.data.sources import SourceSpec, parse_source
from bayescellseg.errors import InputError
from bayescellseg.io.atomic import write_text_atomic
from bayescellseg.io.dsb import Sample
from bayescellseg.model.precision import cpu_has_amx, cpu_has_bf16, warn_if_emulated_bf16
from bayescellseg.model.store import WEIGHTS_FILE
from bayescellseg.train import distributed as D
from bayescellseg.train.checkpoint import (
    load_checkpoint,
)
from bayescellseg.train.config import RESUMABLE_FIELDS, TrainConfig, init_folder
from bayescellseg.train.members import Run, fit_all
from bayescellseg.train.prepare import prepare_data
from bayescellseg.train.steps import Runtime

CHECKPOINT_FORMAT = 1
# Files of ours that --overwrite may replace; nothing else in the folder is touched.
_OWN_FILES = (
    "config.json",
    "weights.safetensors",
    "training_config.json",
    "train_log.csv",
    "training_curve.png",
)


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
        model_cfg = config.model
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
        run = Run(config, model_cfg, out_dir, rt, train_samples, val, provenance, history, weights)
        fit_all(run, state)
    except BaseException:
        D.shutdown(rt.ctx, wait=False)
        raise
    D.shutdown(rt.ctx)
    return out_dir


# ----------------------------------------------------------------------------- set-up helpers


def _runtime(config: TrainConfig) -> Runtime:
    name = config.device.strip().lower()
    if not (name == "cpu" or name == "cuda" or name.startswith("cuda:")):
        raise InputError("device", f"unknown device {config.device!r} (use cpu, cuda or cuda:N)")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("device", "CUDA was asked for but torch sees no CUDA device")
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
        if amp and cpu:
            warn_if_emulated_bf16()
    bf16 = cpu or torch.cuda.is_bf16_supported()
    dtype = torch.bfloat16 if bf16 else torch.float16
    # channels-last on CUDA and on AMX CPUs (bf16 training 8.5 against 5.6 patches/s on an
    # Intel Xeon with AMX); an earlier AVX-512 BF16 host (AMD EPYC, no AMX) ran 9.8 without it
    # against 7.3 with (benchmarks/bench_train.py sweep)
    if config.channels_last is None:
        channels_last = not cpu or cpu_has_amx()
    else:
        channels_last = bool(config.channels_last)
    return Runtime(ctx, device, amp, dtype, amp and not bf16, channels_last)


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, "exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise InputError(
            out_dir,
            "already exists and is not empty; pass resume=True to continue the "
            "run saved there or overwrite=True to start afresh",
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
            "training_config.json); train without resume=True first",
        )
    stored = TrainConfig.from_json(stored_path.read_text(encoding="utf-8"), stored_path)
    new, old = config.to_dict(), stored.to_dict()
    changed = sorted(k for k in old if k not in RESUMABLE_FIELDS and old[k] != new[k])
    if changed:
        raise InputError(
            stored_path,
            "resume=True needs the same training settings; these differ "
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
