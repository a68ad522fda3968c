"""``bayescellseg calibrate``: temperature, bias, watershed and review thresholds on held-out images.

:func:`calibrate_model` runs the model over the validation images **once**, with the call
``predict`` makes (:meth:`~bayescellseg.inference.segmenter.Segmenter.predict_maps` with
``keep_logits``, then :meth:`~bayescellseg.inference.segmenter.Segmenter.segment`), scores
that prediction as it is (the "before" figures), and keeps per image the raw per-sample
foreground logits (float16), the per-sample contour probabilities (uint8), the mean contour map
and the true labels in a temporary folder (memory-mapped, so memory stays bounded), plus a
seeded pixel subsample of the logits for the temperature fit. Then:

1. **Temperature and bias** (:func:`~bayescellseg.evaluation.temperature.fit_mc_calibration`),
   by default on the pixels of the **boundary band** (within 3 px of a true nucleus boundary):
   away from boundaries almost every pixel is predicted with near certainty, so an all-pixel fit
   is dominated by them and corrects the few uncertain pixels off the nuclei at the expense of
   the boundaries, where users read the uncertainty.
2. **Watershed.** :func:`~bayescellseg.postprocess.tune.tune_watershed` on the recalibrated maps
   (:func:`~bayescellseg.inference.recalibrate.recalibrated`; mean DSB2018 score); settings
   outside its grid keep the folder's current values.
3. **Review thresholds.** Every image's recalibrated maps are segmented by
   :meth:`~bayescellseg.inference.segmenter.Segmenter.segment` with the tuned watershed, which
   gives each nucleus and image its uncertainty as ``predict`` computes it;
   :func:`~bayescellseg.postprocess.tune.tune_review_thresholds` picks the nucleus and image
   thresholds.
4. Everything is written to the model folder's ``calibration.json``
   (:func:`~bayescellseg.model.store.write_calibration`); ``config.json`` and the weights are
   never rewritten. ``Segmenter.load`` applies the file from then on; re-running replaces it.

The fit is made without test-time augmentation and at the image's own scale; all figures are
measured on the same validation images the settings were fitted on.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bayescellseg.data.selection import select_refs
from bayescellseg.errors import InputError
from bayescellseg.evaluation.calibration_report import (
    FIT_REGIONS,
    CalibrationReport,
    flag_stats,
    scores,
)
from bayescellseg.evaluation.temperature import TEMPERATURE_BOUNDS, fit_mc_calibration
from bayescellseg.inference.recalibrate import recalibrated
from bayescellseg.inference.result import PredictedMaps
from bayescellseg.inference.sampling import ImageSamples
from bayescellseg.inference.segmenter import PredictSettings, Segmenter
from bayescellseg.inference.uncertainty import UncertaintyMaps
from bayescellseg.io.datasets import SampleRef
from bayescellseg.metrics.calibration import CalibrationAccumulator, boundary_band
from bayescellseg.metrics.matching import dsb_score
from bayescellseg.model.store import write_calibration
from bayescellseg.postprocess.review import ReviewThresholds
from bayescellseg.postprocess.tune import (
    ThresholdChoice,
    nucleus_errors,
    tune_review_thresholds,
    tune_watershed,
)
from bayescellseg.postprocess.watershed import WatershedParams
from bayescellseg.progress import NoProgress, Progress

__all__ = ["CalibrateOptions", "FitSet", "Stored", "calibrate_model", "collect_predictions"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibrateOptions:
    """Options of :func:`calibrate_model`.

    Attributes:
        split: ``"val"`` (default) or ``"train"`` of the model's split; None: every image.
        split_file: An explicit split JSON (refused when the model recorded another one).
        n_samples: Stochastic samples T (None: the model's default).
        limit: Use only the first N images (sorted by ID).
        seed: Seed of the samples and of the pixel subsample.
        tile_size: Tile size of the prediction (as ``predict --tile``).
        max_fit_pixels: Pixels (over all images) in the temperature fit; each image gives
            ``max_fit_pixels // n_images`` and its pixels are weighted by its size.
        fit_region: ``"band"``: fit on the pixels within 3 px of a true nucleus boundary;
            ``"all"``: on all pixels.
        bias: Fit a logit bias with the temperature (False: temperature only).
        quality_target: Images with a true DSB score below this count as needing review.
        watershed_grid: Grid for :func:`tune_watershed` (None: its default grid).
        write: Write ``calibration.json`` into the model folder (False: only report).
    """

    split: str | None = "val"
    split_file: Path | None = None
    n_samples: int | None = None
    limit: int | None = None
    seed: int = 0
    tile_size: int = 512
    max_fit_pixels: int = 1_000_000
    fit_region: str = "band"
    bias: bool = True
    quality_target: float = 0.7
    watershed_grid: dict[str, Sequence[float]] | None = None
    write: bool = True

    def __post_init__(self) -> None:
        if self.fit_region not in FIT_REGIONS:
            raise ValueError(f"fit_region must be one of {FIT_REGIONS}, got {self.fit_region!r}")
        if not 0.0 < self.quality_target <= 1.0:
            raise ValueError(f"quality_target must be in (0, 1], got {self.quality_target!r}")


@dataclass(frozen=True)
class FitSet:
    """Pixel subsample for the temperature / bias fit.

    Attributes:
        logits: (T, N) float32 raw foreground logits.
        targets: (N,) bool truth.
        weights: (N,) pixels each subsampled pixel stands for (its image's region pixels /
            picks).
    """

    logits: np.ndarray
    targets: np.ndarray
    weights: np.ndarray


@dataclass(frozen=True)
class Stored:
    """One validation image's model outputs, stored as ``.npy`` files in ``folder``."""

    id: str
    folder: Path

    def load(self, name: str) -> np.ndarray:
        """A stored array (memory-mapped)."""
        return np.load(self.folder / f"{name}.npy", mmap_mode="r")

    def maps(self) -> PredictedMaps:
        """The kept part of the prediction: logits, per-sample contours, contour map."""
        contour = np.asarray(self.load("contour"), np.float32)
        empty = np.zeros_like(contour)
        pixel = UncertaintyMaps(empty, empty, empty, empty, empty, contour)
        samples = ImageSamples(
            pixel, np.zeros((0, 1, 1), np.uint8), self.load("contour_samples"), self.load("logits")
        )
        return PredictedMaps(samples)


@dataclass
class Collected:
    """What the single pass over the images gives: the stored outputs, the fit pixels, and
    the DSB scores and calibration of the prediction as it is (the "before" figures)."""

    stored: list[Stored] = field(default_factory=list)
    fit: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    before_dsb: list[float] = field(default_factory=list)
    before: dict[str, CalibrationAccumulator] = field(
        default_factory=lambda: {"all": CalibrationAccumulator(), "band": CalibrationAccumulator()}
    )

    def fit_set(self, fit_region: str) -> FitSet:
        """The pixel subsample of the temperature fit."""
        if not self.fit:
            raise InputError("validation images", f"no pixels in the fit region {fit_region!r}")
        z, y, w = zip(*self.fit, strict=True)
        return FitSet(
            np.concatenate(z, axis=1).astype(np.float32), np.concatenate(y), np.concatenate(w)
        )


def collect_predictions(
    segmenter: Segmenter,
    refs: Sequence[SampleRef],
    options: CalibrateOptions,
    workdir: Path,
    progress: Progress,
) -> Collected:
    """Predict every image once; score the prediction, store its outputs, draw the fit pixels.

    The subsample is drawn from each image's boundary band (``fit_region="band"``) or from all
    its pixels (``"all"``), at most ``max_fit_pixels // n_images`` pixels per image.
    """
    rng = np.random.default_rng(options.seed)
    cap = max(1, options.max_fit_pixels // len(refs))
    settings = PredictSettings(
        n_samples=options.n_samples,
        seed=options.seed,
        tile_size=options.tile_size,
        diameter=None,  # the raw logits of the fit exist on the image's own grid only
        keep_logits=True,
    )
    out = Collected()
    progress.start(len(refs), "calibrate")
    for i, ref in enumerate(refs):
        sample = ref.load()
        truth = np.asarray(sample.labels, np.uint32)
        maps = segmenter.predict_maps(sample.image, settings)
        logits = maps.samples.foreground_logits
        assert logits is not None  # keep_logits is set
        result = segmenter.segment(maps, stability=False)
        band = boundary_band(truth, width=3)
        out.before_dsb.append(dsb_score(truth, result.labels))
        out.before["all"].add(result.probability, truth > 0)
        out.before["band"].add(result.probability, truth > 0, band)
        item = Stored(ref.id, workdir / f"{i:05d}")
        item.folder.mkdir()
        np.save(item.folder / "logits.npy", logits)
        np.save(item.folder / "contour_samples.npy", maps.samples.contour)
        np.save(item.folder / "contour.npy", maps.maps.contour)
        np.save(item.folder / "truth.npy", truth)
        out.stored.append(item)
        region = np.flatnonzero(band) if options.fit_region == "band" else np.arange(truth.size)
        if region.size:
            pick = np.sort(rng.choice(region, size=min(cap, region.size), replace=False))
            z = logits.reshape(logits.shape[0], -1)
            out.fit.append((z[:, pick], truth.reshape(-1)[pick] > 0, np.full(pick.size, region.size / pick.size)))  # fmt: skip
        log.info("[%d/%d] %s: %dx%d", i + 1, len(refs), ref.id, *truth.shape)
        progress.advance(ref.id)
    progress.close()
    return out


def _tune_watershed(
    stored: Sequence[Stored],
    calibration: tuple[float, float],
    options: CalibrateOptions,
    base: WatershedParams,
) -> tuple[WatershedParams, float, dict[str, CalibrationAccumulator]]:
    """The tuned watershed and its mean DSB on the recalibrated maps, and their calibration."""  # fmt: skip
    after = {"all": CalibrationAccumulator(), "band": CalibrationAccumulator()}
    probabilities = []
    for item in stored:
        truth = np.asarray(item.load("truth"))
        prob = recalibrated(item.maps(), *calibration).maps.probability
        after["all"].add(prob, truth > 0)
        after["band"].add(prob, truth > 0, boundary_band(truth, width=3))
        probabilities.append(prob)
    params, dsb = tune_watershed(
        probabilities,
        [item.load("contour") for item in stored],
        [item.load("truth") for item in stored],
        grid=options.watershed_grid,
        base=base,
    )
    return params, float(dsb), after


def _review_tuning(
    stored: Sequence[Stored], segmenter: Segmenter, quality_target: float
) -> tuple[ReviewThresholds, ThresholdChoice | None, ThresholdChoice, dict, list[str]]:
    """Per-nucleus / per-image uncertainties of ``segmenter``'s segmentation (the tuned one, on
    recalibrated maps), then the thresholds."""
    nucleus_u, nucleus_err, image_u, image_score = [], [], [], []
    for item in stored:
        truth = item.load("truth")
        maps = recalibrated(item.maps(), segmenter.temperature, segmenter.logit_bias)
        result = segmenter.segment(maps)
        nucleus_u.extend(r.uncertainty for r in result.nuclei)
        nucleus_err.extend(nucleus_errors(truth, result.labels).tolist())
        image_u.append(result.summary.uncertainty)
        image_score.append(dsb_score(truth, result.labels))
    u_n, e_n = np.asarray(nucleus_u, np.float64), np.asarray(nucleus_err, bool)
    u_i, e_i = np.asarray(image_u, np.float64), np.asarray(image_score) < quality_target
    old = segmenter.review
    before = {
        "nucleus": flag_stats(u_n, e_n, old.nucleus_uncertainty),
        "image": flag_stats(u_i, e_i, old.image_uncertainty),
    }
    notes = []
    nucleus = None
    if u_n.size:
        nucleus = tune_review_thresholds(u_n, e_n)
    else:
        notes.append("no nucleus was predicted: the nucleus threshold was kept")
    # Images: Youden's J, not F1. When most validation images fall below the quality target,
    # F1 is maximised by flagging every image, which tells a user nothing; J balances the
    # flagged share of poor images against the flagged share of good ones.
    image = tune_review_thresholds(u_i, e_i, criterion="youden")
    thresholds = ReviewThresholds(
        **{
            **old.to_dict(),
            "nucleus_uncertainty": nucleus.threshold if nucleus else old.nucleus_uncertainty,
            "image_uncertainty": image.threshold,
        }
    )
    return thresholds, nucleus, image, before, notes


@dataclass(frozen=True)
class _Fitted:
    """The pieces of a finished calibration, for its report."""

    collected: Collected
    fit: FitSet
    calibration: tuple[float, float]
    after: dict[str, CalibrationAccumulator]
    params: WatershedParams
    dsb_after: float
    review: tuple[ReviewThresholds, ThresholdChoice | None, ThresholdChoice, dict, list[str]]
    notes: list[str]


def _report(
    segmenter: Segmenter,
    data_roots: Sequence[Path],
    options: CalibrateOptions,
    refs: Sequence[SampleRef],
    fitted: _Fitted,
    seconds: float,
) -> CalibrationReport:
    """The :class:`CalibrationReport` of a finished calibration that took ``seconds``."""
    review, nucleus, image, review_before, notes = fitted.review
    return CalibrationReport(
        model_dir=str(segmenter.source),
        data_root=", ".join(str(root) for root in data_roots),
        split=options.split,
        n_images=len(refs),
        n_samples=int(fitted.fit.logits.shape[0]),
        seed=options.seed,
        n_fit_pixels=int(fitted.fit.targets.size),
        temperature_before=segmenter.temperature,
        temperature=fitted.calibration[0],
        bias_before=segmenter.logit_bias,
        bias=fitted.calibration[1],
        fit_region=options.fit_region,
        calibration_before={k: scores(acc) for k, acc in fitted.collected.before.items()},
        calibration_after={k: scores(acc) for k, acc in fitted.after.items()},
        watershed_before=segmenter.params,
        dsb_before=float(np.mean(fitted.collected.before_dsb)),
        watershed=fitted.params,
        dsb_after=fitted.dsb_after,
        review_before=segmenter.review,
        review=review,
        review_stats_before=review_before,
        nucleus_choice=nucleus,
        image_choice=image,
        quality_target=options.quality_target,
        seconds=seconds,
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        ids_sha256=hashlib.sha256("\n".join(r.id for r in refs).encode()).hexdigest(),
        notes=tuple(fitted.notes + notes),
        precision=segmenter.resolved_precision(),
    )


def calibrate_model(
    segmenter: Segmenter,
    data_root: str | Path | Sequence[str | Path],
    options: CalibrateOptions | None = None,
    progress: Progress | None = None,
) -> CalibrationReport:
    """Fit the temperature, logit bias, watershed settings and review thresholds of a model.

    Args:
        segmenter: The model, loaded from its folder (``segmenter.source``, where
            ``calibration.json`` is written).
        data_root: A dataset folder (the model's split part of it, or every image), or
            several: their images are pooled into one fit (e.g. the held-out parts of every
            training source, so that the calibration is not one source's).
        options: What to fit on and how.
        progress: Told about every predicted image.

    Returns:
        What was fitted and the validation figures before and after.

    Raises:
        InputError: Bad dataset or split, or a Segmenter without a model folder to write to.
    """
    options = options or CalibrateOptions()
    start = time.perf_counter()
    if options.write and segmenter.source is None:
        raise InputError("model", "has no model folder to write calibration.json to")
    roots = [Path(data_root)] if isinstance(data_root, str | Path) else [Path(r) for r in data_root]
    if not roots:
        raise InputError("data_root", "no dataset folder given")
    training = segmenter.extras.get("training") or {}
    refs = [
        ref
        for root in roots
        for ref in select_refs(
            root, options.split, segmenter.source, training, options.split_file, options.limit
        )
    ]
    with tempfile.TemporaryDirectory(prefix="bayescellseg-calibrate-") as tmp:
        progress = progress or NoProgress()
        collected = collect_predictions(segmenter, refs, options, Path(tmp), progress)
        fit = collected.fit_set(options.fit_region)
        calibration = fit_mc_calibration(fit.logits, fit.targets, fit.weights, options.bias)
        notes = []
        if not TEMPERATURE_BOUNDS[0] * 1.001 < calibration[0] < TEMPERATURE_BOUNDS[1] / 1.001:
            notes.append(f"the temperature hit its search bound {TEMPERATURE_BOUNDS}")
        log.info("temperature %.3f, bias %+.3f; tuning the watershed", *calibration)
        params, dsb_after, after = _tune_watershed(
            collected.stored, calibration, options, segmenter.params
        )
        log.info("tuning the review thresholds")
        tuned = segmenter.with_calibration(
            temperature=calibration[0], logit_bias=calibration[1], postprocess=params
        )
        review = _review_tuning(collected.stored, tuned, options.quality_target)
    fitted = _Fitted(collected, fit, calibration, after, params, dsb_after, review, notes)
    report = _report(segmenter, roots, options, refs, fitted, time.perf_counter() - start)
    if options.write:
        write_calibration(
            segmenter.source,
            {
                "temperature": report.temperature,
                "logit_bias": report.bias,
                "postprocess": params.to_dict(),
                "review": report.review.to_dict(),
                "calibration": report.to_extras(),
            },
        )
    return report
