"""``bayescellseg data check``: summarise a dataset folder and list every problem in it.

The check never stops at the first bad file: every sample is read, and a sample that fails is
examined file by file so that each broken file is named once.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from bayescellseg.errors import InputError
from bayescellseg.io.channels import for_annotated_data
from bayescellseg.io.datasets import detect_layout
from bayescellseg.io.dsb import (
    Sample,
    image_path,
    is_dsb_sample_dir,
    mask_paths,
    read_dsb_sample,
    read_masks,
)
from bayescellseg.io.folders import FolderScan, read_folder_sample, scan_folder
from bayescellseg.io.images import read_image, read_label_image, read_raw
from bayescellseg.io.imaging import imaging_type


@dataclass
class DatasetReport:
    """Summary of a dataset folder.

    Attributes:
        path: The folder checked.
        layout: ``"dsb"``, ``"folder"`` or ``"unknown"``.
        n_images: Samples found (readable or not).
        n_readable: Samples read without error.
        sizes: Count of image sizes, keyed ``"HxW"``.
        imaging_types: Count of ``"fluorescence"`` / ``"brightfield"``.
        nuclei_per_image: Number of nuclei of every readable sample, by id.
        n_overlap_pixels: Pixels claimed by more than one mask, over all samples.
        n_images_with_overlap: Samples with at least one such pixel.
        problems: One ``"<file>: <problem>"`` line per problem found.
        seconds: Time the check took.
    """

    path: Path
    layout: str = "unknown"
    n_images: int = 0
    n_readable: int = 0
    sizes: Counter[str] = field(default_factory=Counter)
    imaging_types: Counter[str] = field(default_factory=Counter)
    nuclei_per_image: dict[str, int] = field(default_factory=dict)
    n_overlap_pixels: int = 0
    n_images_with_overlap: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def nuclei_total(self) -> int:
        """All nuclei in the readable samples."""
        return int(sum(self.nuclei_per_image.values()))

    def nuclei_stats(self) -> dict[str, float]:
        """``min``, ``median``, ``max`` and ``total`` nuclei per image (empty dict if none)."""
        counts = np.array(list(self.nuclei_per_image.values()))
        if counts.size == 0:
            return {}
        return {
            "min": int(counts.min()),
            "median": float(np.median(counts)),
            "max": int(counts.max()),
            "total": int(counts.sum()),
        }


def _diagnose_dsb(root: Path, sample_id: str, first_error: InputError) -> list[str]:
    """Every problem of a DSB sample that failed to load, one per file."""
    folder = root / sample_id
    problems: list[str] = []
    shape: tuple[int, int] | None = None
    try:
        shape = read_image(image_path(folder, sample_id)).shape[:2]
    except InputError as err:
        problems.append(str(for_annotated_data(err)))
    try:
        paths = mask_paths(folder)
    except InputError as err:
        problems.append(str(for_annotated_data(err)))
        paths = []
    for path in paths:
        try:
            if shape is not None:
                read_masks([path], shape)
            elif not np.any(read_raw(path)):
                raise InputError(path, "mask is empty (no nucleus pixels)")
        except InputError as err:
            problems.append(str(for_annotated_data(err)))
    return problems or [str(first_error)]


def _covered_masks(sample: Sample) -> list[str]:
    """Masks whose every pixel was taken by an earlier mask (they vanish from the labels)."""
    counts = np.bincount(sample.labels.ravel())
    try:
        paths = mask_paths(sample.source)
    except InputError:
        return []
    counts = np.pad(counts, (0, max(0, len(paths) + 1 - counts.size)))
    return [
        f"{p}: mask lies entirely under earlier masks, so this nucleus is lost"
        for i, p in enumerate(paths, start=1)
        if counts[i] == 0
    ]


def _looks_binary(labels: np.ndarray, label_path: Path) -> list[str]:
    """A label image with one value but several separate objects is a semantic mask."""
    values = np.unique(labels)
    values = values[values != 0]
    if values.size != 1:
        return []
    _, n_objects = ndimage.label(labels > 0)
    if n_objects <= 1:
        return []
    return [
        f"{label_path}: looks like a binary mask (one value, {values[0]}, for {n_objects} separate "
        "objects); label images need a distinct integer per nucleus"
    ]


def _n_nuclei(labels: np.ndarray) -> int:
    """Number of distinct non-zero labels (bincount when the labels are small, else unique)."""
    if labels.size == 0:
        return 0
    if int(labels.max()) < 4 * labels.size:
        return int(np.count_nonzero(np.bincount(labels.ravel())[1:]))
    values = np.unique(labels)
    return int(np.count_nonzero(values))


def _add_sample(report: DatasetReport, sample: Sample) -> None:
    height, width = sample.labels.shape
    report.n_readable += 1
    report.sizes[f"{height}x{width}"] += 1
    report.imaging_types[imaging_type(sample.image)] += 1
    report.nuclei_per_image[sample.id] = _n_nuclei(sample.labels)
    if report.nuclei_per_image[sample.id] == 0:
        report.problems.append(f"{sample.source}: label image holds no nuclei (all background)")
    report.n_overlap_pixels += sample.n_overlap_pixels
    report.n_images_with_overlap += int(sample.n_overlap_pixels > 0)


def _check_dsb(root: Path, report: DatasetReport) -> None:
    ids = []
    for p in sorted(root.iterdir()):
        if not p.is_dir() or p.name.startswith("."):
            continue
        if is_dsb_sample_dir(p):
            ids.append(p.name)
        else:
            report.problems.append(
                f"{p}: folder has no images/ subfolder (not a DSB sample); skipped"
            )
    report.n_images = len(ids)
    for sample_id in ids:
        try:
            sample = read_dsb_sample(root, sample_id)
        except InputError as err:
            report.problems.extend(_diagnose_dsb(root, sample_id, err))
            continue
        report.problems.extend(_covered_masks(sample))
        _add_sample(report, sample)


def _check_folder(root: Path, report: DatasetReport) -> None:
    scan: FolderScan = scan_folder(root)
    report.problems.extend(scan.problems)
    report.problems.extend(f"{p}: image has no label image" for p in scan.unlabelled)
    report.problems.extend(f"{p}: label image has no matching image" for p in scan.orphan_labels)
    report.n_images = len(scan.pairs) + len(scan.unlabelled)
    for image, label in scan.pairs:
        try:
            sample = read_folder_sample(image, label)
        except InputError as err:
            report.problems.append(str(for_annotated_data(err)))
            if err.path == str(image):  # the image failed: still check the label image
                try:
                    read_label_image(label)
                except InputError as label_err:
                    report.problems.append(str(label_err))
            continue
        report.problems.extend(_looks_binary(sample.labels, label))
        _add_sample(report, sample)
    for image in scan.unlabelled:
        try:
            read_image(image)
        except InputError as err:
            report.problems.append(str(for_annotated_data(err)))


def check_dataset(path: str | Path) -> DatasetReport:
    """Read every sample of a dataset folder and collect statistics and problems.

    Args:
        path: A DSB2018-layout folder or a folder of images with label images.

    Returns:
        The report. It never raises for bad data: problems (including an unknown layout) are
        listed in ``report.problems``.
    """
    start = time.perf_counter()
    report = DatasetReport(path=Path(path))
    try:
        report.layout = detect_layout(path)
        if report.layout == "dsb":
            _check_dsb(Path(path), report)
        else:
            _check_folder(Path(path), report)
    except InputError as err:
        report.problems.append(str(for_annotated_data(err)))
    except OSError as err:  # e.g. a folder that cannot be listed
        report.problems.append(f"{path}: cannot read the folder: {err}")
    report.seconds = time.perf_counter() - start
    return report


def _counter_line(counter: Counter[str]) -> str:
    return ", ".join(f"{key}: {n}" for key, n in counter.most_common()) or "-"


def format_report(report: DatasetReport) -> str:
    """A readable summary of a :class:`DatasetReport` followed by every problem."""
    layouts = {
        "dsb": "DSB2018 layout",
        "folder": "images + label images",
        "unknown": "unknown layout",
    }
    unreadable = report.n_images - report.n_readable
    stats = report.nuclei_stats()
    nuclei = (
        f"min {stats['min']}, median {stats['median']:g}, max {stats['max']}, total {stats['total']:,}"
        if stats
        else "-"
    )
    rows = [
        ("Dataset", f"{report.path} ({layouts.get(report.layout, report.layout)})"),
        (
            "Images",
            f"{report.n_images}"
            + (f" ({unreadable} unusable, see problems)" if unreadable else ""),
        ),
        ("Image sizes (HxW)", _counter_line(report.sizes)),
        ("Imaging types", _counter_line(report.imaging_types)),
        ("Nuclei per image", nuclei),
        (
            "Overlapping mask pixels",
            f"{report.n_overlap_pixels:,} in {report.n_images_with_overlap} image(s) "
            "(each given to the mask whose file name sorts first)",
        ),
        ("Checked in", f"{report.seconds:.1f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    if report.problems:
        lines.append(f"\nProblems ({len(report.problems)}):")
        lines.extend(f"  - {problem}" for problem in report.problems)
    else:
        lines.append("\nNo problems found.")
    return "\n".join(lines)


def format_reports(reports: list[DatasetReport]) -> str:
    """Every report (:func:`format_report`), then, for several, one line per source."""
    parts = [format_report(r) for r in reports]
    if len(reports) < 2:
        return "\n".join(parts)
    header = f"{'source':<24} {'images':>7} {'usable':>7} {'nuclei':>8} {'problems':>9}"
    lines = ["", "Per source:", header]
    for r in reports:
        lines.append(
            f"{r.path.name[:24]:<24} {r.n_images:>7} {r.n_readable:>7} {r.nuclei_total:>8,} "
            f"{len(r.problems):>9}"
        )
    return "\n\n".join(parts) + "\n" + "\n".join(lines)
