"""Plain folders of images and instance label images.

Matching rule (either form, in one dataset folder):

1. **Side by side**: ``name.<png|tif|tiff|jpg|jpeg>`` and its labels ``name_labels.<png|tif|tiff>``
   in the same folder, e.g. ``cells01.tif`` + ``cells01_labels.tif``.
2. **Two sub-folders**: ``images/name.<png|tif|tiff|jpg|jpeg>`` and ``labels/name.<png|tif|tiff>``
   (the same ``name``; ``labels/name_labels.*`` is accepted too), used when the dataset folder
   holds both an ``images/`` and a ``labels/`` folder.

Label images hold one integer per nucleus (0 = background; 8, 16 or 32-bit PNG/TIFF, or a palette
PNG). File-name suffixes are matched case-insensitively and hidden files (``.name``) are ignored.
An image without a label image is skipped for training and listed as a problem by
``bayescellseg data check``; two files with the same ``name`` (e.g. ``a.png`` and ``a.tif``) are
an error because it is unclear which one is meant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bayescellseg.errors import InputError
from bayescellseg.io.dsb import Sample
from bayescellseg.io.images import IMAGE_SUFFIXES, LABEL_SUFFIXES, read_image, read_label_image

LABEL_TAG = "_labels"
FOLDER_RULE = (
    "name.<png|tif|tiff|jpg|jpeg> + name_labels.<png|tif|tiff> in one folder, "
    "or images/name.* + labels/name.*"
)


@dataclass(frozen=True)
class FolderScan:
    """What a dataset folder holds under the matching rule.

    Attributes:
        pairs: (image, label image) pairs, sorted by image name.
        unlabelled: Images without a label image.
        orphan_labels: Label images without an image.
        problems: Ambiguous names ("<path>: <problem>" strings).
    """

    pairs: list[tuple[Path, Path]] = field(default_factory=list)
    unlabelled: list[Path] = field(default_factory=list)
    orphan_labels: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes
    )


def _by_name(paths: list[Path], problems: list[str], strip: str = "") -> dict[str, Path]:
    """Map ``stem`` (minus ``strip`` at its end) to path; duplicate names become problems."""
    out: dict[str, Path] = {}
    for p in paths:
        name = p.stem[: -len(strip)] if strip and p.stem.endswith(strip) else p.stem
        if name in out:
            problems.append(f"{p}: same name as {out[name].name}; keep only one of them")
        else:
            out[name] = p
    return out


def is_split_layout(root: Path) -> bool:
    """True when ``root`` holds both an ``images/`` and a ``labels/`` folder."""
    return (root / "images").is_dir() and (root / "labels").is_dir()


def scan_folder(root: str | Path) -> FolderScan:
    """Apply the matching rule to a folder without raising for unmatched files.

    Raises:
        InputError: the folder does not exist.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "dataset folder not found")
    problems: list[str] = []
    if is_split_layout(root):
        images = _by_name(_files(root / "images", IMAGE_SUFFIXES), problems)
        labels = _by_name(_files(root / "labels", LABEL_SUFFIXES), problems, strip=LABEL_TAG)
    else:
        files = _files(root, IMAGE_SUFFIXES)
        is_label = [
            p.stem.endswith(LABEL_TAG) and p.suffix.lower() in LABEL_SUFFIXES for p in files
        ]
        images = _by_name([p for p, lab in zip(files, is_label, strict=True) if not lab], problems)
        labels = _by_name(
            [p for p, lab in zip(files, is_label, strict=True) if lab], problems, LABEL_TAG
        )
    pairs = [(images[n], labels[n]) for n in sorted(images) if n in labels]
    unlabelled = [images[n] for n in sorted(images) if n not in labels]
    orphans = [labels[n] for n in sorted(labels) if n not in images]
    return FolderScan(pairs=pairs, unlabelled=unlabelled, orphan_labels=orphans, problems=problems)


def find_image_label_pairs(root: str | Path) -> list[tuple[Path, Path]]:
    """(image, label image) pairs of a plain dataset folder, sorted by name.

    Images without a label image are skipped (``bayescellseg data check`` lists them).

    Raises:
        InputError: the folder is missing, holds two files with the same name, or holds no pair.
    """
    root = Path(root)
    scan = scan_folder(root)
    if scan.problems:
        raise InputError(root, "ambiguous file names: " + "; ".join(scan.problems))
    if not scan.pairs:
        raise InputError(root, f"no image/label pairs found; expected {FOLDER_RULE}")
    return scan.pairs


def read_folder_sample(image_path: str | Path, label_path: str | Path) -> Sample:
    """Read one image and its label image.

    Args:
        image_path: PNG, JPEG or TIFF image.
        label_path: PNG or TIFF instance label image of the same size.

    Returns:
        A :class:`Sample` whose id is the image's file stem.

    Raises:
        InputError: either file is unreadable, or their sizes differ.
    """
    image_path, label_path = Path(image_path), Path(label_path)
    image = read_image(image_path)
    labels = read_label_image(label_path)
    if labels.shape != image.shape[:2]:
        raise InputError(
            label_path,
            f"label image size {labels.shape[1]}x{labels.shape[0]} differs from the image's "
            f"{image.shape[1]}x{image.shape[0]} ({image_path.name})",
        )
    return Sample(id=image_path.stem, image=image, labels=labels, source=image_path)
