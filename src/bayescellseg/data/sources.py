"""Training sources: annotated dataset folders, each read in its own layout.

A *source* is one dataset folder (DSB2018 layout, ``images/`` + ``labels/``, or ``name.*`` +
``name_labels.*``; see :mod:`bayescellseg.io.datasets`). Its name (the folder name unless given
as ``NAME=DIR``) appears in logs, the split file and reports. A source has a role:

- ``"split"``: its images are split into training and validation images;
- ``"train"``: every image trains;
- ``"val"``: every image validates (nothing of it is trained on).

Its labels may come from another folder with the same ids (``labels``, e.g. the corrected
DSB2018 labels), and a table (``groups``: CSV/TSV with an id column and a group column) keeps a
group of images (a patient, a slide) on one side of the split. Without ``groups``, a folder's
own ``index.tsv`` with a ``patient`` column is used (as TNBC ships it).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bayescellseg.data.dataset import load_samples
from bayescellseg.data.split import DEFAULT_SPLIT, SPLIT_FILE, read_source_split, split_ids_for
from bayescellseg.errors import InputError
from bayescellseg.io.channels import for_annotated_data
from bayescellseg.io.datasets import SampleFiles, SampleRef, find_samples
from bayescellseg.io.dsb import Sample
from bayescellseg.io.folders import read_folder_sample
from bayescellseg.settings import from_user_dict

ROLES = ("split", "train", "val")
GROUP_COLUMNS = ("group", "patient")  # looked for, in this order, when no column is named


@dataclass(frozen=True)
class SourceSpec:
    """One training source as the user names it (JSON-serialisable).

    Attributes:
        name: Short name used in logs, ``split.json`` and reports.
        path: Dataset folder.
        role: ``"split"``, ``"train"`` (train only) or ``"val"`` (validation only).
        labels: Folder of label images ``<id>.<tif|png>`` that replace the source's own labels.
        groups: CSV/TSV table with an ``id`` column and a group column; ``None`` = the folder's
            ``index.tsv`` when it has a ``patient`` column, else every image is its own group.
        group_column: Column of ``groups`` holding the group (default: ``group`` or ``patient``).
        weight: Share of the training crops drawn from this source (relative to the others);
            ``None`` = the default balance (see :func:`source_weights`).
    """

    name: str
    path: str
    role: str = "split"
    labels: str | None = None
    groups: str | None = None
    group_column: str | None = None
    weight: float | None = None

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name != self.name.strip():
            raise ValueError(f"source name {self.name!r} must be non-empty, without '/'")
        if self.role not in ROLES:
            raise ValueError(f"source role must be one of {', '.join(ROLES)}, got {self.role!r}")
        if self.weight is not None and not self.weight > 0:
            raise ValueError(f"source weight must be > 0, got {self.weight}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str | Path = "training config") -> SourceSpec:
        """Build from a dict (``training_config.json``'s ``sources`` entries)."""
        return from_user_dict(cls, data, source, "source setting")


def parse_source(text: str | Path, role: str = "split") -> SourceSpec:
    """``"DIR"`` or ``"NAME=DIR"`` as given on the command line.

    Raises:
        InputError: an empty name or path.
    """
    text = str(text)
    name, sep, path = text.partition("=")
    if not sep or "/" in name or not name:
        name, path = Path(text.rstrip("/")).name or text, text
    if not path:
        raise InputError(text, "empty dataset path")
    try:
        return SourceSpec(name=name, path=path, role=role)
    except ValueError as err:
        raise InputError(text, str(err)) from None


@dataclass
class LoadedSource:
    """A source's readable samples and what went wrong with the others.

    Attributes:
        spec: The source.
        samples: Samples read without error, sorted by id.
        problems: ``"<file>: <problem>"`` for every sample that could not be used.
        groups: Group of each sample id (every id present), or None when ungrouped.
        notes: Facts worth telling the user (labels dropped, groups found, ...).
    """

    spec: SourceSpec
    samples: list[Sample]
    problems: list[str] = field(default_factory=list)
    groups: dict[str, str] | None = None
    notes: list[str] = field(default_factory=list)


def list_pairs(spec: SourceSpec, root: Path, notes: list[str]) -> list[SampleFiles]:
    """``(id, image, label file or None)`` for every image of the source that has labels.

    The discovery is :func:`bayescellseg.io.datasets.find_samples`. The label file is None for a
    DSB sample folder read with its own masks (``image`` is then the sample folder); images
    without a label image are left out and counted in ``notes`` (appended to).
    """
    override = Path(spec.labels) if spec.labels is not None else None
    if override is not None and not override.is_dir():
        raise InputError(override, f"label folder of source {spec.name!r} not found")
    files = find_samples(root, override)
    if files.unlabelled:
        where = override if override is not None else root
        notes.append(
            f"{len(files.unlabelled)} images have no label image in {where} and are left out"
        )
    return files.samples


def _load_one(spec: SourceSpec, root: Path, item: SampleFiles) -> Sample:
    sample_id, image, labels = item
    if labels is None:  # a DSB sample folder: decoded once, then read from the cache
        sample = load_samples(root, [sample_id], workers=1)[0]
    else:
        sample = dataclasses.replace(read_folder_sample(image, labels), id=sample_id)
    if not sample.labels.any():
        raise InputError(labels or image, "label image holds no nuclei (all background)")
    return sample


def _load_all(
    spec: SourceSpec,
    root: Path,
    items: list[SampleFiles],
    cache_dir: str | Path | None,
    workers: int,
) -> tuple[list[Sample], list[str]]:
    """Read every item; a bad one becomes a problem line instead of stopping the rest."""
    if items and all(lab is None for _, _, lab in items):
        try:  # the cached, parallel DSB reader: decodes each folder of masks once
            samples = load_samples(root, [i for i, _, _ in items], cache_dir, workers)
            empty = [s for s in samples if not s.labels.any()]
            if not empty:
                return samples, []
        except InputError:
            pass  # read one by one below to name every bad sample

    def attempt(item: SampleFiles) -> Sample | str:
        try:
            return _load_one(spec, root, item)
        except InputError as err:
            return str(for_annotated_data(err))

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(attempt, items))
    return [r for r in results if isinstance(r, Sample)], [r for r in results if isinstance(r, str)]


