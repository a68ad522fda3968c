"""One entry point for the supported dataset layouts.

Supported layouts:

- ``"dsb"``: the Kaggle DSB2018 layout, ``<root>/<id>/images/<id>.png`` +
  ``<root>/<id>/masks/*.png`` (one PNG per nucleus); see :mod:`bayescellseg.io.dsb`.
- ``"folder"``: images and instance label images, ``name.*`` + ``name_labels.*`` side by side, or
  ``images/name.*`` + ``labels/name.*``; see :mod:`bayescellseg.io.folders`.

This module is the one owner of dataset discovery: :func:`find_samples` says which samples a
dataset folder holds and where their files are (optionally with the labels taken from another
folder), and every reader of annotated datasets (:func:`list_samples`, the training sources of
:mod:`bayescellseg.data.sources`, evaluation and calibration) starts from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal, NamedTuple

from bayescellseg.errors import InputError
from bayescellseg.io.dsb import Sample, is_dsb_sample_dir, list_dsb_ids, read_dsb_sample
from bayescellseg.io.dsb import image_path as dsb_image_path
from bayescellseg.io.folders import FOLDER_RULE, LABEL_TAG, read_folder_sample, scan_folder
from bayescellseg.io.images import LABEL_SUFFIXES

Layout = Literal["dsb", "folder"]

SUPPORTED_LAYOUTS = (
    "supported layouts: DSB2018 (<root>/<id>/images/<id>.png + <root>/<id>/masks/*.png, one PNG "
    f"per nucleus) or a folder of images with label images ({FOLDER_RULE})"
)


class SampleFiles(NamedTuple):
    """Where one annotated sample's files are.

    Attributes:
        id: Sample identifier (DSB id or image file stem).
        image: The image file; for a DSB sample read with its own masks (``labels`` None), the
            sample folder ``<root>/<id>``.
        labels: The instance label image, or None for a DSB sample's ``masks/`` folder.
    """

    id: str
    image: Path
    labels: Path | None


@dataclass(frozen=True)
class DatasetFiles:
    """The samples of a dataset folder.

    Attributes:
        root: The dataset folder.
        layout: ``"dsb"`` or ``"folder"``.
        samples: Samples with labels, sorted by id.
        unlabelled: Ids of the images left out because they have no label image.
    """

    root: Path
    layout: Layout
    samples: list[SampleFiles]
    unlabelled: list[str]


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


def label_file(folder: Path, sample_id: str) -> Path | None:
    """``<folder>/<id>.<png|tif|tiff>`` or ``<folder>/<id>_labels.*``, the first that exists."""
    for suffix in LABEL_SUFFIXES:
        for name in (f"{sample_id}{suffix}", f"{sample_id}{LABEL_TAG}{suffix}"):
            if (folder / name).is_file():
                return folder / name
    return None


def find_samples(path: str | Path, labels: str | Path | None = None) -> DatasetFiles:
    """The annotated samples of a dataset folder and where their files are.

    Args:
        path: A DSB2018-layout folder or a folder of images with label images.
        labels: A folder of label images ``<id>.<png|tif|tiff>`` (or ``<id>_labels.*``) that
            replace the dataset's own labels (e.g. corrected labels); None = its own.

    Returns:
        The samples (sorted by id) and the ids left out for want of a label image.

    Raises:
        InputError: the folder is missing or matches no layout, the label folder is missing, or
            two files share a name.
    """
    root = Path(path)
    override = Path(labels) if labels is not None else None
    if override is not None and not override.is_dir():
        raise InputError(override, "label folder not found")
    layout = detect_layout(root)
    if layout == "dsb":
        ids = list_dsb_ids(root)
        if override is None:
            return DatasetFiles(root, layout, [SampleFiles(i, root / i, None) for i in ids], [])
        found = [SampleFiles(i, dsb_image_path(root / i, i), label_file(override, i)) for i in ids]
    else:
        scan = scan_folder(root)
        if scan.problems:
            raise InputError(root, "ambiguous file names: " + "; ".join(scan.problems))
        found = [SampleFiles(img.stem, img, lab) for img, lab in scan.pairs]
        if override is not None:
            images = sorted([img for img, _ in scan.pairs] + scan.unlabelled)
            found = [SampleFiles(p.stem, p, label_file(override, p.stem)) for p in images]
        else:
            found += [SampleFiles(p.stem, p, None) for p in scan.unlabelled]
            found.sort(key=lambda f: f.image)
    unlabelled = [f.id for f in found if f.labels is None]
    return DatasetFiles(root, layout, [f for f in found if f.labels is not None], unlabelled)


def list_samples(path: str | Path) -> list[SampleRef]:
    """All samples of a dataset folder, sorted by id, not yet read.

    Raises:
        InputError: unknown layout, no samples, or ambiguous file names.
    """
    files = find_samples(path)
    if files.layout == "dsb":
        return [SampleRef(f.id, partial(read_dsb_sample, files.root, f.id)) for f in files.samples]
    if not files.samples:
        raise InputError(files.root, f"no image/label pairs found; expected {FOLDER_RULE}")
    return [SampleRef(f.id, partial(read_folder_sample, f.image, f.labels)) for f in files.samples]
