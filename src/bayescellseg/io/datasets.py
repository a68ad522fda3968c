"""One entry point for the supported dataset layouts.

Supported layouts:

- ``"dsb"``: the Kaggle DSB2018 layout, ``<root>/<id>/images/<id>.png`` +
  ``<root>/<id>/masks/*.png`` (one PNG per nucleus); see :mod:`bayescellseg.io.dsb`.
- ``"folder"``: images and instance label images, ``name.*`` + ``name_labels.*`` side by side, or
  ``images/name.*`` + ``labels/name.*``; see :mod:`bayescellseg.io.folders`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

from bayescellseg.errors import InputError
from bayescellseg.io.dsb import Sample, is_dsb_sample_dir, list_dsb_ids, read_dsb_sample
from bayescellseg.io.folders import (
    FOLDER_RULE,
    find_image_label_pairs,
    read_folder_sample,
    scan_folder,
)

Layout = Literal["dsb", "folder"]

SUPPORTED_LAYOUTS = (
    "supported layouts: DSB2018 (<root>/<id>/images/<id>.png + <root>/<id>/masks/*.png, one PNG "
    f"per nucleus) or a folder of images with label images ({FOLDER_RULE})"
)


@dataclass(frozen=True)
class SampleRef:
    """A sample that is read only when needed.

    Attributes:
        id: Sample identifier (DSB id or image file stem).
        load: Reads the sample; raises InputError for bad files.
    """

    id: str
    load: Callable[[], Sample]


def _has_dsb_children(root: Path) -> bool:
    return any(p.is_dir() and is_dsb_sample_dir(p) for p in root.iterdir())


def detect_layout(path: str | Path) -> Layout:
    """Tell which supported layout a dataset folder uses.

    Raises:
        InputError: the folder is missing or matches no supported layout.
    """
    root = Path(path)
    if not root.is_dir():
        raise InputError(root, "dataset folder not found" if not root.exists() else "not a folder")
    if _has_dsb_children(root):
        return "dsb"
    scan = scan_folder(root)
    if scan.pairs or scan.unlabelled or scan.orphan_labels:
        return "folder"
    hint = ""
    if (root / "images").is_dir() and (root / "masks").is_dir():
        hint = " (this looks like a single DSB sample folder: give the folder that contains it)"
    raise InputError(root, f"no dataset found{hint}; {SUPPORTED_LAYOUTS}")


def list_samples(path: str | Path) -> list[SampleRef]:
    """All samples of a dataset folder, sorted by id, not yet read.

    Raises:
        InputError: unknown layout, no samples, or ambiguous file names.
    """
    root = Path(path)
    if detect_layout(root) == "dsb":
        return [SampleRef(i, partial(read_dsb_sample, root, i)) for i in list_dsb_ids(root)]
    return [
        SampleRef(image.stem, partial(read_folder_sample, image, label))
        for image, label in find_image_label_pairs(root)
    ]