def read_groups(
    table: str | Path, column: str | None, ids: Sequence[str]
) -> tuple[dict[str, str], str]:
    """Group of every id from a CSV/TSV table (ids missing from it form their own groups).

    Args:
        table: CSV or TSV file with a header; the id column is ``id`` (or the first column).
        column: Group column; None = the first of ``group`` / ``patient`` present.
        ids: Sample ids that need a group.

    Returns:
        ``({id: group}, column used)``.

    Raises:
        InputError: the file is unreadable or has no such column.
    """
    path = Path(table)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot read the group table ({err})") from None
    dialect = "excel-tab" if "\t" in text.splitlines()[0] else "excel" if text else "excel"
    rows = list(csv.DictReader(text.splitlines(), dialect=dialect))
    header = list(rows[0]) if rows else []
    wanted = [column] if column else [c for c in GROUP_COLUMNS if c in header]
    if not header or not wanted or wanted[0] not in header:
        raise InputError(
            path, f"group table needs a column {column or ' or '.join(GROUP_COLUMNS)}; has {header}"
        )
    id_column = "id" if "id" in header else header[0]
    by_id = {str(r[id_column]): str(r[wanted[0]]) for r in rows}
    return {i: by_id.get(i, f"__own__{i}") for i in ids}, wanted[0]


def _groups(
    spec: SourceSpec, root: Path, samples: list[Sample], notes: list[str]
) -> dict[str, str] | None:
    ids = [s.id for s in samples]
    table = Path(spec.groups) if spec.groups else root / "index.tsv"
    if spec.groups is None:
        if not table.is_file():
            return None
        header = table.read_text(encoding="utf-8-sig").splitlines()[:1]
        if not header or not set(header[0].split("\t")) & set(GROUP_COLUMNS):
            return None
    groups, column = read_groups(table, spec.group_column, ids)
    n_groups = len(set(groups.values()))
    notes.append(f"images grouped by {column!r} of {table.name} ({n_groups} groups)")
    return groups


def load_source(
    spec: SourceSpec, cache_dir: str | Path | None = None, workers: int = 2
) -> LoadedSource:
    """Read every sample of a source, collecting the bad ones as problems.

    Args:
        spec: The source.
        cache_dir: Cache of decoded DSB samples (see :func:`bayescellseg.data.dataset.load_samples`).
        workers: Parallel readers.

    Returns:
        The readable samples (sorted by id), the problems, the groups and notes.

    Raises:
        InputError: the folder is missing, matches no layout, or holds no image with labels.
    """
    root = Path(spec.path)
    notes: list[str] = []
    items = list_pairs(spec, root, notes)
    if not items:
        raise InputError(root, f"source {spec.name!r} holds no image with a label image")
    samples, problems = _load_all(spec, root, items, cache_dir, workers)
    loaded = LoadedSource(spec, sorted(samples, key=lambda s: s.id), problems, None, notes)
    loaded.groups = _groups(spec, root, loaded.samples, notes) if loaded.samples else None
    return loaded


def source_weights(
    n_train: dict[str, int], explicit: dict[str, float | None] | None = None
) -> dict[str, float]:
    """Share of the training crops per source, summing to 1.

    An explicit weight is the source's share of the crops (``tnbc=0.3``: 30 %); the rest is
    shared by the other sources in proportion to ``sqrt(n_train)`` (the default balance: a
    30-image source gets 18 % beside a 600-image one, not 5 %). When the explicit shares cover
    every source, or sum to 1 or more, they are taken as relative weights. Sources without
    training images get 0.

    Raises:
        ValueError: every source has 0 training images.
    """
    explicit = {k: v for k, v in (explicit or {}).items() if v and n_train.get(k, 0) > 0}
    active = {k: n for k, n in n_train.items() if n > 0}
    if not active:
        raise ValueError("no source has training images")
    rest = {k: float(np.sqrt(n)) for k, n in active.items() if k not in explicit}
    given = float(sum(explicit.values()))
    if not rest or given >= 1.0:
        weights = {k: float(explicit.get(k, 0.0)) for k in active}
    else:
        total_rest = sum(rest.values())
        weights = {
            k: float(explicit[k]) if k in explicit else (1.0 - given) * rest[k] / total_rest
            for k in active
        }
    total = sum(weights.values())
    return {k: (weights.get(k, 0.0) / total) for k in n_train}


