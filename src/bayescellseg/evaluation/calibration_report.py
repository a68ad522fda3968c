"""What ``calibrate`` fitted and how the validation figures changed: the report and its table."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bayescellseg import __version__
from bayescellseg.metrics.calibration import CalibrationAccumulator
from bayescellseg.postprocess.review import ReviewThresholds
from bayescellseg.postprocess.tune import ThresholdChoice
from bayescellseg.postprocess.watershed import WatershedParams

__all__ = ["FIT_REGIONS", "CalibrationReport", "format_calibration", "scores"]

FIT_REGIONS = ("band", "all")
_REGION_NAMES = {"band": "the boundary band", "all": "all pixels"}


@dataclass(frozen=True)
class CalibrationReport:
    """What :func:`calibrate_model` fitted and how the validation figures changed.

    Calibration dicts are ``{"all": {...}, "band": {...}}`` with ``nll`` (nats), ``ece``,
    ``brier`` and ``n`` (pixels); ``band`` = pixels within 3 px of a true nucleus boundary.
    Review statistics dicts hold ``precision``, ``recall`` and ``flagged_fraction`` of the
    flags as detectors of erroneous nuclei / images below the quality target.
    """

    model_dir: str
    data_root: str
    split: str | None
    n_images: int
    n_samples: int
    seed: int
    n_fit_pixels: int
    temperature_before: float
    temperature: float
    bias_before: float
    bias: float
    fit_region: str
    calibration_before: dict[str, dict[str, float]]
    calibration_after: dict[str, dict[str, float]]
    watershed_before: WatershedParams
    dsb_before: float
    watershed: WatershedParams
    dsb_after: float
    review_before: ReviewThresholds
    review: ReviewThresholds
    review_stats_before: dict[str, dict[str, float]]
    nucleus_choice: ThresholdChoice | None
    image_choice: ThresholdChoice
    quality_target: float
    seconds: float
    date: str = ""
    ids_sha256: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)
    precision: str = "fp32"

    def to_extras(self) -> dict[str, Any]:
        """The ``calibration`` entry of the model folder's ``calibration.json`` (JSON-serialisable)."""
        return {
            "date": self.date,
            "version": __version__,
            "data_root": self.data_root,
            "split": self.split,
            "n_images": self.n_images,
            "image_ids_sha256": self.ids_sha256,
            "n_samples": self.n_samples,
            "tta": False,
            "precision": self.precision,
            "seed": self.seed,
            "n_fit_pixels": self.n_fit_pixels,
            "temperature": {"before": self.temperature_before, "after": self.temperature},
            "logit_bias": {"before": self.bias_before, "after": self.bias},
            "fit_region": self.fit_region,
            "metrics": {"before": self.calibration_before, "after": self.calibration_after},
            "watershed": {
                "before": self.watershed_before.to_dict(),
                "dsb_before": self.dsb_before,
                "dsb_after": self.dsb_after,
            },
            "review": {
                "before": self.review_before.to_dict(),
                "stats_before": self.review_stats_before,
                "quality_target": self.quality_target,
                "nucleus": _choice_dict(self.nucleus_choice),
                "image": _choice_dict(self.image_choice),
            },
            "notes": list(self.notes),
            "seconds": round(self.seconds, 1),
        }


def _choice_dict(choice: ThresholdChoice | None) -> dict[str, Any] | None:
    return None if choice is None else dataclasses.asdict(choice)


def scores(acc: CalibrationAccumulator) -> dict[str, float]:
    res = acc.result()
    return {"nll": res.nll, "ece": res.ece, "brier": res.brier, "n": res.n}


def flag_stats(u: np.ndarray, err: np.ndarray, threshold: float) -> dict[str, float]:
    flagged = u > threshold
    tp = int((flagged & err).sum())
    return {
        "precision": tp / int(flagged.sum()) if flagged.any() else 1.0,
        "recall": tp / int(err.sum()) if err.any() else 1.0,
        "flagged_fraction": float(flagged.mean()) if u.size else 0.0,
    }


def format_calibration(report: CalibrationReport) -> str:
    """A small plain-text table of what was fitted (for the CLI)."""
    split = report.split or "all"
    lines = [
        f"Calibrated on {report.n_images} images ({split}) of {report.data_root}, "
        f"T = {report.n_samples} samples, seed {report.seed}, {report.precision}, "
        f"{report.seconds:.0f} s; "
        f"calibration fitted on {_REGION_NAMES[report.fit_region]}",
        "",
        f"{'':32}{'before':>10}{'after':>10}",
        f"{'temperature':32}{report.temperature_before:>10.3f}{report.temperature:>10.3f}",
        f"{'logit bias':32}{report.bias_before:>10.3f}{report.bias:>10.3f}",
    ]
    for scope, name in (("all", "all pixels"), ("band", "boundary band (3 px)")):
        for metric in ("nll", "ece"):
            b = report.calibration_before[scope][metric]
            a = report.calibration_after[scope][metric]
            lines.append(f"{metric.upper() + ', ' + name:32}{b:>10.4f}{a:>10.4f}")
    lines.append(f"{'DSB score (mean)':32}{report.dsb_before:>10.4f}{report.dsb_after:>10.4f}")
    for key in ("fg_threshold", "marker_threshold", "contour_weight"):
        b, a = getattr(report.watershed_before, key), getattr(report.watershed, key)
        lines.append(f"{'watershed ' + key:32}{b:>10.3g}{a:>10.3g}")
    for kind, choice in (("nucleus", report.nucleus_choice), ("image", report.image_choice)):
        key = f"{kind}_uncertainty"
        b, a = getattr(report.review_before, key), getattr(report.review, key)
        lines.append(f"{'review ' + key:32}{b:>10.3f}{a:>10.3f}")
        stats = report.review_stats_before[kind]
        after = (choice.precision, choice.recall) if choice else (float("nan"),) * 2
        lines.append(f"{'  precision of the flags':32}{stats['precision']:>10.3f}{after[0]:>10.3f}")
        lines.append(f"{'  recall of the flags':32}{stats['recall']:>10.3f}{after[1]:>10.3f}")
    lines.append("")
    lines.append(
        "Review flags are scored on the tuned segmentation; errors = nuclei without a true "
        f"match at IoU > 0.5, images with a DSB score below {report.quality_target:g}."
    )
    lines.extend(f"Note: {note}" for note in report.notes)
    return "\n".join(lines)
