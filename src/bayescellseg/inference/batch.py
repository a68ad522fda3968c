"""``bayescellseg predict``: segment a batch of images and write maps, tables and a review queue.

For every input image ``name.<ext>`` the output folder receives::

    name_labels.tif        nuclei (uint16, or uint32 when there are 65535+ labels)
    name_probability.tif   mean foreground probability (float32)
    name_entropy.tif       predictive entropy, bits (float32)
    name_aleatoric.tif     expected entropy, bits (float32)
    name_epistemic.tif     mutual information, bits (float32)
    name_overlay.png       outlines coloured by nucleus uncertainty, flagged nuclei ringed
    name_nuclei.csv        one row per nucleus
    name_summary.json      per-image summary

and for the batch ``summary.csv`` (one row per image, most uncertain first: the review queue;
failed images last) and ``run_config.json`` (model, options, versions). Every file is written
atomically; existing outputs are refused unless ``overwrite`` is set, checked per image before
any work is done. A failing image is reported and the batch goes on.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bayescellseg import __version__
from bayescellseg.errors import BayesCellSegError, InputError
from bayescellseg.inference.segmenter import Result, Segmenter
from bayescellseg.io.atomic import write_json_atomic, write_text_atomic

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
OUTPUT_SUFFIXES = (
    "_labels.tif",
    "_probability.tif",
    "_entropy.tif",
    "_aleatoric.tif",
    "_epistemic.tif",
    "_overlay.png",
    "_nuclei.csv",
    "_summary.json",
)
SUMMARY_COLUMNS = (
    "image",
    "status",
    "n_nuclei",
    "diameter",
    "scale",
    "uncertainty",
    "predicted_quality",
    "needs_review",
    "n_flagged",
    "mean_entropy",
    "mean_mutual_information",
    "mean_stability",
    "reasons",
    "seconds",
    "source",
)


@dataclass(frozen=True)
class PredictOptions:
    """Options of a prediction run.

    Attributes:
        n_samples: Stochastic samples T (None: the model's default).
        tta: Cross every sample with the 8 flips / rotations.
        device: ``cpu``, ``cuda``, ``cuda:1``, ...
        tile_size: Images larger than this are processed in overlapping tiles.
        overwrite: Replace existing output files.
        seed: Seed of the stochastic samples.
        diameter: Typical nucleus diameter in pixels, ``"auto"`` or None (see
            :meth:`~bayescellseg.inference.segmenter.Segmenter.predict`).
    """

    n_samples: int | None = None
    tta: bool = False
    device: str = "cpu"
    tile_size: int = 512
    overwrite: bool = False
    seed: int = 0
    diameter: float | str | None = None


@dataclass
class BatchSummary:
    """Outcome of :func:`predict_batch`.

    Attributes:
        n_ok: Images segmented and written.
        n_failed: Images that failed.
        failures: (input path, problem) of every failure, in input order.
        rows: The rows of ``summary.csv`` (review-queue order).
    """

    n_ok: int = 0
    n_failed: int = 0
    failures: list[tuple[Path, str]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)


def _folder_images(folder: Path) -> list[Path]:
    """Images of one input folder (see :func:`list_inputs`)."""
    from bayescellseg.io.dsb import image_path, is_dsb_sample_dir

    if (folder / "images").is_dir() and not is_dsb_sample_dir(folder.parent):
        if (folder / "masks").is_dir():  # a single DSB sample folder
            return [image_path(folder, folder.name)]
        folder = folder / "images"  # images/ + labels/ layout
    found = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not found:  # a DSB2018 root: <id>/images/<id>.png
        samples = sorted(p for p in folder.iterdir() if p.is_dir() and is_dsb_sample_dir(p))
        return [image_path(p, p.name) for p in samples]
    stems = {p.stem for p in found}
    return [p for p in found if not (p.stem.endswith("_labels") and p.stem[:-7] in stems)]


def list_inputs(inputs: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Expand files and folders into the image files to segment.

    A folder contributes its supported images (``.png .tif .tiff .jpg .jpeg``, not recursive,
    sorted by name), except label images ``x_labels.*`` that sit next to an image ``x.*``.
    A folder with an ``images/`` subfolder contributes those images, and a DSB2018 root
    (``<id>/images/<id>.png``) contributes one image per sample. Duplicates are dropped.

    Returns:
        (image files, problems) where problems are (path, message) for missing inputs and
        folders without images.
    """
    files: list[Path] = []
    problems: list[tuple[Path, str]] = []
    for path in map(Path, inputs):
        if path.is_dir():
            try:
                found = _folder_images(path)
            except InputError as err:
                problems.append((Path(err.path), err.problem))
                continue
            if not found:
                problems.append((path, f"folder has no images ({', '.join(IMAGE_SUFFIXES)})"))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            problems.append((path, "no such file or folder"))
    seen: set[Path] = set()
    unique = []
    for path in files:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            unique.append(path)
    return unique, problems


def output_paths(out_dir: Path, name: str) -> dict[str, Path]:
    """The output files of image ``name``, keyed by their suffix without extension."""
    return {s.split(".")[0][1:]: out_dir / f"{name}{s}" for s in OUTPUT_SUFFIXES}


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    if value is None:
        return ""
    return value


def _csv_text(columns: tuple[str, ...] | list[str], rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k)) for k in columns})
    return buffer.getvalue()


