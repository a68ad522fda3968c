"""``bayescellseg predict``: segment a batch of images and write maps, tables and a review queue.

For every input image ``name.<ext>`` the output folder receives the files named in
:mod:`bayescellseg.prediction_folder`, and for the batch ``summary.csv`` (one row per image,
most uncertain first: the review queue; failed images last) and ``run_config.json`` (model,
options, versions). Every file is written atomically; existing outputs are refused unless
``overwrite`` is set, checked per image before any work is done. A failing image is reported
and the batch goes on.

The output folder is locked for the run, and an image's files appear all together or not at
all (:mod:`bayescellseg.pipelines.outdir`); ``resume`` finishes an interrupted batch, keeping
the images whose outputs are complete (:mod:`bayescellseg.pipelines.resume`).

Example::

    from bayescellseg import Segmenter
    from bayescellseg.pipelines.predict import PredictOptions, predict_batch

    summary = predict_batch(Segmenter.load(), [Path("images")], Path("out"), PredictOptions())
"""

from __future__ import annotations

import dataclasses
import logging
import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy
import skimage
import torch

from bayescellseg import __version__
from bayescellseg.errors import InputError, OutputError
from bayescellseg.inference.arguments import DEFAULT_DIAMETER
from bayescellseg.inference.segmenter import PredictSettings, Segmenter
from bayescellseg.io.atomic import write_json_atomic, write_text_atomic
from bayescellseg.pipelines import outdir, resume
from bayescellseg.pipelines.inputs import scan_inputs
from bayescellseg.pipelines.outputs import csv_text, fmt
from bayescellseg.pipelines.predict_image import (
    SUMMARY_COLUMNS,
    BatchSummary,
    ImageJob,
    predict_one,
)
from bayescellseg.prediction_folder import RUN_CONFIG, SUMMARY_CSV
from bayescellseg.progress import NoProgress, Progress

