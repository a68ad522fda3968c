"""Post-training calibration on held-out images: temperature, watershed settings, review thresholds.

:func:`calibrate_model` runs the model over the validation images **once**, keeping per image the
raw per-sample foreground logits (float16), the per-sample contour probabilities (uint8), the
mean contour map and the true labels in a temporary folder (memory-mapped, so memory stays
bounded), plus a seeded pixel subsample of the logits for the temperature fit. Then:

1. **Temperature and bias.** Prediction maps every stochastic sample's foreground logit to
   ``z / T + b`` before the sigmoid and averages the sample probabilities, so ``(T, b)``
   minimise the NLL of the *MC-averaged* probability ``p = mean_t sigmoid(z_t / T + b)``
   (:func:`fit_mc_calibration`; with ``bias=False`` only ``T``, :func:`fit_mc_temperature`).
   For a deterministic model (one sample) this is Platt / temperature scaling. By default the
   fit uses the pixels of the **boundary band** (within 3 px of a true nucleus boundary): away
   from boundaries almost every pixel is predicted with near certainty, so an all-pixel fit is
   dominated by them and corrects the few uncertain pixels off the nuclei (false positives) at
   the expense of the boundaries, where users read the uncertainty.
2. **Watershed.** :func:`~bayescellseg.postprocess.tune.tune_watershed` on the tempered maps
   (mean DSB2018 score); settings outside its grid keep the folder's current values.
3. **Review thresholds.** The tuned segmentation of every image, its per-sample segmentations and
   uncertainty maps give each nucleus its uncertainty (as ``Segmenter.predict`` computes it);
   :func:`~bayescellseg.postprocess.tune.review_thresholds_from_validation` picks the nucleus
   and image thresholds (F1 of flagging the real errors).
4. Everything is written into the model folder's ``config.json`` extras (``temperature``,
   ``logit_bias``, ``postprocess``, ``review``, ``calibration``) with :func:`~bayescellseg.model.store.update_extras`;
   ``Segmenter.load`` applies them from then on. Re-running replaces them.

"Before" figures use the folder's settings as they were (temperature 1, bias 0 and default
settings for a freshly trained model). The fit is made without test-time augmentation; all figures are
measured on the same validation images the settings were fitted on.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize
from scipy.special import expit

from bayescellseg import __version__
from bayescellseg.errors import InputError
from bayescellseg.inference.sampling import SamplingOptions, dequantize, quantize, sample_image
from bayescellseg.inference.segmenter import Segmenter
from bayescellseg.inference.uncertainty import sample_moments, uncertainty_maps
from bayescellseg.io.datasets import SampleRef
from bayescellseg.metrics.calibration import CalibrationAccumulator, boundary_band
from bayescellseg.metrics.matching import dsb_score
from bayescellseg.postprocess.nuclei import ReviewThresholds, analyse_segmentation
from bayescellseg.postprocess.tune import (
    ThresholdChoice,
    nucleus_errors,
    tune_review_thresholds,
    tune_watershed,
)
from bayescellseg.postprocess.watershed import WatershedParams, instances_from_maps

__all__ = [
    "CalibrationReport",
    "FitSet",
    "calibrate_model",
    "fit_mc_calibration",
    "fit_mc_temperature",
    "select_images",
    "format_calibration",
    "mc_nll",
]

TEMPERATURE_BOUNDS = (0.05, 20.0)
BIAS_BOUNDS = (-10.0, 10.0)
FIT_REGIONS = ("band", "all")
_REGION_NAMES = {"band": "the boundary band", "all": "all pixels"}
_CHUNK = 2**17  # pixels per chunk of the NLL evaluation (bounded temporaries)


# ----------------------------------------------------------------------------- temperature


def _check_fit_inputs(
    logits: np.ndarray, targets: np.ndarray, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    z = np.asarray(logits)
    if z.ndim == 1:
        z = z[None]
    y = np.asarray(targets).reshape(-1)
    if z.ndim != 2 or z.shape[1] != y.size or z.shape[0] < 1:
        raise ValueError(f"expected (T, N) logits and (N,) targets, got {z.shape} and {y.shape}")
    if y.size == 0:
        raise ValueError("no pixels to fit the temperature on")
    if not np.all(np.isfinite(z)):
        raise ValueError("logits must be finite")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("targets must be binary (bool or 0/1)")
    w = np.ones(y.size) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if w.size != y.size or not np.all(np.isfinite(w)) or w.min() < 0 or w.sum() <= 0:
        raise ValueError("weights must be finite, >= 0, not all 0, one per pixel")
    return z, y.astype(bool), w


def _nll_sum(
    z: np.ndarray, y: np.ndarray, w: np.ndarray, temperature: float, bias: float = 0.0
) -> float:
    """Weighted sum of ``-log`` of the MC-averaged likelihood, chunked over pixels.

    float32 inside a chunk (per-pixel error ~1e-7, twice as fast), float64 across pixels.
    """
    n_samples = z.shape[0]
    scale = np.float32(1.0 / temperature)
    total = 0.0
    for start in range(0, y.size, _CHUNK):
        zc = z[:, start : start + _CHUNK].astype(np.float32) * scale + np.float32(bias)
        # log sigmoid(+-z) of the true class: log sigmoid(x) = -softplus(-x)
        log_p = -np.logaddexp(np.float32(0.0), np.where(y[start : start + _CHUNK], -zc, zc))
        top = log_p.max(axis=0)
        log_mean = np.log(np.exp(log_p - top).sum(axis=0)) + top - np.float32(np.log(n_samples))
        total -= float(np.dot(w[start : start + _CHUNK], log_mean.astype(np.float64)))
    return total


def mc_nll(
    logits: np.ndarray,
    targets: np.ndarray,
    temperature: float = 1.0,
    weights: np.ndarray | None = None,
    bias: float = 0.0,
) -> float:
    """Mean NLL (nats) of the MC-averaged probability ``mean_t sigmoid(z_t / T + bias)``.

    Args:
        logits: (T, N) foreground logits of T samples at N pixels ((N,) = one sample).
        targets: (N,) binary truth.
        temperature: ``T > 0``.
        weights: Optional (N,) pixel weights (e.g. inverse sampling rates); the result is the
            weighted mean.
        bias: Added to the tempered logits.

    Returns:
        The (weighted) mean negative log-likelihood (no clipping; float32 per pixel).

    Raises:
        ValueError: Bad shapes, non-finite logits, non-binary targets or bad weights.
    """
    z, y, w = _check_fit_inputs(logits, targets, weights)
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not np.isfinite(bias):
        raise ValueError(f"bias must be finite, got {bias}")
    return _nll_sum(z, y, w, float(temperature), float(bias)) / float(w.sum())


def fit_mc_temperature(
    logits: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray | None = None,
    bounds: tuple[float, float] = TEMPERATURE_BOUNDS,
) -> float:
    """The temperature minimising :func:`mc_nll` (prediction's tempered MC average).

    A 13-point grid over ``log T`` finds the basin (the NLL of an average of tempered sigmoids
    need not be convex in ``1 / T``), then a bounded Brent search refines it to ``|d log T| <
    1e-4``. With one sample it equals ordinary temperature scaling.

    Args:
        logits: (T, N) raw foreground logits of T samples at N pixels ((N,) = one sample).
        targets: (N,) binary truth.
        weights: Optional (N,) pixel weights.
        bounds: Search interval of ``T``.

    Returns:
        The fitted temperature (a bound when the optimum lies outside).

    Raises:
        ValueError: Bad inputs or bounds.
    """
    z, y, w = _check_fit_inputs(logits, targets, weights)
    lo, hi = float(bounds[0]), float(bounds[1])
    if not 0.0 < lo < hi:
        raise ValueError(f"bounds must satisfy 0 < low < high, got {bounds}")
    grid = np.linspace(np.log(lo), np.log(hi), 13)
    values = [_nll_sum(z, y, w, float(np.exp(g))) for g in grid]
    k = int(np.argmin(values))
    res = optimize.minimize_scalar(
        lambda g: _nll_sum(z, y, w, float(np.exp(g))),
        bounds=(grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]),
        method="bounded",
        options={"xatol": 1e-4},
    )
    best = float(res.x) if res.fun <= values[k] else float(grid[k])
    return float(np.clip(np.exp(best), lo, hi))


def fit_mc_calibration(
    logits: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray | None = None,
    bias: bool = True,
) -> tuple[float, float]:
    """The temperature and logit bias minimising :func:`mc_nll`.

    Starts from :func:`fit_mc_temperature` (bias 0), then refines ``(log T, b)`` jointly
    (Nelder-Mead). The joint optimum is kept only if it lowers the NLL and lies inside
    ``TEMPERATURE_BOUNDS`` x ``BIAS_BOUNDS``. With one sample this is Platt scaling of the logit.

    Args:
        logits: (T, N) raw foreground logits of T samples at N pixels ((N,) = one sample).
        targets: (N,) binary truth.
        weights: Optional (N,) pixel weights.
        bias: Fit the bias too (False: temperature only, bias 0).

    Returns:
        ``(temperature, bias)``.

    Raises:
        ValueError: Bad inputs.
    """
    z, y, w = _check_fit_inputs(logits, targets, weights)
    temperature = fit_mc_temperature(z, y, w)
    if not bias:
        return temperature, 0.0

    def objective(x: np.ndarray) -> float:
        t, b = float(np.exp(x[0])), float(x[1])
        inside = TEMPERATURE_BOUNDS[0] <= t <= TEMPERATURE_BOUNDS[1]
        inside = inside and BIAS_BOUNDS[0] <= b <= BIAS_BOUNDS[1]
        return _nll_sum(z, y, w, t, b) if inside else np.inf

    start = np.array([np.log(temperature), 0.0])
    simplex = np.array([start, start + [0.2, 0.0], start + [0.0, 0.5]])
    res = optimize.minimize(
        objective,
        start,
        method="Nelder-Mead",
        options={"xatol": 1e-4, "fatol": 1e-9 * float(w.sum()), "initial_simplex": simplex},
    )
    if not (np.isfinite(res.fun) and res.fun < objective(start)):
        return temperature, 0.0
    return float(np.exp(res.x[0])), float(res.x[1])


# ----------------------------------------------------------------------------- collection


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
class _Stored:
    """One validation image's model outputs, stored as ``.npy`` files in ``folder``."""

    id: str
    folder: Path

    def load(self, name: str) -> np.ndarray:
        return np.load(self.folder / f"{name}.npy", mmap_mode="r")


def _collect(
    segmenter: Segmenter,
    refs: Sequence[SampleRef],
    options: SamplingOptions,
    workdir: Path,
    max_fit_pixels: int,
    seed: int,
    fit_region: str,
    log: Callable[[str], None],
) -> tuple[list[_Stored], FitSet]:
    """Run the model once per image; store its outputs and draw the fit subsample.

    The subsample is drawn from each image's boundary band (``fit_region="band"``) or from all
    its pixels (``"all"``), at most ``max_fit_pixels // n_images`` pixels per image.
    """
    from bayescellseg.data.normalize import normalize
    from bayescellseg.inference.segmenter import as_float_rgb

    rng = np.random.default_rng(seed)
    cap = max(1, max_fit_pixels // len(refs))
    stored: list[_Stored] = []
    fit_z, fit_y, fit_w = [], [], []
    for i, ref in enumerate(refs):
        sample = ref.load()
        image = normalize(as_float_rgb(sample.image, ref.id), mode=segmenter.config.normalization)
        out = sample_image(segmenter.model, segmenter.config, image, options)
        assert out.foreground_logits is not None  # keep_logits is set
        item = _Stored(ref.id, workdir / f"{i:05d}")
        item.folder.mkdir()
        np.save(item.folder / "logits.npy", out.foreground_logits)
        np.save(item.folder / "contour_samples.npy", out.contour)
        np.save(item.folder / "contour.npy", out.maps.contour)
        np.save(item.folder / "truth.npy", np.asarray(sample.labels, np.uint32))
        stored.append(item)
        if fit_region == "band":
            region = np.flatnonzero(boundary_band(np.asarray(sample.labels), width=3))
        else:
            region = np.arange(sample.labels.size)
        if region.size:
            pick = np.sort(rng.choice(region, size=min(cap, region.size), replace=False))
            z = out.foreground_logits.reshape(out.foreground_logits.shape[0], -1)
            fit_z.append(z[:, pick])
            fit_y.append(sample.labels.reshape(-1)[pick] > 0)
            fit_w.append(np.full(pick.size, region.size / pick.size))
        log(f"[{i + 1}/{len(refs)}] {ref.id}: {sample.labels.shape[0]}x{sample.labels.shape[1]}")
    if not fit_z:
        raise InputError("validation images", f"no pixels in the fit region {fit_region!r}")
    fit = FitSet(
        logits=np.concatenate(fit_z, axis=1).astype(np.float32),
        targets=np.concatenate(fit_y),
        weights=np.concatenate(fit_w),
    )
    return stored, fit


def _tempered(item: _Stored, temperature: float, bias: float) -> np.ndarray:
    """(T, H, W) float32 per-sample foreground probabilities ``sigmoid(z / T + bias)``."""
    z = np.asarray(item.load("logits"), np.float32)
    return expit(z / np.float32(temperature) + np.float32(bias))


# ----------------------------------------------------------------------------- report


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
        """The ``calibration`` entry written into the model folder (JSON-serialisable)."""
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


def _scores(acc: CalibrationAccumulator) -> dict[str, float]:
    res = acc.result()
    return {"nll": res.nll, "ece": res.ece, "brier": res.brier, "n": res.n}


def _flag_stats(u: np.ndarray, err: np.ndarray, threshold: float) -> dict[str, float]:
    flagged = u > threshold
    tp = int((flagged & err).sum())
    return {
        "precision": tp / int(flagged.sum()) if flagged.any() else 1.0,
        "recall": tp / int(err.sum()) if err.any() else 1.0,
        "flagged_fraction": float(flagged.mean()) if u.size else 0.0,
    }


# ----------------------------------------------------------------------------- data selection


def select_images(
    data_root: Path,
    split: str | None,
    split_file: Path | None,
    limit: int | None,
    training: dict[str, Any],
    model_dir: Path | None = None,
) -> list[SampleRef]:
    """The labelled images to calibrate (or evaluate a calibration) on, sorted by ID.

    Args:
        data_root: DSB2018 layout (with ``split``) or any supported dataset (``split=None``).
        split: ``"val"`` or ``"train"`` of the split file; None = every image of ``data_root``.
        split_file: Split JSON (None: the model folder's ``split.json``, else the bundled
            DSB2018 split).
        limit: Keep only the first N images.
        training: The model's ``training`` extras; a recorded split hash must match the file.
        model_dir: The model folder (for its ``split.json``).

    Returns:
        Lazy references to the images.

    Raises:
        InputError: Unknown split, wrong layout, another split than the model's, missing IDs or
            no images.
    """
    from bayescellseg.data.sources import split_refs
    from bayescellseg.io.datasets import list_samples

    if split is None:
        refs = sorted(list_samples(data_root), key=lambda r: r.id)
    else:
        if split not in ("train", "val"):
            raise InputError("--split", f"must be 'val', 'train' or 'all', got {split!r}")
        refs = split_refs(model_dir, data_root, split, split_file, training)
    if limit is not None:
        refs = refs[: max(int(limit), 0)]
    if not refs:
        raise InputError(data_root, "no images to calibrate on")
    return refs


# ----------------------------------------------------------------------------- main


def _review_tuning(
    stored: Sequence[_Stored],
    segmenter: Segmenter,
    calibration: tuple[float, float],
    params: WatershedParams,
    quality_target: float,
) -> tuple[ReviewThresholds, ThresholdChoice | None, ThresholdChoice, dict, list[str]]:
    """Per-nucleus / per-image uncertainties of the tuned segmentation, then the thresholds."""
    nucleus_u, nucleus_err, image_u, image_score = [], [], [], []
    for item in stored:
        fg = _tempered(item, *calibration)
        ct = item.load("contour_samples")
        truth = item.load("truth")
        maps = uncertainty_maps(sample_moments(fg, dequantize(ct)))
        maps = dataclasses.replace(maps, contour=np.asarray(item.load("contour"), np.float32))
        labels = instances_from_maps(maps.probability, maps.contour, params)
        samples = None
        if fg.shape[0] > 1:  # as Segmenter.predict: per-sample maps pass through uint8
            samples = [
                instances_from_maps(dequantize(quantize(f)), dequantize(c), params)
                for f, c in zip(fg, ct, strict=True)
            ]
        map_dict = {"probability": maps.probability, "entropy": maps.entropy}
        map_dict["epistemic"] = maps.epistemic
        records, summary = analyse_segmentation(
            labels, map_dict, maps.probability > params.fg_threshold, samples, segmenter.review
        )
        nucleus_u.extend(r.uncertainty for r in records)
        nucleus_err.extend(nucleus_errors(truth, labels).tolist())
        image_u.append(summary.uncertainty)
        image_score.append(dsb_score(truth, labels))
    u_n, e_n = np.asarray(nucleus_u, np.float64), np.asarray(nucleus_err, bool)
    u_i, e_i = np.asarray(image_u, np.float64), np.asarray(image_score) < quality_target
    old = segmenter.review
    before = {
        "nucleus": _flag_stats(u_n, e_n, old.nucleus_uncertainty),
        "image": _flag_stats(u_i, e_i, old.image_uncertainty),
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
    thresholds = dataclasses.replace(
        old,
        nucleus_uncertainty=nucleus.threshold if nucleus else old.nucleus_uncertainty,
        image_uncertainty=image.threshold,
    )
    return thresholds, nucleus, image, before, notes


def calibrate_model(
    model_dir: str | Path,
    data_root: str | Path,
    split: str | None = "val",
    n_samples: int | None = None,
    limit: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    *,
    split_file: str | Path | None = None,
    max_fit_pixels: int = 1_000_000,
    fit_region: str = "band",
    bias: bool = True,
    quality_target: float = 0.7,
    watershed_grid: dict[str, Sequence[float]] | None = None,
    write: bool = True,
    log: Callable[[str], None] | None = None,
    precision: str = "auto",
) -> CalibrationReport:
    """Fit the temperature, logit bias, watershed settings and review thresholds of a model.

    Args:
        model_dir: Model folder (``config.json`` + ``weights.safetensors``); updated in place.
        data_root: DSB2018 layout (with ``split``) or any supported dataset (``split=None``).
        split: ``"val"`` (default) or ``"train"`` of the stored split; None = every image.
        n_samples: Stochastic samples T (None: the model's default).
        limit: Use only the first N images (sorted by ID).
        seed: Seed of the samples and of the pixel subsample.
        device: ``cpu``, ``cuda``, ...
        split_file: Split JSON (None: the bundled DSB2018 split). When the model records the
            hash of its training split, a different split file is refused.
        max_fit_pixels: Pixels (over all images) in the temperature fit; each image gives
            ``max_fit_pixels // n_images`` and its pixels are weighted by its size.
        fit_region: ``"band"`` (default): fit on the pixels within 3 px of a true nucleus
            boundary; ``"all"``: on all pixels.
        bias: Fit a logit bias with the temperature (False: temperature only).
        quality_target: Images with a true DSB score below this count as needing review.
        watershed_grid: Grid for :func:`tune_watershed` (None: its default grid).
        write: Write the results into the model folder (False: only report them).
        log: Called with a progress line per image (None: silent).
        precision: Precision of the network's forward pass (``auto``, ``fp32``, ``bf16``,
            ``fp16``; see :mod:`bayescellseg.inference.precision`), as ``predict`` uses it.

    Returns:
        What was fitted and the validation figures before and after.

    Raises:
        InputError: Bad model folder, dataset, split or device.
    """
    if fit_region not in FIT_REGIONS:
        raise ValueError(f"fit_region must be one of {FIT_REGIONS}, got {fit_region!r}")
    if not 0.0 < quality_target <= 1.0:
        raise ValueError(f"quality_target must be in (0, 1], got {quality_target!r}")
    start = time.perf_counter()
    log = log or (lambda _line: None)
    model_dir, data_root = Path(model_dir), Path(data_root)
    segmenter = Segmenter.load(model_dir, device=device, precision=precision)
    refs = select_images(
        data_root, split, split_file, limit, segmenter.extras.get("training") or {}, model_dir
    )
    options = SamplingOptions(
        n_samples=n_samples, seed=seed, keep_logits=True, precision=segmenter.resolved_precision()
    )
    with tempfile.TemporaryDirectory(prefix="bayescellseg-calibrate-") as tmp:
        stored, fit = _collect(
            segmenter, refs, options, Path(tmp), max_fit_pixels, seed, fit_region, log
        )
        temperature, logit_bias = fit_mc_calibration(fit.logits, fit.targets, fit.weights, bias)
        before = (segmenter.temperature, segmenter.logit_bias)
        after = (temperature, logit_bias)
        notes = []
        if not TEMPERATURE_BOUNDS[0] * 1.001 < temperature < TEMPERATURE_BOUNDS[1] / 1.001:
            notes.append(f"the temperature hit its search bound {TEMPERATURE_BOUNDS}")
        log(f"temperature {temperature:.3f}, bias {logit_bias:+.3f}; tuning the watershed")

        accs = {
            when: {"all": CalibrationAccumulator(), "band": CalibrationAccumulator()}
            for when in ("before", "after")
        }
        prob_after, before_scores = [], []
        for item in stored:
            truth = np.asarray(item.load("truth"))
            band = boundary_band(truth, width=3)
            prob_before = _tempered(item, *before).mean(axis=0)
            labels = instances_from_maps(prob_before, item.load("contour"), segmenter.params)
            before_scores.append(dsb_score(truth, labels))
            prob_after.append(_tempered(item, *after).mean(axis=0))
            for when, prob in (("before", prob_before), ("after", prob_after[-1])):
                accs[when]["all"].add(prob, truth > 0)
                accs[when]["band"].add(prob, truth > 0, band)
        params, dsb_after = tune_watershed(
            prob_after,
            [item.load("contour") for item in stored],
            [item.load("truth") for item in stored],
            grid=watershed_grid,
            base=segmenter.params,
        )
        del prob_after
        log("tuning the review thresholds")
        review, nucleus, image, review_before, more = _review_tuning(
            stored, segmenter, after, params, quality_target
        )
    report = CalibrationReport(
        model_dir=str(model_dir),
        data_root=str(data_root),
        split=split,
        n_images=len(stored),
        n_samples=int(fit.logits.shape[0]),
        seed=seed,
        n_fit_pixels=int(fit.targets.size),
        temperature_before=segmenter.temperature,
        temperature=temperature,
        bias_before=segmenter.logit_bias,
        bias=logit_bias,
        fit_region=fit_region,
        calibration_before={k: _scores(acc) for k, acc in accs["before"].items()},
        calibration_after={k: _scores(acc) for k, acc in accs["after"].items()},
        watershed_before=segmenter.params,
        dsb_before=float(np.mean(before_scores)),
        watershed=params,
        dsb_after=float(dsb_after),
        review_before=segmenter.review,
        review=review,
        review_stats_before=review_before,
        nucleus_choice=nucleus,
        image_choice=image,
        quality_target=quality_target,
        seconds=time.perf_counter() - start,
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        ids_sha256=hashlib.sha256("\n".join(r.id for r in refs).encode()).hexdigest(),
        notes=tuple(notes + more),
        precision=options.precision,
    )
    if write:
        from bayescellseg.model.store import update_extras

        update_extras(
            model_dir,
            temperature=temperature,
            logit_bias=logit_bias,
            postprocess=params.to_dict(),
            review=review.to_dict(),
            calibration=report.to_extras(),
        )
    return report


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
