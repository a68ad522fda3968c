"""Evaluation runs: score predictions against truth and write the report folder.

Report folder contents: ``metrics.json`` (overall, per dataset, out-of-distribution summary,
missing files), ``per_image.csv``, ``evaluate_config.json`` (what was run), the figures
``reliability.png``, ``retention.png``, ``uncertainty_vs_score.png``, ``roc_pixel.png``,
``roc_nucleus.png``, and ``report.html`` (self-contained). Every file is written atomically; an
existing one is refused up-front (before any work) unless ``overwrite`` is set.
"""

from __future__ import annotations

import csv
import io
import math
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bayescellseg import __version__
from bayescellseg.data.sources import split_refs
from bayescellseg.errors import InputError
from bayescellseg.evaluation import sources
from bayescellseg.evaluation.gallery import TopK, render_panels
from bayescellseg.evaluation.report import build_content, figures
from bayescellseg.evaluation.scoring import PER_IMAGE_COLUMNS, Evaluator, ImageRecord
from bayescellseg.evaluation.sources import EvalItem, Failure
from bayescellseg.io.atomic import write_bytes_atomic, write_json_atomic, write_text_atomic

REPORT_FILES = ("metrics.json", "per_image.csv", "evaluate_config.json", "report.html")
FIGURE_FILES = (
    "reliability.png", "retention.png", "uncertainty_vs_score.png", "roc_pixel.png",
    "roc_nucleus.png",
)  # fmt: skip


@dataclass(frozen=True)
class EvaluateOptions:
    """Knobs of an evaluation run.

    Attributes:
        seed: Seed of the pixel subsamples (and of the stochastic samples with ``--model``).
        max_pixels_per_image: Pixels per image kept for the pooled pixel uncertainty metrics.
        n_gallery: Images shown in each report gallery (most uncertain, worst).
        overwrite: Replace existing report files.
        diameter: With ``--model``: typical nucleus diameter in pixels, ``"auto"`` or None
            (see :meth:`~bayescellseg.inference.segmenter.Segmenter.predict`).
        precision: With ``--model``: precision of the network's forward pass (``auto``,
            ``fp32``, ``bf16``, ``fp16``; see :mod:`bayescellseg.inference.precision`).
    """

    seed: int = 0
    max_pixels_per_image: int = 10_000
    n_gallery: int = 4
    overwrite: bool = False
    diameter: float | str | None = None
    precision: str = "auto"


@dataclass
class RunState:
    """What an evaluation collects while it streams over the items."""

    evaluator: Evaluator
    most_uncertain: TopK
    worst: TopK
    failures: list[Failure] = field(default_factory=list)


def check_outputs(out_dir: Path, overwrite: bool) -> None:
    """Refuse to start when report files exist and ``overwrite`` is off.

    Raises:
        FileExistsError: Naming the first existing file.
    """
    if overwrite:
        return
    for name in REPORT_FILES + FIGURE_FILES:
        path = Path(out_dir) / name
        if path.exists():
            raise FileExistsError(f"{path}: exists, use --overwrite to replace the report")


def _clean(value: Any) -> Any:
    """JSON-safe copy: nan/inf -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _csv_cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return "" if value is None else value


def per_image_csv(records: Sequence[ImageRecord]) -> str:
    """``per_image.csv`` text: one row per image, columns :data:`PER_IMAGE_COLUMNS`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(PER_IMAGE_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: _csv_cell(record.row.get(k)) for k in PER_IMAGE_COLUMNS})
    return buffer.getvalue()


def _entry(item: EvalItem, record: ImageRecord):
    from bayescellseg.report.html import GalleryEntry

    row = record.row
    pairs = zip(record.nucleus_ids, record.nucleus_has_match, strict=True)
    unmatched = {int(i) for i, ok in pairs if not ok}
    subtitle = (
        f"dataset {item.dataset}; DSB score {row['dsb']:.3f}; AP50 {row['ap50']:.3f}; "
        f"{row['n_true']} true / {row['n_pred']} predicted nuclei; "
        f"image uncertainty {row['image_uncertainty']:.4g}"
    )
    return GalleryEntry(item.id, subtitle, render_panels(item, unmatched))


