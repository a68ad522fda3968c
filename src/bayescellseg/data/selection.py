"""Which labelled images an evaluation or a calibration runs on: one rule for both.

Either every image of a dataset folder (sorted by ID), or one part (``"val"`` / ``"train"``)
of the split the model was trained with (:func:`bayescellseg.data.sources.split_refs`: the
model folder's ``split.json``, else the bundled DSB2018 split; a split whose hash differs from
the one the model recorded is refused), optionally cut to the first ``limit`` images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bayescellseg.data.sources import split_refs
from bayescellseg.errors import InputError
from bayescellseg.io.datasets import SampleRef, list_samples

SPLIT_PARTS = ("val", "train")


def select_refs(
    data_root: str | Path,
    split: str | None,
    model_dir: str | Path | None,
    training: dict[str, Any] | None,
    split_file: str | Path | None = None,
    limit: int | None = None,
) -> list[SampleRef]:
    """The labelled images to score or calibrate on, sorted by ID.

    Args:
        data_root: A dataset folder (any supported layout).
        split: ``"val"`` or ``"train"`` of the model's split; None: every image.
        model_dir: The model folder (for its ``split.json``), None for none.
        training: The model's ``training`` extras (its recorded split hash).
        split_file: An explicit split file instead of the model's.
        limit: Keep only the first N images (>= 1).

    Returns:
        Lazy references to the images.

    Raises:
        InputError: An unknown split part, a bad limit, another split than the model's, a
            folder the split does not cover, or no images.
    """
    if limit is not None and limit < 1:
        raise InputError("limit", f"must be at least 1, got {limit}")
    if split is None:
        refs = sorted(list_samples(Path(data_root)), key=lambda r: r.id)
    elif split in SPLIT_PARTS:
        refs = split_refs(model_dir, data_root, split, split_file, training or {})
    else:
        raise InputError("split", f"unknown split {split!r}; use 'val' or 'train'")
    if limit is not None:
        refs = refs[:limit]
    if not refs:
        raise InputError(data_root, "no labelled images to use")
    return refs
