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

The output folder is locked for the run, and an image's files appear all together or not at
all (:mod:`bayescellseg.inference.outdir`); ``resume`` finishes an interrupted batch, keeping
the images whose outputs are complete (:mod:`bayescellseg.inference.resume`).
"""

from __future__ import annotations

import dataclasses
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bayescellseg import __version__
from bayescellseg.errors import BayesCellSegError, InputError, OutputError
from bayescellseg.inference import outdir, resume
from bayescellseg.inference.inputs import IMAGE_SUFFIXES, list_inputs, scan_inputs
from bayescellseg.inference.outputs import (
    OUTPUT_SUFFIXES,
    csv_text,
    fmt,
    label_dtype,
    output_paths,
    write_outputs,
)
from bayescellseg.inference.segmenter import Segmenter
from bayescellseg.io.atomic import write_json_atomic, write_text_atomic

__all__ = [
    "IMAGE_SUFFIXES",
    "OUTPUT_SUFFIXES",
    "PredictOptions",
    "label_dtype",
    "list_inputs",
    "output_paths",
    "predict_batch",
    "scan_inputs",
    "write_outputs",
]
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
        resume: Finish an interrupted batch in the same output folder: keep the images whose
            outputs are complete, redo the others (same model and options required).
        precision: Precision of the network's forward pass: ``auto`` (bf16 where the hardware
            computes it natively), ``fp32``, ``bf16`` or ``fp16`` (CUDA); see
            :mod:`bayescellseg.inference.precision`.
    """

    n_samples: int | None = None
    tta: bool = False
    device: str = "cpu"
    tile_size: int = 512
    overwrite: bool = False
    seed: int = 0
    diameter: float | str | None = None
    resume: bool = False
    precision: str = "auto"


@dataclass
class BatchSummary:
    """Outcome of :func:`predict_batch`.

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


def _summary_row(
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


def _queue_order(row: dict[str, Any]) -> tuple[int, float]:
    """Failed images last; otherwise most uncertain first (NaN uncertainty after numbers)."""
    if row["status"] != "ok":
        return (2, 0.0)
    value = row.get("uncertainty")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (1, 0.0)
    return (0, -float(value))


def _check_options(options: PredictOptions) -> None:
    if options.tile_size < 32:
        raise InputError("--tile", f"tile size must be at least 32 pixels, got {options.tile_size}")
    if options.n_samples is not None and options.n_samples < 0:
        raise InputError(
            "--samples", f"must be at least 0 (0 = one deterministic pass), got {options.n_samples}"
        )
    if options.resume and options.overwrite:
        raise InputError("--resume", "cannot be combined with --overwrite (which redoes all)")


def _check_batch_files(
    out_dir: Path, batch_files: dict[str, Path], options: PredictOptions
) -> None:
    """Refuse a fresh run into a folder that holds another run's batch files or leftovers."""
    if options.overwrite or options.resume:
        return
    for path in [*batch_files.values(), out_dir / resume.RUN_MARKER]:
        if path.exists():
            what = "an interrupted run's record" if path.name == resume.RUN_MARKER else "exists"
            raise FileExistsError(
                f"{path}: {what}; use --resume to finish that batch, --overwrite to replace "
                "the outputs, or another --out"
            )