def _named_values(pairs: Sequence[str], what: str, names: set[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for text in pairs:
        name, sep, value = text.partition("=")
        if not sep or not value:
            raise InputError(what, f"{text!r} must be given as NAME=VALUE")
        if name not in names:
            raise InputError(
                what, f"{text!r}: no source is named {name!r}; sources: {sorted(names)}"
            )
        out[name] = value
    return out


def build_sources(
    data: Sequence[str | Path] = (),
    val_data: Sequence[str | Path] = (),
    train_data: Sequence[str | Path] = (),
    labels: Sequence[str] = (),
    groups: Sequence[str] = (),
    weights: Sequence[str] = (),
) -> list[SourceSpec]:
    """Sources from command-line values.

    Args:
        data: ``DIR`` or ``NAME=DIR``: split into training and validation images.
        val_data: Validation-only folders.
        train_data: Training-only folders.
        labels: ``NAME=DIR``: take the source's labels from ``DIR`` (same ids).
        groups: ``NAME=FILE`` or ``NAME=FILE:COLUMN``: keep groups on one side of the split.
        weights: ``NAME=SHARE``: the source's share of the training crops.

    Raises:
        InputError: a malformed value or one that names no source.
    """
    specs = [parse_source(d, "split") for d in data]
    specs += [parse_source(d, "val") for d in val_data]
    specs += [parse_source(d, "train") for d in train_data]
    names = {s.name for s in specs}
    by_label = _named_values(labels, "labels", names)
    by_group = _named_values(groups, "groups", names)
    by_weight = _named_values(weights, "weights", names)
    out = []
    for spec in specs:
        table, _, column = by_group.get(spec.name, "").partition(":")
        try:
            weight = float(by_weight[spec.name]) if spec.name in by_weight else None
            out.append(
                dataclasses.replace(
                    spec,
                    labels=by_label.get(spec.name),
                    groups=table or None,
                    group_column=column or None,
                    weight=weight,
                )
            )
        except ValueError as err:
            raise InputError(f"source {spec.name}", str(err)) from None
    return out


def sample_refs(spec: SourceSpec) -> list[SampleRef]:
    """Lazy references to every image of a source that has a label image, sorted by id."""
    root = Path(spec.path)
    items = list_pairs(spec, root, [])
    return [SampleRef(item[0], partial(_load_one, spec, root, item)) for item in items]


def split_refs(
    model_dir: str | Path | None,
    data_root: str | Path,
    part: str,
    split_file: str | Path | None = None,
    training: dict[str, Any] | None = None,
) -> list[SampleRef]:
    """The images of ``data_root`` in the ``part`` of a model's split, with the labels it used.

    The split is ``split_file``, else the model folder's ``split.json``, else the bundled
    DSB2018 split. When the split records a label folder for this source (e.g. corrected
    labels), the references read those labels.

    Args:
        model_dir: Model folder (None: no model split).
        data_root: Dataset folder.
        part: ``"train"`` or ``"val"``.
        split_file: Explicit split file.
        training: The model's ``training`` extras: a recorded ``split_sha256`` must match the
            split file, else its validation images could be training images.

    Raises:
        InputError: another split than the model's, a folder the split does not cover, IDs of
            the split missing from the folder.
    """
    own = Path(model_dir) / SPLIT_FILE if model_dir is not None else None
    if split_file is not None:
        path = Path(split_file)
    else:
        path = own if own is not None and own.is_file() else DEFAULT_SPLIT
    recorded = {(training or {}).get(k) for k in ("split_sha256", "split_given_sha256")} - {None}
    if recorded and hashlib.sha256(path.read_bytes()).hexdigest() not in recorded:
        raise InputError(
            path,
            f"the model was trained with another split ({(training or {}).get('split_file')}); "
            "its validation images could be training images here. Pass that split file.",
        )
    ids = split_ids_for(path, data_root, part)
    entry = next(
        (e for e in read_source_split(path).values()
         if e.get("path") and Path(e["path"]).resolve() == Path(data_root).resolve()),
        {},
    )  # fmt: skip
    spec = SourceSpec(name="data", path=str(data_root), labels=entry.get("labels"))
    refs = {r.id: r for r in sample_refs(spec)}
    missing = [i for i in ids if i not in refs]
    if missing:
        raise InputError(
            data_root,
            f"{len(missing)} image IDs of the {part} split are missing, e.g. {missing[0]}; "
            "is this the dataset the model was trained on?",
        )
    return [refs[i] for i in sorted(ids)]