__all__ = ["BatchSummary", "PredictOptions", "SUMMARY_COLUMNS", "predict_batch"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictOptions:
    """Options of a prediction run (the model and its device come with the Segmenter).

    Attributes:
        n_samples: Stochastic samples T (None: the model's default).
        tta: Cross every sample with the 8 flips / rotations.
        tile_size: Images larger than this are processed in overlapping tiles.
        overwrite: Replace existing output files.
        seed: Seed of the stochastic samples.
        diameter: Typical nucleus diameter in pixels, ``"auto"`` (the default) or None (see
            :meth:`~bayescellseg.inference.segmenter.Segmenter.predict`).
        resume: Finish an interrupted batch in the same output folder: keep the images whose
            outputs are complete, redo the others (same model and options required).
        precision: Precision of the network's forward pass (None: the Segmenter's own);
            see :mod:`bayescellseg.inference.precision`.
    """

    n_samples: int | None = None
    tta: bool = False
    tile_size: int = 512
    overwrite: bool = False
    seed: int = 0
    diameter: float | str | None = DEFAULT_DIAMETER
    resume: bool = False
    precision: str | None = None

    def settings(self) -> PredictSettings:
        """The :class:`PredictSettings` of every image."""
        return PredictSettings(
            n_samples=self.n_samples,
            tta=self.tta,
            seed=self.seed,
            tile_size=self.tile_size,
            diameter=self.diameter,
            precision=self.precision,
        )


def _versions() -> dict[str, str]:
    return {
        "bayescellseg": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-image": skimage.__version__,
        "torch": torch.__version__,
    }


def _queue_order(row: dict[str, Any]) -> tuple[int, float]:
    """Failed images last; otherwise most uncertain first (NaN uncertainty after numbers)."""
    if row["status"] != "ok":
        return (2, 0.0)
    value = row.get("uncertainty")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (1, 0.0)
    return (0, -float(value))


def _check_options(segmenter: Segmenter, options: PredictOptions) -> None:
    if options.tile_size < 32:
        raise InputError(
            "tile_size", f"tile size must be at least 32 pixels, got {options.tile_size}"
        )
    if options.n_samples is not None and options.n_samples < 0:
        raise InputError(
            "n_samples", f"must be at least 0 (0 = one deterministic pass), got {options.n_samples}"
        )
    if options.resume and options.overwrite:
        raise InputError("resume", "cannot be combined with overwrite=True (which redoes all)")
    segmenter.resolved_precision(options.precision)  # an unsupported precision fails up front
    segmenter.resolve_diameter(options.diameter)  # a bad diameter fails before the batch


def _check_batch_files(out_dir: Path, options: PredictOptions) -> None:
    """Refuse a fresh run into a folder that holds another run's batch files or leftovers."""
    if options.overwrite or options.resume:
        return
    for path in [out_dir / SUMMARY_CSV, out_dir / RUN_CONFIG, out_dir / resume.RUN_MARKER]:
        if path.exists():
            what = "an interrupted run's record" if path.name == resume.RUN_MARKER else "exists"
            raise FileExistsError(
                f"{path}: {what}; pass resume=True to finish that batch, overwrite=True to "
                "replace the outputs, or choose another output folder"
            )


def _base_config(segmenter: Segmenter, options: PredictOptions) -> dict[str, Any]:
    """The run-identity part of ``run_config.json`` (the options with the device and the
    concrete precision, so a resume on another device or precision is refused)."""
    recorded = {
        **dataclasses.asdict(options),
        "device": str(segmenter.device),
        "precision": segmenter.resolved_precision(options.precision),
    }
    return {
        "model": str(segmenter.source),
        "model_config": segmenter.config.to_dict(),
        "temperature": segmenter.temperature,
        "logit_bias": segmenter.logit_bias,
        "postprocess": segmenter.params.to_dict(),
        "review": segmenter.review.to_dict(),
        "nucleus_diameter": segmenter.nucleus_diameter,
        "options": recorded,
    }


def predict_batch(
    segmenter: Segmenter,
    inputs: list[Path],
    out_dir: Path,
    options: PredictOptions,
    progress: Progress | None = None,
) -> BatchSummary:
    """Segment every input image and write the outputs described in the module docstring.

    Args:
        segmenter: The loaded model (its device and default precision are used).
        inputs: Image files and/or folders of images.
        out_dir: Output folder (created if needed).
        options: Run options.
        progress: Told about every finished image (None: nothing shown).

    Returns:
        Counts of successes and failures, the failures' messages and the summary rows.

    Raises:
        InputError: Bad options, or ``resume`` into a folder written with other settings.
        OutputError: The output folder cannot be written, or another run holds its lock.
        FileExistsError: ``summary.csv`` / ``run_config.json`` exist and neither ``overwrite``
            nor ``resume`` is set.
    """
    out_dir = Path(out_dir)
    _check_options(segmenter, options)
    outdir.check_writable(out_dir)
    with outdir.locked(out_dir):
        for note in outdir.recover(out_dir):
            log.info("note: %s", note)
        return _run_locked(segmenter, inputs, out_dir, options, progress or NoProgress())


def _run_locked(
    segmenter: Segmenter,
    inputs: list[Path],
    out_dir: Path,
    options: PredictOptions,
    progress: Progress,
) -> BatchSummary:
    """The batch itself, once the output folder is locked and cleaned up."""
    _check_batch_files(out_dir, options)
    base = _base_config(segmenter, options)
    identity = resume.run_identity(base)
    if options.resume:
        resume.check_same_run(out_dir, identity)
    write_json_atomic(out_dir / resume.RUN_MARKER, identity, overwrite=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    scan = scan_inputs(inputs)
    batch = BatchSummary(skipped=scan.skipped)
    for path, problem in scan.problems:
        batch.fail(path, problem)
    _log_skipped(scan.skipped)
    n_samples = segmenter.n_samples(options.n_samples)
    log.info(
        "bayescellseg predict: %d image(s), model %s, T=%d%s",
        len(scan.files), segmenter.source, n_samples, " x 8 TTA" if options.tta else "",
    )  # fmt: skip
    job = ImageJob(
        segmenter, options.settings(), out_dir, options.overwrite, options.resume, options.seed
    )
    used: dict[str, Path] = {}
    progress.start(len(scan.files), "predict")
    for index, path in enumerate(scan.files, start=1):
        problem = predict_one(job, path, used, batch)
        _log_image(f"[{index}/{len(scan.files)}] {path.name}", problem, batch)
        if problem is not None:
            batch.fail(path, problem)
        progress.advance(path.name)
    progress.close()
    batch.rows.sort(key=_queue_order)
    run_config = {
        **base,
        "n_samples_effective": n_samples,
        "precision_used": segmenter.resolved_precision(options.precision),
        "seed": options.seed,
        "inputs": [str(p) for p in inputs],
        "command": sys.argv,
        "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "n_ok": batch.n_ok,
        "n_failed": batch.n_failed,
        "failures": [{"path": str(p), "problem": m} for p, m in batch.failures],
        "kept": batch.kept,
        "skipped": [{"path": str(p), "reason": m} for p, m in batch.skipped],
        "versions": _versions(),
    }
    _write_batch_file(out_dir / SUMMARY_CSV, csv_text(SUMMARY_COLUMNS, batch.rows))
    _write_batch_file(out_dir / RUN_CONFIG, run_config)
    (out_dir / resume.RUN_MARKER).unlink(missing_ok=True)
    outdir.finish(out_dir)
    _log_done(batch, out_dir / SUMMARY_CSV)
    return batch


def _write_batch_file(path: Path, content: str | dict[str, Any]) -> None:
    """Write ``summary.csv`` or ``run_config.json`` (replacing; the start was checked)."""
    try:
        if isinstance(content, str):
            write_text_atomic(path, content, overwrite=True)
        else:
            write_json_atomic(path, content, overwrite=True)
    except OSError as err:
        raise OutputError(path, f"cannot write ({err.strerror or err})") from err


def _log_skipped(skipped: list[tuple[Path, str]]) -> None:
    own = [p for p, reason in skipped if reason.startswith("output of an earlier")]
    if own:
        shown = ", ".join(p.name for p in own[:3]) + (", ..." if len(own) > 3 else "")
        log.info("skipped %d output file(s) of an earlier 'predict' (%s)", len(own), shown)
    for path, reason in skipped:
        if not reason.startswith("output of an earlier"):
            log.info("skipped %s: %s", path, reason)


def _log_image(prefix: str, problem: str | None, batch: BatchSummary) -> None:
    if problem is not None:
        log.warning("%s: FAILED: %s", prefix, problem)
        return
    row = batch.rows[-1]
    review = "  NEEDS REVIEW" if row["needs_review"] else ""
    took = "kept from the interrupted run" if row["seconds"] is None else f"{row['seconds']:.1f} s"
    log.info(
        "%s: %s nuclei, uncertainty %s, %s%s",
        prefix, row["n_nuclei"], fmt(row["uncertainty"]), took, review,
    )  # fmt: skip


def _log_done(batch: BatchSummary, summary_path: Path) -> None:
    kept = f" ({len(batch.kept)} kept from the interrupted run)" if batch.kept else ""
    log.info(
        "done: %d ok%s, %d failed; review queue in %s",
        batch.n_ok, kept, batch.n_failed, summary_path,
    )  # fmt: skip
    for path, problem in batch.failures:
        message = problem if problem.startswith(str(path)) else f"{path}: {problem}"
        log.warning("  failed: %s", message)
