"""One image of a ``predict`` batch: keep, refuse or segment it, and write its files."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bayescellseg.errors import BayesCellSegError, InputError, OutputError
from bayescellseg.inference.segmenter import PredictSettings, Segmenter
from bayescellseg.io.images import read_image
from bayescellseg.pipelines import outdir, resume
from bayescellseg.pipelines.outputs import write_outputs
from bayescellseg.prediction_folder import output_paths

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
"""The columns of ``summary.csv``."""


@dataclass
class BatchSummary:
    """Outcome of :func:`~bayescellseg.pipelines.predict.predict_batch`.

    Attributes:
        n_ok: Images segmented and written (including those kept by ``resume``).
        n_failed: Images that failed.
        failures: (input path, problem) of every failure, in input order.
        rows: The rows of ``summary.csv`` (review-queue order).
        kept: Names of the images whose earlier complete outputs were kept (``resume``).
        skipped: (path, reason) of input-folder entries left out on purpose.
    """

    n_ok: int = 0
    n_failed: int = 0
    failures: list[tuple[Path, str]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def fail(self, path: Path, problem: str) -> None:
        """Record a failed input (its ``summary.csv`` row says why)."""
        self.n_failed += 1
        self.failures.append((path, problem))
        self.rows.append({"image": path.stem, "status": f"failed: {problem}", "source": str(path)})


@dataclass(frozen=True)
class ImageJob:
    """What every image of a batch shares.

    Attributes:
        segmenter: The loaded model.
        settings: How to run it.
        out_dir: The output folder.
        overwrite: Replace existing outputs.
        resume: Keep complete earlier outputs.
        seed: The seed (recorded in ``name_summary.json``).
    """

    segmenter: Segmenter
    settings: PredictSettings
    out_dir: Path
    overwrite: bool
    resume: bool
    seed: int


def summary_row(
    name: str, source: Path, seconds: float | None, summary: dict[str, Any]
) -> dict[str, Any]:
    """A ``summary.csv`` row; ``seconds`` None (blank) for an image kept by ``resume``."""
    row = {k: summary.get(k) for k in SUMMARY_COLUMNS}
    reasons = summary.get("reasons") or []
    row.update(
        image=name,
        status="ok",
        source=str(source),
        seconds=None if seconds is None else round(seconds, 3),
        reasons="; ".join(map(str, reasons)) if isinstance(reasons, list) else str(reasons),
    )
    return row


def _existing(paths: dict[str, Path], job: ImageJob) -> tuple[str | None, bool]:
    """(problem, complete) for an image's existing outputs.

    ``complete`` is True when ``resume`` can keep them; ``problem`` is set when they block a
    run without ``overwrite`` / ``resume``.
    """
    existing = [p.name for p in paths.values() if p.exists()]
    if job.resume and len(existing) == len(paths):
        return None, True
    if existing and not (job.overwrite or job.resume):
        shown = ", ".join(existing[:3]) + (", ..." if len(existing) > 3 else "")
        return f"exists, pass overwrite=True to replace or resume=True to keep ({shown})", False
    return None, False


def predict_one(
    job: ImageJob, path: Path, used: dict[str, Path], batch: BatchSummary
) -> str | None:
    """Segment one image and write its outputs (or keep them); return a problem, or None."""
    name = path.stem
    if name in used:
        return f"output name {name!r} is already used by {used[name]}; rename one of them"
    used[name] = path
    paths = output_paths(job.out_dir, name)
    problem, complete = _existing(paths, job)
    if problem is not None:
        return problem
    summary = resume.kept_summary(paths["summary"]) if complete else None
    if summary is not None:
        batch.n_ok += 1
        batch.kept.append(name)
        batch.rows.append(summary_row(name, path, None, summary))
        return None
    start = time.perf_counter()
    try:
        result_summary = _segment_and_write(job, path)
    except (BayesCellSegError, OSError, ValueError, MemoryError) as err:
        if isinstance(err, (InputError, OutputError)):
            return str(err)
        return f"{type(err).__name__}: {err}"
    batch.n_ok += 1
    batch.rows.append(summary_row(name, path, time.perf_counter() - start, result_summary))
    return None


def _segment_and_write(job: ImageJob, path: Path) -> dict[str, Any]:
    """Read, segment and write one image (staged, then moved in); return its summary."""
    name = path.stem
    image = read_image(path)
    segmenter = job.segmenter
    result = segmenter.segment(segmenter.predict_maps(image, job.settings))
    info = {
        "image": name,
        "source": str(path),
        "height": int(image.shape[0]),
        "width": int(image.shape[1]),
        "model": str(segmenter.source),
        "seed": job.seed,
    }
    need = image.shape[0] * image.shape[1] * (4 * 4 + 4 + 3) + 2**20  # uncompressed bound
    outdir.check_free_space(job.out_dir, need, f"for the outputs of {path.name}")
    staging = outdir.staging_dir(job.out_dir, name)
    try:
        staged = output_paths(staging, name)
        threshold = segmenter.review.nucleus_uncertainty
        write_outputs(staged, image, result, info, True, threshold, shown_dir=job.out_dir)
        outdir.commit(staging, job.out_dir, [p.name for p in staged.values()])
    finally:
        if staging.exists():
            outdir.discard(staging)
    return result.summary_dict()
