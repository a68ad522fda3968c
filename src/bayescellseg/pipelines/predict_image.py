"""One image of a ``predict`` batch: keep, refuse or segment it, and write its files."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bayescellseg.errors import BayesCellSegError, InputError, OutputError
from bayescellseg.export import DEFAULT_SAVE, ExportOptions
from bayescellseg.inference.segmenter import PredictSettings, Segmenter
from bayescellseg.io.images import LoadedImage, load_image
from bayescellseg.io.pixelsize import diameter_in_pixels
from bayescellseg.pipelines import outdir, resume
from bayescellseg.pipelines.outputs import write_image_outputs
from bayescellseg.pipelines.trusted import apply_trust
from bayescellseg.prediction_folder import output_paths
from bayescellseg.trust.model import TrustModel
from bayescellseg.trust.signals import SUMMARY_COLUMNS as TRUST_COLUMNS

log = logging.getLogger(__name__)

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
"""The columns of ``summary.csv`` (without a trust file)."""
TRUSTED_SUMMARY_COLUMNS = (*SUMMARY_COLUMNS[:2], *TRUST_COLUMNS, *SUMMARY_COLUMNS[2:])
"""The columns of ``summary.csv`` when the model folder has a ``trust.json``."""


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
        review: The batch review rule and its statement (None: no rule).
    """

    n_ok: int = 0
    n_failed: int = 0
    failures: list[tuple[Path, str]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    review: dict[str, Any] | None = None

    def fail(self, path: Path, problem: str) -> None:
        """Record a failed input (its ``summary.csv`` row says why)."""
        self.n_failed += 1
        self.failures.append((path, problem))
        self.rows.append({"image": path.stem, "status": f"failed: {problem}", "source": str(path)})


@dataclass(frozen=True)
class ImageInput:
    """How every image of a batch is read.

    Attributes:
        channel: The nuclear channel (``--channel``), if given.
        channels: Nuclear channels to combine (``--channels``), if given.
        pixel_size_um: ``--pixel-size``, overriding the files' own.
        diameter: ``--diameter`` as given (pixels, a length such as ``8um``, ``auto``, ``none``).
    """

    channel: int | None = None
    channels: tuple[int, ...] | None = None
    pixel_size_um: float | None = None
    diameter: float | str | None = "auto"


@dataclass(frozen=True)
class ImageJob:
    """What every image of a batch shares.

    Attributes:
        segmenter: The loaded model.
        settings: How to run it (its ``diameter`` is set per image from ``reading``).
        out_dir: The output folder.
        overwrite: Replace existing outputs.
        resume: Keep complete earlier outputs.
        seed: The seed (recorded in ``name_summary.json``).
        reading: How images are read.
        save: The outputs to write (``--save``).
        trust: The model folder's trust models (None: no trust signals).
    """

    segmenter: Segmenter
    settings: PredictSettings
    out_dir: Path
    overwrite: bool
    resume: bool
    seed: int
    reading: ImageInput = field(default_factory=ImageInput)
    save: frozenset[str] = DEFAULT_SAVE
    trust: TrustModel | None = None


def summary_row(
    name: str, source: Path, seconds: float | None, summary: dict[str, Any]
) -> dict[str, Any]:
    """A ``summary.csv`` row; ``seconds`` None (blank) for an image kept by ``resume``."""
    row = {k: summary.get(k) for k in TRUSTED_SUMMARY_COLUMNS}
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
    paths = output_paths(job.out_dir, name, job.save)
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


def _pixel_size(loaded: LoadedImage, reading: ImageInput) -> tuple[float | None, str | None]:
    """The pixel size (um) used for an image and where it came from (None, None: unknown)."""
    found = loaded.pixel_size
    given = reading.pixel_size_um
    if given is None:
        return (None, None) if found is None else (found.um, found.source)
    if found is not None and abs(found.um - given) > 1e-3 * given:
        log.info(
            "%s: pixel_size=%g um overrides the file's %g um (%s)",
            loaded.source, given, found.um, found.source,
        )  # fmt: skip
    return given, "--pixel-size"


def _read(job: ImageJob, path: Path) -> tuple[LoadedImage, float | None, str | None, Any]:
    """The image, its pixel size and source, and its diameter in pixels (or auto / None)."""
    reading = job.reading
    loaded = load_image(path, channel=reading.channel, channels=reading.channels)
    px, px_source = _pixel_size(loaded, reading)
    return loaded, px, px_source, diameter_in_pixels(reading.diameter, px, str(path))


def _segment_and_write(job: ImageJob, path: Path) -> dict[str, Any]:
    """Read, segment and write one image (staged, then moved in); return its summary."""
    name = path.stem
    loaded, px, px_source, diameter = _read(job, path)
    segmenter = job.segmenter
    settings = dataclasses.replace(job.settings, diameter=diameter)
    result = segmenter.segment(segmenter.predict_maps(loaded.image, settings))
    extra: dict[str, Any] = {}
    columns: tuple[tuple[str, tuple[float, ...]], ...] = ()
    if job.trust is not None:
        result, signals = apply_trust(result, job.trust, segmenter.params.fg_threshold)
        extra = signals.summary()
        columns = (("p_correct", tuple(float(p) for p in signals.p_correct)),)
    height, width = loaded.image.shape[:2]
    info = {
        "image": name,
        "source": str(path),
        "height": int(height),
        "width": int(width),
        "model": str(segmenter.source),
        "seed": job.seed,
        "pixel_size_um": px,
        "pixel_size_source": px_source,
        "channels": None if loaded.channels is None else list(loaded.channels),
    }
    summary = {**info, **result.summary_dict(), **extra}
    need = height * width * (4 * 4 + 4 + 3) + 2**20  # uncompressed bound
    outdir.check_free_space(job.out_dir, need, f"for the outputs of {path.name}")
    staging = outdir.staging_dir(job.out_dir, name)
    options = ExportOptions(
        save=job.save,
        pixel_size_um=px,
        overwrite=True,
        review_threshold=segmenter.review.nucleus_uncertainty,
        shown_dir=job.out_dir,
        nucleus_columns=columns,
    )
    try:
        written = write_image_outputs(staging, name, loaded, result, summary, options)
        outdir.commit(staging, job.out_dir, [p.name for p in written])
    finally:
        if staging.exists():
            outdir.discard(staging)
    return summary