def _base_config(segmenter: Segmenter, options: PredictOptions) -> dict[str, Any]:
    """The run-identity part of ``run_config.json``."""
    return {
        "model": str(segmenter.source),
        "model_config": segmenter.config.to_dict(),
        "temperature": segmenter.temperature,
        "logit_bias": segmenter.logit_bias,
        "postprocess": segmenter.params.to_dict(),
        "review": segmenter.review.to_dict(),
        "nucleus_diameter": segmenter.nucleus_diameter,
        "options": dataclasses.asdict(options),
    }


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
        InputError: Bad options, the model cannot be loaded, or ``resume`` into a folder
            written with other settings.
        OutputError: The output folder cannot be written, or another run holds its lock.
        FileExistsError: ``summary.csv`` / ``run_config.json`` exist and neither ``overwrite``
            nor ``resume`` is set.
    """
    out_dir = Path(out_dir)
    _check_options(options)
    segmenter = Segmenter.load(model_dir, device=options.device, precision=options.precision)
    segmenter.resolve_diameter(options.diameter)  # a bad --diameter fails before the batch
    outdir.check_writable(out_dir)
    with outdir.locked(out_dir):
        for note in outdir.recover(out_dir):
            print(f"note: {note}", flush=True)
        return _run_locked(inputs, segmenter, out_dir, options)


def _run_locked(
    inputs: list[Path], segmenter: Segmenter, out_dir: Path, options: PredictOptions
) -> BatchSummary:
    """The batch itself, once the output folder is locked and cleaned up."""
    batch_files = {"summary": out_dir / "summary.csv", "config": out_dir / "run_config.json"}
    _check_batch_files(out_dir, batch_files, options)
    base = _base_config(segmenter, options)
    identity = resume.run_identity(base)
    if options.resume:
        resume.check_same_run(out_dir, identity)
    write_json_atomic(out_dir / resume.RUN_MARKER, identity, overwrite=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    scan = scan_inputs(inputs)
    batch = BatchSummary(skipped=scan.skipped)
    for path, problem in scan.problems:
        _fail(batch, path, problem)
    _print_skipped(scan.skipped)
    print(
        f"bayescellseg predict: {len(scan.files)} image(s), model {segmenter.source}, "
        f"T={segmenter.n_samples(options.n_samples)}{' x 8 TTA' if options.tta else ''}",
        flush=True,
    )
    used: dict[str, Path] = {}
    for index, path in enumerate(scan.files, start=1):
        prefix = f"[{index}/{len(scan.files)}] {path.name}"
        problem = _predict_one(segmenter, path, out_dir, options, used, batch)
        _print_image(prefix, problem, batch)
        if problem is not None:
            _fail(batch, path, problem)
    batch.rows.sort(key=_queue_order)
    run_config = {
        **base,
        "n_samples_effective": segmenter.n_samples(options.n_samples),
        "precision_used": segmenter.resolved_precision(),
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
    _write_batch_file(batch_files["summary"], csv_text(SUMMARY_COLUMNS, batch.rows))
    _write_batch_file(batch_files["config"], run_config)
    (out_dir / resume.RUN_MARKER).unlink(missing_ok=True)
    outdir.finish(out_dir)
    _print_done(batch, batch_files["summary"])
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


def _print_skipped(skipped: list[tuple[Path, str]]) -> None:
    own = [p for p, reason in skipped if reason.startswith("output of an earlier")]
    if own:
        shown = ", ".join(p.name for p in own[:3]) + (", ..." if len(own) > 3 else "")
        print(f"skipped {len(own)} output file(s) of an earlier 'predict' ({shown})", flush=True)
    for path, reason in skipped:
        if not reason.startswith("output of an earlier"):
            print(f"skipped {path}: {reason}", flush=True)


def _print_image(prefix: str, problem: str | None, batch: BatchSummary) -> None:
    if problem is not None:
        print(f"{prefix}: FAILED: {problem}", flush=True)
        return
    row = batch.rows[-1]
    review = "  NEEDS REVIEW" if row["needs_review"] else ""
    took = "kept from the interrupted run" if row["seconds"] is None else f"{row['seconds']:.1f} s"
    print(
        f"{prefix}: {row['n_nuclei']} nuclei, uncertainty {fmt(row['uncertainty'])}, "
        f"{took}{review}",
        flush=True,
    )


def _print_done(batch: BatchSummary, summary_path: Path) -> None:
    kept = f" ({len(batch.kept)} kept from the interrupted run)" if batch.kept else ""
    print(f"done: {batch.n_ok} ok{kept}, {batch.n_failed} failed; review queue in {summary_path}")
    for path, problem in batch.failures:
        message = problem if problem.startswith(str(path)) else f"{path}: {problem}"
        print(f"  failed: {message}")


def _fail(batch: BatchSummary, path: Path, problem: str) -> None:
    batch.n_failed += 1
    batch.failures.append((path, problem))
    batch.rows.append({"image": path.stem, "status": f"failed: {problem}", "source": str(path)})


def _existing(paths: dict[str, Path], options: PredictOptions) -> tuple[str | None, bool]:
    """(problem, complete) for an image's existing outputs.

    ``complete`` is True when ``resume`` can keep them; ``problem`` is set when they block a
    run without ``overwrite`` / ``resume``.
    """
    existing = [p.name for p in paths.values() if p.exists()]
    if options.resume and len(existing) == len(paths):
        return None, True
    if existing and not (options.overwrite or options.resume):
        shown = ", ".join(existing[:3]) + (", ..." if len(existing) > 3 else "")
        return f"exists, use --overwrite to replace or --resume to keep ({shown})", False
    return None, False


def _predict_one(
    segmenter: Segmenter,
    path: Path,
    out_dir: Path,
    options: PredictOptions,
    used: dict[str, Path],
    batch: BatchSummary,
) -> str | None:
    """Segment one image and write its outputs; return a problem message, or None on success."""
    name = path.stem
    if name in used:
        return f"output name {name!r} is already used by {used[name]}; rename one of them"
    used[name] = path
    paths = output_paths(out_dir, name)
    problem, complete = _existing(paths, options)
    if problem is not None:
        return problem
    summary = resume.kept_summary(paths["summary"]) if complete else None
    if summary is not None:
        batch.n_ok += 1
        batch.kept.append(name)
        batch.rows.append(_summary_row(name, path, None, summary))
        return None
    start = time.perf_counter()
    try:
        result_summary = _segment_and_write(segmenter, path, out_dir, options)
    except (BayesCellSegError, OSError, ValueError, MemoryError) as err:
        if isinstance(err, (InputError, OutputError)):
            return str(err)
        return f"{type(err).__name__}: {err}"
    batch.n_ok += 1
    batch.rows.append(_summary_row(name, path, time.perf_counter() - start, result_summary))
    return None


def _segment_and_write(
    segmenter: Segmenter, path: Path, out_dir: Path, options: PredictOptions
) -> dict[str, Any]:
    """Read, segment and write one image (staged, then moved in); return its summary."""
    from bayescellseg.io.images import read_image

    name = path.stem
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
    need = image.shape[0] * image.shape[1] * (4 * 4 + 4 + 3) + 2**20  # uncompressed bound
    outdir.check_free_space(out_dir, need, f"for the outputs of {path.name}")
    staging = outdir.staging_dir(out_dir, name)
    try:
        staged = output_paths(staging, name)
        threshold = segmenter.review.nucleus_uncertainty
        write_outputs(staged, image, result, info, True, threshold, shown_dir=out_dir)
        outdir.commit(staging, out_dir, [p.name for p in staged.values()])
    finally:
        if staging.exists():
            outdir.discard(staging)
    return result.summary
