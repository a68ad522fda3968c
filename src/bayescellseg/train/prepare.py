"""The data of a training run: its sources read, split, and weighted for sampling.

``prepare_data`` reads every source of ``TrainConfig.sources``, stops before training when a
sample is bad (or leaves it out with ``skip_bad``), makes or reads the split, and gives every
training image its sampling probability. The split is written into the model folder as
``split.json`` (with each source's folder, role, how it was split and its crop share), so
``calibrate`` and ``evaluate --split val`` use the same images.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bayescellseg.data.dataset import imaging_type_weights
from bayescellseg.data.normalize import imaging_type, is_colour
from bayescellseg.data.sources import LoadedSource, SourceSpec, load_source, source_weights
from bayescellseg.data.split import (
    SPLIT_FILE,
    SPLIT_FORMAT,
    bundled_split_for,
    read_source_split,
    split_one_source,
    stratum_keys,
)
from bayescellseg.errors import InputError
from bayescellseg.io.atomic import write_text_atomic
from bayescellseg.io.dsb import Sample
from bayescellseg.train.config import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """Everything ``fit`` needs from the data.

    Attributes:
        train: Training samples, source by source.
        weights: Sampling probability of each training sample (sums to 1), or None for plain
            round robin (one source, no brightfield share).
        val: Validation samples by source name (a source may have none).
        split: The split document written as ``split.json``.
        provenance: Facts recorded in the model folder (sources, split hash, counts).
    """

    train: list[Sample]
    weights: list[float] | None
    val: dict[str, list[Sample]]
    split: dict[str, Any]
    provenance: dict[str, Any] = field(default_factory=dict)


def specs_of(config: TrainConfig) -> list[SourceSpec]:
    """The config's sources, checked for unique names.

    Raises:
        InputError: no sources, a bad entry or two sources with one name.
    """
    specs = [SourceSpec.from_dict(d) for d in config.sources]
    if not specs:
        raise InputError("training config", "no training data; give data=FOLDER")
    names = [s.name for s in specs]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise InputError(
            "data",
            f"two sources are named {doubled[0]!r}; name them with NAME=FOLDER",
        )
    return specs


def _load_all(specs: Sequence[SourceSpec], config: TrainConfig) -> list[LoadedSource]:
    workers = max(1, min(8, os.cpu_count() or 1))
    loaded = [load_source(s, config.cache_dir, workers) for s in specs]
    problems = [p for src in loaded for p in src.problems]
    for src in loaded:
        for note in src.notes:
            log.info("source %s: %s", src.spec.name, note)
    if problems and not config.skip_bad:
        listing = "\n  ".join(problems)
        raise InputError(
            "training data",
            f"{len(problems)} sample(s) cannot be used; fix them or pass skip_bad=True to train "
            f"on the others:\n  {listing}",
        )
    for p in problems:
        log.warning("skipped: %s", p)
    empty = [src.spec.name for src in loaded if not src.samples]
    if empty:
        raise InputError("training data", f"source {empty[0]!r} has no usable sample")
    return loaded


def _strata(samples: Sequence[Sample]) -> list[str]:
    kinds = ["colour" if is_colour(s.image) else "grey" for s in samples]
    return stratum_keys(kinds, [s.labels.shape for s in samples])


def _split_source(src: LoadedSource, config: TrainConfig) -> dict[str, Any]:
    ids = [s.id for s in src.samples]
    role = src.spec.role
    if role != "split":
        return {"train": ids if role == "train" else [], "val": ids if role == "val" else [],
                "method": f"{role} only"}  # fmt: skip
    bundled = bundled_split_for(ids) if src.groups is None else None
    if bundled is not None:
        return {**bundled, "method": "bundled DSB2018 split (data/splits/dsb2018_stage1.json)"}
    parts = split_one_source(
        src.spec.name, ids, _strata(src.samples), src.groups, config.val_fraction, config.seed
    )
    method = "by group" if src.groups is not None else "stratified by imaging type and size"
    return {**parts, "method": f"{method}, val_fraction {config.val_fraction}, seed {config.seed}"}


def _given_split(path: Path, loaded: Sequence[LoadedSource]) -> dict[str, dict[str, Any]]:
    """Per-source parts from a split file given by the user (either format)."""
    parts = read_source_split(path)
    out: dict[str, dict[str, Any]] = {}
    for src in loaded:
        entry = parts.get(src.spec.name, parts.get(""))
        if entry is None:
            raise InputError(path, f"the split file has no part for source {src.spec.name!r}")
        present = {s.id for s in src.samples}
        missing = [i for i in entry["train"] + entry["val"] if i not in present]
        if missing and "" in parts and len(loaded) == 1:
            raise InputError(
                Path(src.spec.path),
                f"{len(missing)} image IDs of the split {path.name} are missing here "
                f"(e.g. {missing[0]}); is this the split's dataset?",
            )
        keep = [i for i in entry["train"] + entry["val"] if i in present]
        out[src.spec.name] = {
            "train": [i for i in entry["train"] if i in present],
            "val": [i for i in entry["val"] if i in present],
            "method": entry.get("method") or f"given ({path.name})",
        }
        if not keep:
            raise InputError(path, f"no image of source {src.spec.name!r} is in the split file")
    return out


def _within_source(samples: Sequence[Sample], brightfield_share: float | None) -> np.ndarray:
    if brightfield_share is None:
        return np.full(len(samples), 1.0 / len(samples))
    return imaging_type_weights([imaging_type(s.image) for s in samples], brightfield_share)


def _document(
    loaded: Sequence[LoadedSource],
    parts: dict[str, dict[str, Any]],
    shares: dict[str, float],
    config: TrainConfig,
) -> dict[str, Any]:
    sources = {}
    for src in loaded:
        name = src.spec.name
        sources[name] = {
            "path": str(Path(src.spec.path).resolve()),
            "role": src.spec.role,
            "labels": str(Path(src.spec.labels).resolve()) if src.spec.labels else None,
            "method": parts[name]["method"],
            "crop_share": round(shares[name], 6),
            "n_train": len(parts[name]["train"]),
            "n_val": len(parts[name]["val"]),
            "train": parts[name]["train"],
            "val": parts[name]["val"],
        }
    return {"format": SPLIT_FORMAT, "seed": config.seed, "val_fraction": config.val_fraction,
            "sources": sources}  # fmt: skip


def _select(src: LoadedSource, ids: Sequence[str]) -> list[Sample]:
    by_id = {s.id: s for s in src.samples}
    return [by_id[i] for i in ids if i in by_id]


def prepare_data(config: TrainConfig, out_dir: Path, resume: bool) -> TrainingData:
    """Read, split and weight the sources of ``config`` and write ``out_dir/split.json``.

    On ``resume`` the split stored in ``out_dir`` is used again.

    Raises:
        InputError: missing folders, bad samples (without ``skip_bad``), a bad split file.
    """
    specs = specs_of(config)
    loaded = _load_all(specs, config)
    stored = out_dir / SPLIT_FILE
    if resume and stored.is_file():
        parts = _given_split(stored, loaded)
    elif config.split is not None:
        parts = _given_split(Path(config.split), loaded)
    else:
        parts = {src.spec.name: _split_source(src, config) for src in loaded}
    n_train = {name: len(p["train"]) for name, p in parts.items()}
    try:
        shares = source_weights(n_train, {s.spec.name: s.spec.weight for s in loaded})
    except ValueError:
        raise InputError("training data", "no source has training images") from None
    train: list[Sample] = []
    weights: list[float] = []
    val: dict[str, list[Sample]] = {}
    for src in loaded:
        name = src.spec.name
        chosen = _select(src, parts[name]["train"])
        val[name] = _select(src, parts[name]["val"])[: config.val_limit]
        if chosen:
            within = _within_source(chosen, config.brightfield_share)
            weights.extend((shares[name] * within).tolist())
            train.extend(chosen)
        if src.spec.role != "train" and not val[name]:
            log.info("source %s: %d image(s), none left for validation", name, len(src.samples))
        log.info(
            "source %s: %d train, %d val images, %.1f %% of the crops (%s)",
            name, len(chosen), len(val[name]), 100 * shares[name], parts[name]["method"],
        )  # fmt: skip
    document = _document(loaded, parts, shares, config)
    text = json.dumps(document, indent=1) + "\n"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(stored, text, overwrite=True)
    plain = len(loaded) == 1 and config.brightfield_share is None
    given = config.split is not None and not (resume and stored.is_file())
    provenance = {
        "data_root": str(Path(loaded[0].spec.path).resolve()),
        "sources": {
            n: {k: v for k, v in e.items() if k not in ("train", "val")}
            for n, e in document["sources"].items()
        },  # fmt: skip
        "split_file": Path(config.split).name if given else SPLIT_FILE,
        # the folder's own split.json (what evaluate and calibrate read back), and the file
        # the split was given as, which a user may pass as --split-file instead
        "split_sha256": hashlib.sha256(text.encode()).hexdigest(),
        **(
            {"split_given_sha256": hashlib.sha256(Path(config.split).read_bytes()).hexdigest()}
            if given
            else {}
        ),
        "n_train_images": len(train),
        "val_ids": [s.id for samples in val.values() for s in samples],
    }
    return TrainingData(train, None if plain else weights, val, document, provenance)
