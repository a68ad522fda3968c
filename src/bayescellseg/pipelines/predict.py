"""``bayescellseg predict``: segment a batch of images and write maps, tables and a review queue.

For every input image ``name.<ext>`` the output folder receives the files named in
:mod:`bayescellseg.prediction_folder` (those chosen with ``save``, and ``name_summary.json``),
and for the batch ``summary.csv`` (one row per image, the review queue: lowest predicted score
first when the model folder has a ``trust.json``, else most uncertain first; failed images
last) and ``run_config.json`` (model, options, device, review rule and its statement,
versions). The trust signals and the review rule: :mod:`bayescellseg.pipelines.trusted`. Every file is written atomically; existing outputs are refused unless
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

import logging
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy
import skimage
import torch

from bayescellseg import __version__
from bayescellseg.errors import OutputError
from bayescellseg.inference.segmenter import Segmenter
from bayescellseg.io.atomic import write_json_atomic, write_text_atomic
from bayescellseg.io.tables import csv_cell, csv_text
from bayescellseg.pipelines import outdir, resume
from bayescellseg.pipelines.inputs import scan_inputs
from bayescellseg.pipelines.predict_image import (
    SUMMARY_COLUMNS,
    TRUSTED_SUMMARY_COLUMNS,
    BatchSummary,
    ImageJob,
    predict_one,
)
from bayescellseg.pipelines.predict_options import PredictOptions, base_config, check_options
from bayescellseg.pipelines.trusted import batch_review
from bayescellseg.prediction_folder import RUN_CONFIG, SUMMARY_CSV
from bayescellseg.progress import NoProgress, Progress
from bayescellseg.trust.model import TrustModel, load_trust

__all__ = [
    "BatchSummary",
    "PredictOptions",
    "SUMMARY_COLUMNS",
    "TRUSTED_SUMMARY_COLUMNS",
    "predict_batch",
]

log = logging.getLogger(__name__)


def _versions() -> dict[str, str]:
    return {
        "bayescellseg": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-image": skimage.__version__,
        "torch": torch.__version__,
    }


def _queue_order(row: dict[str, Any], trusted: bool) -> tuple[int, float]:
    """Failed images last; otherwise the lowest predicted score first (with a trust file) or
    the most uncertain first (without); unknown values after numbers."""
    if row["status"] != "ok":
        return (2, 0.0)
    value = row.get("predicted_score" if trusted else "uncertainty")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (1, 0.0)
    return (0, float(value) if trusted else -float(value))


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
    trust = load_trust(segmenter.source)
    check_options(segmenter, options, trust)
    outdir.check_writable(out_dir)
    job = ImageJob(
        segmenter, options.settings(), out_dir, options.overwrite, options.resume, options.seed,
        reading=options.reading(), save=frozenset(options.save), trust=trust,
    )  # fmt: skip
    with outdir.locked(out_dir):
        for note in outdir.recover(out_dir):
            log.info("note: %s", note)
        return _run_locked(job, inputs, options, progress or NoProgress())


def _run_locked(
    job: ImageJob, inputs: list[Path], options: PredictOptions, progress: Progress
) -> BatchSummary:
    """The batch itself, once the output folder is locked and cleaned up."""
    segmenter, out_dir = job.segmenter, job.out_dir
    _check_batch_files(out_dir, options)
    base = base_config(segmenter, options, job.trust)
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
    used: dict[str, Path] = {}
    progress.start(len(scan.files), "predict")
    for index, path in enumerate(scan.files, start=1):
        problem = predict_one(job, path, used, batch)
        _log_image(f"[{index}/{len(scan.files)}] {path.name}", problem, batch)
        if problem is not None:
            batch.fail(path, problem)
        progress.advance(path.name)
    progress.close()
    _review(batch, job.trust, options)
    run_config = {
        **base,
        "device": str(segmenter.device),
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
        "review_rule": batch.review,
        "versions": _versions(),
    }
    columns = SUMMARY_COLUMNS if job.trust is None else TRUSTED_SUMMARY_COLUMNS
    _write_batch_file(out_dir / SUMMARY_CSV, csv_text(columns, batch.rows))
    _write_batch_file(out_dir / RUN_CONFIG, run_config)
    (out_dir / resume.RUN_MARKER).unlink(missing_ok=True)
    outdir.finish(out_dir)
    _log_done(batch, out_dir / SUMMARY_CSV)
    return batch


def _review(batch: BatchSummary, trust: TrustModel | None, options: PredictOptions) -> None:
    """Apply the batch review rule (if any) to the rows and sort them into the review queue."""
    request = options.review()
    if trust is not None and request.active:
        rows, batch.review = batch_review(batch.rows, trust, request)
        batch.rows[:] = rows
    batch.rows.sort(key=lambda row: _queue_order(row, trust is not None))


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
    score = row.get("predicted_score")
    predicted = "" if score is None else f", predicted score {csv_cell(score)}"
    log.info(
        "%s: %s nuclei, uncertainty %s%s, %s%s",
        prefix, row["n_nuclei"], csv_cell(row["uncertainty"]), predicted, took, review,
    )  # fmt: skip


def _log_done(batch: BatchSummary, summary_path: Path) -> None:
    kept = f" ({len(batch.kept)} kept from the interrupted run)" if batch.kept else ""
    log.info(
        "done: %d ok%s, %d failed; review queue in %s",
        batch.n_ok, kept, batch.n_failed, summary_path,
    )  # fmt: skip
    if batch.review is not None:
        log.info("review: %s", batch.review["statement"])
    for path, problem in batch.failures:
        message = problem if problem.startswith(str(path)) else f"{path}: {problem}"
        log.warning("  failed: %s", message)
