"""Deterministic, stratified train/validation split of a set of image IDs.

The bundled split of DSB2018 stage1_train (``splits/dsb2018_stage1.json``) is made by
``experiments/make_split.py`` with :func:`make_split`, stratified by imaging type (grey
fluorescence vs colour brightfield / H&E) and image size (rare sizes grouped into
``other-small`` / ``other-large``).
"""

from __future__ import annotations

import json
import math
import zlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bayescellseg.errors import InputError

DEFAULT_SPLIT = Path(__file__).resolve().parent / "splits" / "dsb2018_stage1.json"


def stratum_keys(
    kinds: Sequence[str],
    shapes: Sequence[tuple[int, int]],
    min_count: int = 10,
    large_area: int = 512 * 512,
) -> list[str]:
    """Stratum key ``"<kind>/<H>x<W>"`` per image, grouping rare sizes.

    A (kind, size) combination seen fewer than ``min_count`` times is folded into
    ``"<kind>/other-small"`` or ``"<kind>/other-large"`` (area below / at least ``large_area``),
    so that every stratum is large enough to be split proportionally.

    Args:
        kinds: Imaging type of each image (e.g. ``"grey"`` or ``"colour"``).
        shapes: ``(height, width)`` of each image, same order as ``kinds``.
        min_count: Smallest number of images a size needs to form its own stratum.
        large_area: Pixel count from which a rare size counts as large.

    Returns:
        One key per image, in input order.
    """
    if len(kinds) != len(shapes):
        raise ValueError(f"kinds and shapes differ in length ({len(kinds)} vs {len(shapes)})")
    exact = [f"{k}/{h}x{w}" for k, (h, w) in zip(kinds, shapes, strict=True)]
    counts = Counter(exact)
    keys = []
    for key, kind, (h, w) in zip(exact, kinds, shapes, strict=True):
        if counts[key] >= min_count:
            keys.append(key)
        else:
            keys.append(f"{kind}/other-{'large' if h * w >= large_area else 'small'}")
    return keys


def _val_counts(sizes: dict[str, int], val_fraction: float) -> dict[str, int]:
    """Largest-remainder apportionment: the total is ``round(N * f)``, each stratum within 1."""
    exact = {k: n * val_fraction for k, n in sizes.items()}
    counts = {k: math.floor(v) for k, v in exact.items()}
    total = math.floor(sum(sizes.values()) * val_fraction + 0.5)
    order = sorted(exact, key=lambda k: (-(exact[k] - counts[k]), k))
    for k in order[: max(0, total - sum(counts.values()))]:
        counts[k] += 1
    return counts


def make_split(
    ids: Sequence[str],
    strata_keys: Sequence[str],
    val_fraction: float = 0.2,
    seed: int = 0,
) -> dict[str, Any]:
    """Split ``ids`` into train and validation sets, proportionally within every stratum.

    The number of validation images per stratum is ``n * val_fraction`` rounded by the
    largest-remainder method (the total is ``round(len(ids) * val_fraction)`` and every
    stratum is within one image of its exact share). Within a stratum the IDs are sorted and
    shuffled by a generator seeded from ``(seed, crc32(stratum))``, so the result depends only on
    the inputs (not on their order) and a stratum's split does not change when others change.

    Args:
        ids: Unique image IDs.
        strata_keys: Stratum of each ID (same order).
        val_fraction: Fraction of images for validation, in [0, 1].
        seed: Random seed.

    Returns:
        ``{"seed", "val_fraction", "strata": {key: {"n", "train", "val"}}, "train": [...],
        "val": [...]}`` with sorted ID lists.
    """
    if len(ids) != len(strata_keys):
        raise ValueError(f"ids and strata_keys differ in length ({len(ids)} vs {len(strata_keys)})")
    if len(set(ids)) != len(ids):
        raise ValueError("ids contain duplicates")
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    members: dict[str, list[str]] = {}
    for sample_id, key in zip(ids, strata_keys, strict=True):
        members.setdefault(key, []).append(sample_id)
    n_val = _val_counts({k: len(v) for k, v in members.items()}, val_fraction)
    train: list[str] = []
    val: list[str] = []
    strata: dict[str, dict[str, int]] = {}
    for key in sorted(members):
        group = sorted(members[key])
        rng = np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])
        order = rng.permutation(len(group))
        chosen = [group[i] for i in order[: n_val[key]]]
        val.extend(chosen)
        train.extend(sorted(set(group) - set(chosen)))
        strata[key] = {"n": len(group), "train": len(group) - n_val[key], "val": n_val[key]}
    return {
        "seed": seed,
        "val_fraction": val_fraction,
        "strata": strata,
        "train": sorted(train),
        "val": sorted(val),
    }


def load_split(path: str | Path | None = None) -> dict[str, list[str]]:
    """Read a split file.

    Args:
        path: JSON file written by ``experiments/make_split.py``; None = the bundled DSB2018
            stage1_train split.

    Returns:
        ``{"train": [...], "val": [...]}``.

    Raises:
        InputError: The file is missing, not JSON, or lacks disjoint ``train`` / ``val`` lists.
    """
    path = Path(path) if path is not None else DEFAULT_SPLIT
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "split file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(path, f"cannot read split file as JSON ({err})") from None
    if not isinstance(data, dict):
        raise InputError(path, "split file must hold a JSON object with 'train' and 'val' lists")
    result: dict[str, list[str]] = {}
    for part in ("train", "val"):
        ids = data.get(part)
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise InputError(path, f"split file needs a '{part}' list of image IDs")
        result[part] = list(ids)
    overlap = set(result["train"]) & set(result["val"])
    if overlap:
        raise InputError(path, f"{len(overlap)} IDs are in both train and val, e.g. {min(overlap)}")
    return result