def consume(items: Iterable[EvalItem | Failure], options: EvaluateOptions, total: int) -> RunState:
    """Score every item, printing one progress line per image."""
    state = RunState(
        evaluator=Evaluator(options.seed, options.max_pixels_per_image),
        most_uncertain=TopK(options.n_gallery),
        worst=TopK(options.n_gallery),
    )
    for index, item in enumerate(items, start=1):
        prefix = f"[{index}/{total}]"
        if isinstance(item, Failure):
            state.failures.append(item)
            print(f"{prefix} {item.id}: FAILED: {item.problem}", flush=True)
            continue
        record = state.evaluator.add(item)
        row = record.row
        state.most_uncertain.offer(row["image_uncertainty"], lambda i=item, r=record: _entry(i, r))
        state.worst.offer(-row["dsb"], lambda i=item, r=record: _entry(i, r))
        print(
            f"{prefix} {item.dataset}/{item.id}: DSB {row['dsb']:.3f}, "
            f"{row['n_pred']}/{row['n_true']} nuclei, uncertainty {row['image_uncertainty']:.4g}",
            flush=True,
        )
    return state


def write_report(
    out_dir: Path, state: RunState, config: dict[str, Any], extra: dict[str, Any], overwrite: bool
) -> dict[str, Any]:
    """Write every report file; return the metrics dict as saved in ``metrics.json``."""
    from bayescellseg.report.html import render_report

    out_dir = Path(out_dir)
    if not state.evaluator.records:
        raise InputError(out_dir, "no image could be scored: " + "; ".join(
            f"{f.id}: {f.problem}" for f in state.failures[:5]))  # fmt: skip
    metrics = _clean({**state.evaluator.metrics(), **extra,
                      "failures": [vars(f) for f in state.failures]})  # fmt: skip
    figs = figures(state.evaluator)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, (_, png) in figs.items():
        write_bytes_atomic(out_dir / name, png, overwrite)
    write_text_atomic(out_dir / "per_image.csv", per_image_csv(state.evaluator.records), overwrite)
    write_json_atomic(out_dir / "metrics.json", metrics, overwrite)
    write_json_atomic(out_dir / "evaluate_config.json", _clean(config), overwrite)
    galleries = {
        "Most uncertain images": state.most_uncertain.entries(),
        "Worst images (lowest DSB score)": state.worst.entries(),
    }
    content = build_content(metrics, state.evaluator.records, figs, galleries, config)
    write_text_atomic(out_dir / "report.html", render_report(content), overwrite)
    overall = metrics["overall"]["segmentation"]
    n_scored = len(state.evaluator.records)
    print(
        f"evaluated {n_scored} image(s): mean DSB score {overall['dsb']:.4f}; "
        f"report in {out_dir / 'report.html'}",
        flush=True,
    )
    _print_failures(state.failures, n_scored)
    return metrics


def _print_failures(failures: Sequence[Failure], n_scored: int) -> None:
    """Name every image that could not be used (the means above leave them out)."""
    if not failures:
        return
    print(
        f"{len(failures)} image(s) could not be used; the scores above cover only the other "
        f"{n_scored}:",
        file=sys.stderr,
        flush=True,
    )
    for failure in failures:
        print(f"  failed: {failure.dataset}/{failure.id}: {failure.problem}", file=sys.stderr)


def _config(command: str, **fields: Any) -> dict[str, Any]:
    return {
        "command": command,
        **fields,
        "argv": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "bayescellseg": __version__,
    }


def evaluate_predictions(
    pred_dir: str | Path,
    truth: str | Path,
    out_dir: str | Path,
    overwrite: bool = False,
    options: EvaluateOptions | None = None,
) -> dict[str, Any]:
    """Score a ``predict`` output folder against truth and write the report folder.

    Args:
        pred_dir: Folder written by ``bayescellseg predict``.
        truth: DSB2018 layout folder, label-image folder or Kaggle run-length CSV.
        out_dir: Report folder to create.
        overwrite: Replace existing report files (overrides ``options.overwrite`` when True).
        options: Further options.

    Returns:
        The metrics written to ``metrics.json``.

    Raises:
        InputError: Unreadable inputs, or no prediction matches a truth ID.
        FileExistsError: Report files exist and ``overwrite`` is off.
    """
    options = options or EvaluateOptions()
    overwrite = overwrite or options.overwrite
    check_outputs(Path(out_dir), overwrite)
    plan, loaders = sources.plan_predictions(Path(pred_dir), Path(truth))
    print(
        f"bayescellseg evaluate: {len(plan.names)} prediction(s) matched to truth in {truth}; "
        f"{len(plan.missing_predictions)} truth image(s) without prediction, "
        f"{len(plan.missing_truths)} prediction(s) without truth",
        flush=True,
    )
    items = sources.iter_prediction_items(Path(pred_dir), plan, loaders)
    state = consume(items, options, len(plan.names))
    extra = {
        "missing_predictions": list(plan.missing_predictions),
        "missing_truths": list(plan.missing_truths),
    }
    config = _config("evaluate --pred", pred=str(pred_dir), truth=str(truth),
                     out=str(out_dir), options=vars(options) | {"overwrite": overwrite})  # fmt: skip
    return write_report(Path(out_dir), state, config, extra, overwrite)


