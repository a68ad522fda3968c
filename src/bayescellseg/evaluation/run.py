"""The report folder of an evaluation: stream the items through the scoring, write the files.

The runs themselves (predict a dataset, or read a prediction folder) are in
:mod:`bayescellseg.pipelines.evaluate`. Report folder contents: ``metrics.json`` (overall, per
dataset, out-of-distribution summary, the trust signals against truth under ``"trust"``,
missing files), ``per_image.csv``, ``evaluate_config.json`` (what was run), the figures
``reliability.png``, ``retention.png``, ``uncertainty_vs_score.png``, ``roc_pixel.png``,
``roc_nucleus.png`` (and, with trust signals, ``trust_scores.png``, ``trust_reliability.png``,
``trust_ood.png``), and ``report.html`` (self-contained). Every file is written atomically; an
existing one is refused up-front (before any work) unless ``overwrite`` is set.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bayescellseg import __version__
from bayescellseg.errors import InputError
from bayescellseg.evaluation.gallery import TopK, render_panels
from bayescellseg.evaluation.report import build_content, figures
from bayescellseg.evaluation.scoring import Evaluator, ImageRecord, per_image_columns
from bayescellseg.evaluation.sources import EvalItem, Failure
from bayescellseg.evaluation.trust_report import TRUST_FIGURE_FILES, trust_figures, trust_section
from bayescellseg.evaluation.trusted import ScoredTrust, TrustRequest, trust_block
from bayescellseg.inference.arguments import DEFAULT_DIAMETER
from bayescellseg.io.atomic import write_bytes_atomic, write_json_atomic, write_text_atomic
from bayescellseg.io.tables import csv_text, json_safe
from bayescellseg.progress import NoProgress, Progress
from bayescellseg.report.html import GalleryEntry, render_report
from bayescellseg.trust.model import TrustModel

log = logging.getLogger(__name__)

REPORT_FILES = ("metrics.json", "per_image.csv", "evaluate_config.json", "report.html")
FIGURE_FILES = (
    "reliability.png", "retention.png", "uncertainty_vs_score.png", "roc_pixel.png",
    "roc_nucleus.png", *TRUST_FIGURE_FILES,
)  # fmt: skip


@dataclass(frozen=True)
class EvaluateOptions:
    """Knobs of an evaluation run.

    Attributes:
        seed: Seed of the pixel subsamples (and of the stochastic samples with a model).
        max_pixels_per_image: Pixels per image kept for the pooled pixel uncertainty metrics.
        n_gallery: Images shown in each report gallery (most uncertain, worst).
        overwrite: Replace existing report files.
        diameter: With a model: typical nucleus diameter in pixels, ``"auto"`` (the
            default) or None (see :meth:`~bayescellseg.inference.segmenter.Segmenter.predict`).
        precision: With a model: precision of the network's forward pass (None: the
            Segmenter's own; see :mod:`bayescellseg.inference.precision`).
        split: With a model: ``"val"`` or ``"train"`` keeps only that part of the model's split
            (:mod:`bayescellseg.data.selection`); None: every image.
        n_samples: With a model: stochastic samples T (None: the model's default).
        tta: With a model: cross the samples with the 8 flips / rotations.
        limit: With a model: score only the first N images (sorted IDs) of each dataset.
        min_quality: Check the trust review rule at this needed DSB score (None: no rule).
        review_alpha: The rule's allowed share of unflagged images below ``min_quality``.
        review_fraction: Review budget whose share of the oracle's gain is measured.
    """

    seed: int = 0
    max_pixels_per_image: int = 10_000
    n_gallery: int = 4
    overwrite: bool = False
    diameter: float | str | None = DEFAULT_DIAMETER
    precision: str | None = None
    split: str | None = None
    n_samples: int | None = None
    tta: bool = False
    limit: int | None = None
    min_quality: float | None = None
    review_alpha: float = 0.1
    review_fraction: float = 0.2

    def __post_init__(self) -> None:
        if self.min_quality is not None and not 0.0 < self.min_quality <= 1.0:
            raise InputError("min_quality", f"must be in (0, 1], got {self.min_quality!r}")
        for name in ("review_alpha", "review_fraction"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise InputError(name, f"must be in (0, 1), got {getattr(self, name)!r}")

    def trust_request(self, model: TrustModel | None) -> TrustRequest:
        """What to measure of the trust signals, with the trust models (None: unknown)."""
        return TrustRequest(model, self.min_quality, self.review_alpha, self.review_fraction)


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
            raise FileExistsError(f"{path}: exists, pass overwrite=True to replace the report")


def per_image_csv(records: Sequence[ImageRecord]) -> str:
    """``per_image.csv`` text: one row per image, columns :func:`per_image_columns`."""
    return csv_text(per_image_columns(records), (r.row for r in records))


def scored_trust(records: Sequence[ImageRecord]) -> list[ScoredTrust]:
    """The scored images that carry trust signals, beside their truth."""
    return [
        ScoredTrust(
            r.dataset, r.trust, float(r.row["dsb"]), r.nucleus_p_correct, r.nucleus_has_match
        )  # fmt: skip
        for r in records
        if r.trust is not None
    ]


def _entry(item: EvalItem, record: ImageRecord) -> GalleryEntry:
    row = record.row
    pairs = zip(record.nucleus_ids, record.nucleus_has_match, strict=True)
    unmatched = {int(i) for i, ok in pairs if not ok}
    subtitle = (
        f"dataset {item.dataset}; DSB score {row['dsb']:.3f}; AP50 {row['ap50']:.3f}; "
        f"{row['n_true']} true / {row['n_pred']} predicted nuclei; "
        f"image uncertainty {row['image_uncertainty']:.4g}"
    )
    t = record.trust
    if t is not None:
        subtitle += (f"; predicted DSB score {t.predicted_score:.3f} "
                     f"[{t.predicted_score_low:.3f}, {t.predicted_score_high:.3f}]"
                     + ("; OOD" if t.ood else ""))  # fmt: skip
    return GalleryEntry(item.id, subtitle, render_panels(item, unmatched))


def consume(
    items: Iterable[EvalItem | Failure],
    options: EvaluateOptions,
    total: int,
    progress: Progress | None = None,
) -> RunState:
    """Score every item, logging one line per image."""
    progress = progress or NoProgress()
    progress.start(total, "evaluate")
    state = RunState(
        evaluator=Evaluator(options.seed, options.max_pixels_per_image),
        most_uncertain=TopK(options.n_gallery),
        worst=TopK(options.n_gallery),
    )
    for index, item in enumerate(items, start=1):
        prefix = f"[{index}/{total}]"
        progress.advance(item.id)
        if isinstance(item, Failure):
            state.failures.append(item)
            log.warning("%s %s: FAILED: %s", prefix, item.id, item.problem)
            continue
        record = state.evaluator.add(item)
        row = record.row
        state.most_uncertain.offer(row["image_uncertainty"], lambda i=item, r=record: _entry(i, r))
        state.worst.offer(-row["dsb"], lambda i=item, r=record: _entry(i, r))
        log.info(
            "%s %s/%s: DSB %.3f, %s/%s nuclei, uncertainty %.4g",
            prefix, item.dataset, item.id, row["dsb"], row["n_pred"], row["n_true"],
            row["image_uncertainty"],
        )  # fmt: skip
    progress.close()
    return state


def write_report(
    out_dir: Path,
    state: RunState,
    config: dict[str, Any],
    extra: dict[str, Any],
    overwrite: bool,
    trust: TrustRequest | None = None,
) -> dict[str, Any]:
    """Write every report file; return the metrics dict as saved in ``metrics.json``.

    ``trust``: the trust models and the review rule to measure the images' trust signals with
    (None: measured without a trust model, so without the review rule and the stated rates).
    """
    out_dir = Path(out_dir)
    records = state.evaluator.records
    if not records:
        raise InputError(out_dir, "no image could be scored: " + "; ".join(
            f"{f.id}: {f.problem}" for f in state.failures[:5]))  # fmt: skip
    scored = scored_trust(records)
    block = trust_block(scored, len(records), trust or TrustRequest())
    metrics = json_safe({**state.evaluator.metrics(), "trust": block, **extra,
                      "failures": [vars(f) for f in state.failures]})  # fmt: skip
    figs = figures(state.evaluator)
    trust_figs = trust_figures(scored, metrics["trust"])
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, (_, png) in {**figs, **trust_figs}.items():
        write_bytes_atomic(out_dir / name, png, overwrite)
    write_text_atomic(out_dir / "per_image.csv", per_image_csv(state.evaluator.records), overwrite)
    write_json_atomic(out_dir / "metrics.json", metrics, overwrite)
    write_json_atomic(out_dir / "evaluate_config.json", json_safe(config), overwrite)
    galleries = {
        "Most uncertain images": state.most_uncertain.entries(),
        "Worst images (lowest DSB score)": state.worst.entries(),
    }
    content = build_content(metrics, records, figs, galleries, config)
    content = replace(content, sections=(trust_section(metrics["trust"], trust_figs),))
    write_text_atomic(out_dir / "report.html", render_report(content), overwrite)
    log.info(
        "evaluated %d image(s): mean DSB score %.4f; report in %s",
        len(records), metrics["overall"]["segmentation"]["dsb"], out_dir / "report.html",
    )  # fmt: skip
    _log_trust(metrics["trust"])
    _log_failures(state.failures, len(records))
    return metrics


def _log_trust(block: dict[str, Any]) -> None:
    """One line on the trust signals against truth (or that there are none)."""
    if not block["available"]:
        log.info("trust signals absent: %s", block["reason"])
        return
    overall = block["overall"]
    score, nucleus = overall["score"], overall["nucleus"]
    review = overall.get("review")
    rule = "" if not review else (
        f"; unflagged images >= {review['min_quality']:g}: {_pct(review['realised_rate'])} "
        f"(stated {review['stated_rate']:.0%})")  # fmt: skip
    log.info(
        "trust signals: predicted DSB score MAE %s, interval coverage %s, p_correct ECE %s%s",
        _num(score.get("mae")), _pct(score.get("coverage")), _num(nucleus.get("ece")), rule,
    )  # fmt: skip


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _log_failures(failures: Sequence[Failure], n_scored: int) -> None:
    """Name every image that could not be used (the means above leave them out)."""
    if not failures:
        return
    log.warning(
        "%d image(s) could not be used; the scores above cover only the other %d:",
        len(failures), n_scored,
    )  # fmt: skip
    for failure in failures:
        log.warning("  failed: %s/%s: %s", failure.dataset, failure.id, failure.problem)


def run_config(command: str, **fields: Any) -> dict[str, Any]:
    """The ``evaluate_config.json`` of a run: what was run, with the command line and time."""
    return {
        "command": command,
        **fields,
        "argv": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "bayescellseg": __version__,
    }
