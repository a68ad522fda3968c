"""Which image files a ``predict`` run segments, and what it skips and why.

Files named on the command line are always taken. A folder contributes its supported images
(not recursive, sorted by name) except:

* label images ``x_labels.*`` next to an image ``x.*``;
* outputs of an earlier ``predict`` (``*_probability.tif``, ``*_entropy.tif``,
  ``*_aleatoric.tif``, ``*_epistemic.tif``, ``*_overlay.png``, and ``x_labels.tif`` beside
  ``x_summary.json``), which are reported as skipped;
* entries named like images that are not regular files (folders named ``*.png``, broken links,
  symlink loops), also reported as skipped.

A folder with an ``images/`` subfolder contributes those images, and a DSB2018 root
(``<id>/images/<id>.png``) one image per sample. A folder that cannot be read is that input's
failure; the others go on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bayescellseg.errors import InputError
from bayescellseg.io.images import PREDICT_SUFFIXES
from bayescellseg.prediction_folder import (
    LABELS_SUFFIX,
    MAP_SUFFIXES,
    OVERLAY_SUFFIX,
    SUMMARY_SUFFIX,
)

IMAGE_SUFFIXES = PREDICT_SUFFIXES
"""What a folder contributes: PNG, JPEG, TIFF, and CZI / ND2 / LIF (read with the ``formats``
extra)."""
OWN_OUTPUT_SUFFIXES = (*MAP_SUFFIXES, OVERLAY_SUFFIX)


@dataclass
class InputScan:
    """The result of :func:`scan_inputs`.

    Attributes:
        files: Image files to segment, in order, without duplicates.
        problems: (path, message) of inputs that cannot be used (they count as failures).
        skipped: (path, reason) of folder entries left out on purpose (reported, not failures).
    """

    files: list[Path] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def _skip_reason(path: Path) -> str | None:
    """Why a folder entry named like an image is left out, or None to take it."""
    if path.is_symlink() and not path.exists():
        return "broken symbolic link or symlink loop; skipped"
    if path.is_dir():
        return "a folder named like an image; skipped"
    if not path.is_file():
        return "not a regular file; skipped"
    name = path.name
    if name.endswith(OWN_OUTPUT_SUFFIXES):
        return "output of an earlier 'predict'; skipped (name the file itself to segment it)"
    if name.endswith(LABELS_SUFFIX):
        if path.with_name(name[: -len(LABELS_SUFFIX)] + SUMMARY_SUFFIX).is_file():
            return "output of an earlier 'predict'; skipped (name the file itself to segment it)"
    return None


def _folder_entries(folder: Path, scan: InputScan) -> list[Path]:
    """Image files of ``folder``; skipped entries are recorded in ``scan``."""
    found = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        reason = _skip_reason(path)
        if reason is None:
            found.append(path)
        else:
            scan.skipped.append((path, reason))
    stems = {p.stem for p in found}
    return [p for p in found if not (p.stem.endswith("_labels") and p.stem[:-7] in stems)]


def _folder_images(folder: Path, scan: InputScan) -> list[Path]:
    """Images of one input folder (see the module docstring)."""
    from bayescellseg.io.dsb import image_path, is_dsb_sample_dir

    n_skipped = len(scan.skipped)
    if (folder / "images").is_dir() and not is_dsb_sample_dir(folder.parent):
        if (folder / "masks").is_dir():  # a single DSB sample folder
            return [image_path(folder, folder.name)]
        folder = folder / "images"  # images/ + labels/ layout
    found = _folder_entries(folder, scan)
    if not found and len(scan.skipped) == n_skipped:  # a DSB2018 root: <id>/images/<id>.png
        samples = sorted(p for p in folder.iterdir() if p.is_dir() and is_dsb_sample_dir(p))
        return [image_path(p, p.name) for p in samples]
    return found


def _add_folder(path: Path, scan: InputScan) -> None:
    n_skipped = len(scan.skipped)
    try:
        found = _folder_images(path, scan)
    except InputError as err:
        scan.problems.append((Path(err.path), err.problem))
        return
    except OSError as err:
        scan.problems.append((path, f"cannot read the folder ({err.strerror or err})"))
        return
    if not found:
        note = " besides skipped entries" if len(scan.skipped) > n_skipped else ""
        scan.problems.append((path, f"folder has no images{note} ({', '.join(IMAGE_SUFFIXES)})"))
    scan.files.extend(found)


def scan_inputs(inputs: list[Path]) -> InputScan:
    """Expand files and folders into the image files to segment (see the module docstring)."""
    scan = InputScan()
    for path in map(Path, inputs):
        if path.is_dir():
            _add_folder(path, scan)
        elif path.is_file():
            scan.files.append(path)
        else:
            scan.problems.append((path, "no such file or folder"))
    seen: set[Path] = set()
    unique = []
    for path in scan.files:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(path)
    scan.files = unique
    return scan


def list_inputs(inputs: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Expand files and folders into the image files to segment.

    Returns:
        (image files, problems): problems are (path, message) for missing inputs, unreadable
        folders and folders without images. Skipped entries: see :func:`scan_inputs`.
    """
    scan = scan_inputs(inputs)
    return scan.files, scan.problems