def label_dtype(labels: np.ndarray) -> type[np.unsignedinteger]:
    """uint16 when every label fits, else uint32."""
    return np.uint16 if int(labels.max(initial=0)) < 65536 else np.uint32


def write_outputs(
    paths: dict[str, Path],
    image: np.ndarray,
    result: Result,
    info: dict[str, Any],
    overwrite: bool,
    review_threshold: float = 0.5,
) -> None:
    """Write every per-image output file of one result (each atomically).

    The overlay colours nucleus uncertainty from green (0) through yellow (``review_threshold``,
    where flagging starts) to red (twice the threshold and above).
    """
    from bayescellseg.io.images import write_png, write_tiff
    from bayescellseg.postprocess.nuclei import NUCLEUS_COLUMNS, records_to_rows
    from bayescellseg.report.overlay import make_overlay, uncertainty_vmax

    write_tiff(paths["labels"], result.labels.astype(label_dtype(result.labels)), overwrite)
    for name in ("probability", "entropy", "aleatoric", "epistemic"):
        write_tiff(paths[name], getattr(result, name).astype(np.float32), overwrite)
    uncertainty = {r.label: r.uncertainty for r in result.nuclei}
    flagged = {r.label for r in result.nuclei if r.needs_review}
    overlay = make_overlay(
        image, result.labels, uncertainty, flagged, vmax=uncertainty_vmax(review_threshold)
    )
    write_png(paths["overlay"], overlay, overwrite)
    write_text_atomic(
        paths["nuclei"], _csv_text(NUCLEUS_COLUMNS, records_to_rows(result.nuclei)), overwrite
    )
    write_json_atomic(paths["summary"], {**info, **result.summary}, overwrite)


def _versions() -> dict[str, str]:
    import scipy
    import skimage
    import torch

    return {
        "bayescellseg": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-image": skimage.__version__,
        "torch": torch.__version__,
    }


def _summary_row(name: str, source: Path, seconds: float, summary: dict[str, Any]) -> dict:
    row = {k: summary.get(k) for k in SUMMARY_COLUMNS}
    row.update(
        image=name,
        status="ok",
        source=str(source),
        seconds=round(seconds, 3),
        reasons="; ".join(summary.get("reasons") or []),
    )
    return row


def _queue_order(row: dict[str, Any]) -> tuple[int, float]:
    """Failed images last; otherwise most uncertain first (NaN uncertainty after numbers)."""
    if row["status"] != "ok":
        return (2, 0.0)
    value = row.get("uncertainty")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (1, 0.0)
    return (0, -float(value))