def _refs(segmenter: Any, path: Path, split: str | None, limit: int | None) -> list:
    """The dataset's images to score: all of them, or the model's split part."""
    if split is None:
        return sources.select_samples(path, None, limit)
    training = segmenter.extras.get("training") or {}
    refs = split_refs(segmenter.source, path, split, None, training)
    return refs[: max(int(limit), 0)] if limit is not None else refs


def evaluate_model(
    model_dir: str | Path | None,
    data: Sequence[str | Path],
    out_dir: str | Path,
    split: str | None = None,
    n_samples: int | None = None,
    tta: bool = False,
    overwrite: bool = False,
    limit: int | None = None,
    device: str = "cpu",
    options: EvaluateOptions | None = None,
) -> dict[str, Any]:
    """Predict every image of one or more datasets in memory, score them, write the report.

    Args:
        model_dir: Model folder (None = the bundled model).
        data: Dataset folders (DSB2018 layout or label-image folders); each is one dataset.
        out_dir: Report folder to create.
        split: ``"val"`` or ``"train"``: keep only that part of the model's split (its
            ``split.json``, else the bundled DSB2018 split), with the labels the split used
            (:func:`bayescellseg.data.sources.split_refs`).
        n_samples: Stochastic samples T (None = the model's default).
        tta: Cross the samples with the 8 flips / rotations.
        overwrite: Replace existing report files.
        limit: Score only the first N images (sorted IDs) of each dataset.
        device: Torch device.
        options: Further options (``options.seed`` also seeds the stochastic samples).

    Returns:
        The metrics written to ``metrics.json``.
    """
    from bayescellseg.inference.segmenter import Segmenter

    options = options or EvaluateOptions()
    overwrite = overwrite or options.overwrite
    check_outputs(Path(out_dir), overwrite)
    if limit is not None and limit < 1:
        raise InputError("--limit", f"must be at least 1, got {limit}")
    if split is not None and split not in ("train", "val"):
        raise InputError("--split", f"unknown split {split!r}; use 'val' or 'train'")
    segmenter = Segmenter.load(model_dir, device=device, precision=options.precision)
    paths = [Path(p) for p in data]
    names = sources.dataset_names(paths)
    datasets = [(n, _refs(segmenter, p, split, limit)) for n, p in zip(names, paths, strict=True)]
    diameter = segmenter.resolve_diameter(options.diameter)
    total = sum(len(refs) for _, refs in datasets)
    print(f"bayescellseg evaluate: {total} image(s) in {len(datasets)} dataset(s), "
          f"model {segmenter.source}", flush=True)  # fmt: skip
    items = sources.iter_model_items(segmenter, datasets, n_samples, tta, options.seed, diameter)
    state = consume(items, options, total)
    config = _config(
        "evaluate --model", model=str(segmenter.source), data=[str(p) for p in paths],
        datasets=names, split=split, n_samples=n_samples,
        n_samples_effective=segmenter.n_samples(n_samples), tta=tta, limit=limit, device=device,
        precision_used=segmenter.resolved_precision(),
        out=str(out_dir), options=vars(options) | {"overwrite": overwrite},
    )  # fmt: skip
    return write_report(Path(out_dir), state, config, {}, overwrite)


def _truth_from_sources(pred_dir: Path) -> Path:
    """The DSB2018 root the predictions came from, from their ``source`` paths."""
    import json

    roots = set()
    for path in sorted(Path(pred_dir).glob("*_summary.json")):
        try:
            source = json.loads(path.read_text(encoding="utf-8")).get("source")
        except (OSError, ValueError, RecursionError, AttributeError):
            continue
        if source:
            p = Path(source)  # <root>/<id>/images/<id>.png
            if p.parent.name == "images" and p.parent.parent.name == p.stem:
                roots.add(p.parents[2])
    if len(roots) != 1:
        raise InputError(pred_dir, "cannot tell where the ground truth is; pass truth explicitly")
    return roots.pop()


def report_from_predictions(
    pred_dir: str | Path,
    out_dir: str | Path,
    truth: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Evaluate a ``predict`` output folder and return the path of ``report.html``.

    Args:
        pred_dir: Folder written by ``bayescellseg predict``.
        out_dir: Report folder.
        truth: Ground truth; None = the DSB2018 folder the predicted images were read from
            (found from the ``source`` recorded in each ``name_summary.json``, e.g. the bundled
            samples).
        overwrite: Replace an existing report.

    Returns:
        Path of the HTML report.
    """
    truth_path = Path(truth) if truth is not None else _truth_from_sources(Path(pred_dir))
    evaluate_predictions(pred_dir, truth_path, out_dir, overwrite=overwrite)
    return Path(out_dir) / "report.html"