def make_group_split(
    ids: Sequence[str], groups: dict[str, str], val_fraction: float, seed: int, salt: str = ""
) -> dict[str, list[str]]:
    """Split whole groups (patients, slides) so that no group has images on both sides.

    Groups are shuffled by a generator seeded from ``(seed, crc32(salt))`` (the order of
    ``ids`` does not matter) and taken into validation one by one whenever that brings the
    validation count closer to ``round(len(ids) * val_fraction)``. At least one group stays
    for training unless ``val_fraction`` is 1.

    Returns:
        ``{"train": [...], "val": [...]}``, sorted.
    """
    members: dict[str, list[str]] = {}
    for sample_id in sorted(ids):
        members.setdefault(groups[sample_id], []).append(sample_id)
    names = sorted(members)
    rng = np.random.default_rng([seed, zlib.crc32(salt.encode("utf-8"))])
    order = [names[j] for j in rng.permutation(len(names))]
    target = math.floor(len(ids) * val_fraction + 0.5)
    val: list[str] = []
    taken = 0
    for name in order:
        if val_fraction < 1.0 and taken == len(names) - 1:
            break
        size = len(members[name])
        if abs(len(val) + size - target) < abs(len(val) - target):
            val.extend(members[name])
            taken += 1
    return {"train": sorted(set(ids) - set(val)), "val": sorted(val)}


def split_one_source(
    name: str,
    ids: Sequence[str],
    strata: Sequence[str],
    groups: dict[str, str] | None,
    val_fraction: float,
    seed: int,
) -> dict[str, list[str]]:
    """Train/validation split of one source: by group when grouped, else stratified.

    A source of one image gets no validation image; otherwise at least one image trains.
    """
    if len(ids) < 2:
        return {"train": sorted(ids), "val": []}
    if groups is not None and len(set(groups[i] for i in ids)) < len(ids):
        return make_group_split(ids, groups, val_fraction, seed, salt=name)
    split = make_split(ids, [f"{name}:{k}" for k in strata], val_fraction, seed)
    if not split["train"]:  # keep one image for training
        first = split["val"][0]
        split = {"train": [first], "val": split["val"][1:]}
    return {"train": split["train"], "val": split["val"]}


def bundled_split_for(ids: Sequence[str]) -> dict[str, list[str]] | None:
    """The bundled DSB2018 split restricted to ``ids``, when ``ids`` are DSB2018 stage1_train.

    That is: every id is in the bundled split and they cover at least 90 % of it (the corrected
    labels drop 6 of its 670 images). None otherwise.
    """
    bundled = load_split(DEFAULT_SPLIT)
    known = set(bundled["train"]) | set(bundled["val"])
    present = set(ids)
    if not present or not present <= known or len(present) < 0.9 * len(known):
        return None
    return {part: [i for i in bundled[part] if i in present] for part in ("train", "val")}


SPLIT_FILE = "split.json"  # the split of a training run, written into its model folder
SPLIT_FORMAT = 2


def read_source_split(path: str | Path) -> dict[str, dict[str, Any]]:
    """The per-source split of a split file, either format.

    A file written by training (``format`` 2) holds ``"sources": {name: {"path", "role",
    "train", "val", ...}}``; a plain ``{"train", "val"}`` file (format 1, e.g. the bundled
    DSB2018 split) becomes one source named ``""`` without a path.

    Raises:
        InputError: unreadable file, or lists that are not disjoint lists of IDs.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "split file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise InputError(path, f"cannot read split file as JSON ({err})") from None
    if not isinstance(data, dict) or "sources" not in data:
        return {"": {"path": None, "role": "split", **load_split(path)}}
    parts = data["sources"]
    if not isinstance(parts, dict):
        raise InputError(path, "'sources' must map source names to their split")
    out: dict[str, dict[str, Any]] = {}
    for name, entry in parts.items():
        lists = {p: entry.get(p) if isinstance(entry, dict) else None for p in ("train", "val")}
        if not all(
            isinstance(v, list) and all(isinstance(i, str) for i in v) for v in lists.values()
        ):
            raise InputError(path, f"source {name!r} needs 'train' and 'val' lists of image IDs")
        if set(lists["train"]) & set(lists["val"]):
            raise InputError(path, f"source {name!r} has IDs in both train and val")
        out[str(name)] = {**entry, "train": list(lists["train"]), "val": list(lists["val"])}
    return out


def split_ids_for(split_path: str | Path, data_root: str | Path, part: str) -> list[str]:
    """IDs of ``part`` (``"train"`` / ``"val"``) for the dataset folder ``data_root``.

    A training run's split names the folder of every source; the source whose folder is
    ``data_root`` is used (a format-1 file applies to any folder).

    Raises:
        InputError: unknown part, or the split does not cover this folder.
    """
    if part not in ("train", "val"):
        raise InputError(split_path, f"unknown split part {part!r}; use 'train' or 'val'")
    parts = read_source_split(split_path)
    if "" in parts:
        return list(parts[""][part])
    root = Path(data_root).resolve()
    for entry in parts.values():
        if entry.get("path") and Path(entry["path"]).resolve() == root:
            return list(entry[part])
    known = ", ".join(f"{n} ({e.get('path')})" for n, e in parts.items())
    raise InputError(
        data_root, f"this folder is not a source of the split {Path(split_path).name}: {known}"
    )