def predict_batch(
    inputs: list[Path],
    model_dir: Path | None,
    out_dir: Path,
    options: PredictOptions,
) -> BatchSummary:
    """Segment every input image and write the outputs described in the module docstring.

    Args:
        inputs: Image files and/or folders of images.
        model_dir: Model folder, or None for the bundled pretrained model.
        out_dir: Output folder (created if needed).
        options: Run options.

    Returns:
        Counts of successes and failures, the failures' messages and the summary rows.

    Raises:
        InputError: The model cannot be loaded.
        FileExistsError: ``summary.csv`` / ``run_config.json`` exist and ``overwrite`` is off.
    """
    out_dir = Path(out_dir)
    batch_files = {"summary": out_dir / "summary.csv", "config": out_dir / "run_config.json"}
    if not options.overwrite:
        for path in batch_files.values():
            if path.exists():
                raise FileExistsError(f"{path}: exists, use --overwrite to replace the outputs")
    if options.tile_size < 32:
        raise InputError("--tile", f"tile size must be at least 32 pixels, got {options.tile_size}")
    if options.n_samples is not None and options.n_samples < 0:
        raise InputError(
            "--samples", f"must be at least 0 (0 = one deterministic pass), got {options.n_samples}"
        )
    segmenter = Segmenter.load(model_dir, device=options.device)
    segmenter.resolve_diameter(options.diameter)  # a bad --diameter fails before the batch
    files, problems = list_inputs(inputs)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    batch = BatchSummary()
    for path, problem in problems:
        _fail(batch, path, problem)
    used: dict[str, Path] = {}
    print(
        f"bayescellseg predict: {len(files)} image(s), model {segmenter.source}, "
        f"T={segmenter.n_samples(options.n_samples)}{' x 8 TTA' if options.tta else ''}",
        flush=True,
    )
    for index, path in enumerate(files, start=1):
        prefix = f"[{index}/{len(files)}] {path.name}"
        problem = _predict_one(segmenter, path, out_dir, options, used, batch)
        if problem is not None:
            _fail(batch, path, problem)
            print(f"{prefix}: FAILED: {problem}", flush=True)
        else:
            row = batch.rows[-1]
            review = "  NEEDS REVIEW" if row["needs_review"] else ""
            print(
                f"{prefix}: {row['n_nuclei']} nuclei, uncertainty {_fmt(row['uncertainty'])}, "
                f"{row['seconds']:.1f} s{review}",
                flush=True,
            )
    batch.rows.sort(key=_queue_order)
    write_text_atomic(
        batch_files["summary"], _csv_text(SUMMARY_COLUMNS, batch.rows), options.overwrite
    )
    run_config = {
        "model": str(segmenter.source),
        "model_config": segmenter.config.to_dict(),
        "temperature": segmenter.temperature,
        "logit_bias": segmenter.logit_bias,
        "postprocess": segmenter.params.to_dict(),
        "review": segmenter.review.to_dict(),
        "nucleus_diameter": segmenter.nucleus_diameter,
        "options": dataclasses.asdict(options),
        "n_samples_effective": segmenter.n_samples(options.n_samples),
        "seed": options.seed,
        "inputs": [str(p) for p in inputs],
        "command": sys.argv,
        "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "n_ok": batch.n_ok,
        "n_failed": batch.n_failed,
        "failures": [{"path": str(p), "problem": m} for p, m in batch.failures],
        "versions": _versions(),
    }
    write_json_atomic(batch_files["config"], run_config, options.overwrite)
    print(
        f"done: {batch.n_ok} ok, {batch.n_failed} failed; review queue in {batch_files['summary']}"
    )
    for path, problem in batch.failures:
        message = problem if problem.startswith(str(path)) else f"{path}: {problem}"
        print(f"  failed: {message}")
    return batch


def _fail(batch: BatchSummary, path: Path, problem: str) -> None:
    batch.n_failed += 1
    batch.failures.append((path, problem))
    batch.rows.append({"image": path.stem, "status": f"failed: {problem}", "source": str(path)})


def _predict_one(
    segmenter: Segmenter,
    path: Path,
    out_dir: Path,
    options: PredictOptions,
    used: dict[str, Path],
    batch: BatchSummary,
) -> str | None:
    """Segment one image and write its outputs; return a problem message, or None on success."""
    from bayescellseg.io.images import read_image

    name = path.stem
    if name in used:
        return f"output name {name!r} is already used by {used[name]}; rename one of them"
    used[name] = path
    paths = output_paths(out_dir, name)
    existing = [p.name for p in paths.values() if p.exists()]
    if existing and not options.overwrite:
        shown = ", ".join(existing[:3]) + (", ..." if len(existing) > 3 else "")
        return f"exists, use --overwrite ({shown})"
    start = time.perf_counter()
    try:
        image = read_image(path)
        result = segmenter.predict(
            image,
            n_samples=options.n_samples,
            tta=options.tta,
            seed=options.seed,
            tile_size=options.tile_size,
            diameter=options.diameter,
        )
        info = {
            "image": name,
            "source": str(path),
            "height": int(image.shape[0]),
            "width": int(image.shape[1]),
            "model": str(segmenter.source),
            "seed": options.seed,
        }
        threshold = segmenter.review.nucleus_uncertainty
        write_outputs(paths, image, result, info, options.overwrite, threshold)
    except (BayesCellSegError, OSError, ValueError, MemoryError) as err:
        return str(err) if isinstance(err, InputError) else f"{type(err).__name__}: {err}"
    seconds = time.perf_counter() - start
    batch.n_ok += 1
    batch.rows.append(_summary_row(name, path, seconds, result.summary))
    return None
