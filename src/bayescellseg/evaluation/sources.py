"""Where evaluation items come from: a ``predict`` output folder or a model run in memory.

A prediction folder holds, per image ``name`` (see :mod:`bayescellseg.prediction_folder`):
``name_labels.tif`` (required), ``name_probability.tif``, ``name_entropy.tif``,
``name_aleatoric.tif``, ``name_epistemic.tif``, ``name_nuclei.csv`` and ``name_summary.json``
(each optional; the calibration and uncertainty metrics that need a missing file are skipped);
the trust signals are read from the summary's ``predicted_score``, ... and the nucleus table's
``p_correct`` column when ``predict`` wrote them (:mod:`bayescellseg.evaluation.trusted`).
Truth is matched by name: the prediction ``name`` is scored against the truth sample whose ID is
``name`` (DSB2018 layout, label-image folder or Kaggle run-length CSV).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

from bayescellseg.errors import BayesCellSegError, InputError
from bayescellseg.evaluation.trusted import ImageTrust, trust_from_summary
from bayescellseg.io.datasets import SampleRef, list_samples
from bayescellseg.io.images import read_image, read_label_image
from bayescellseg.io.rle import read_rle_csv
from bayescellseg.prediction_folder import (
    LABELS_SUFFIX,
    MAP_NAMES,
    NUCLEI_SUFFIX,
    RUN_CONFIG,
    SUMMARY_SUFFIX,
    map_path,
)

UNCERTAINTY_MAPS = ("entropy", "aleatoric", "epistemic")
"""Pixel uncertainty maps scored as error detectors (bits, in [0, 1])."""


@dataclass(frozen=True)
class Prediction:
    """One predicted segmentation with whatever uncertainty came with it.

    Attributes:
        labels: (H, W) uint32 instance labels.
        maps: Subset of :data:`MAP_NAMES` -> (H, W) float32 map.
        nucleus_uncertainty: Nucleus label -> uncertainty score (from the nucleus table;
            derived from the maps when there is no table).
        image_uncertainty: Image uncertainty score (nan when unknown).
        predicted_quality: Expected DSB score from sample agreement (nan when unknown).
        review_threshold: Nucleus review threshold of the model that made the prediction
            (nan when unknown); the report's overlays centre their colour scale on it.
        trust: The trust signals (predicted score, OOD, ``p_correct``), None when absent.
    """

    labels: np.ndarray
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    nucleus_uncertainty: dict[int, float] = field(default_factory=dict)
    image_uncertainty: float = math.nan
    predicted_quality: float = math.nan
    review_threshold: float = math.nan
    trust: ImageTrust | None = None


@dataclass(frozen=True)
class EvalItem:
    """One image to score.

    Attributes:
        dataset: Dataset name (groups the metrics).
        id: Image name / ID.
        truth: (H, W) uint32 true instance labels.
        prediction: The prediction.
        image: The (H, W, 3) float image for the report figures, or None if unavailable.
    """

    dataset: str
    id: str
    truth: np.ndarray
    prediction: Prediction
    image: np.ndarray | None = None


@dataclass(frozen=True)
class Failure:
    """An image that could not be scored.

    Attributes:
        dataset: Dataset name.
        id: Image name / ID.
        problem: What went wrong.
    """

    dataset: str
    id: str
    problem: str


TruthLoader = Callable[[], tuple[np.ndarray, np.ndarray | None]]
"""Returns ``(truth labels, image or None)``."""


def prediction_names(pred_dir: Path) -> list[str]:
    """Sorted names of the predictions (``name_labels.tif`` files) in ``pred_dir``.

    Raises:
        InputError: ``pred_dir`` is not a folder or holds no ``*_labels.tif``.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise InputError(pred_dir, "prediction folder not found (expected the output of 'predict')")
    names = sorted(p.name[: -len(LABELS_SUFFIX)] for p in pred_dir.glob(f"*{LABELS_SUFFIX}"))
    if not names:
        raise InputError(
            pred_dir, f"no '*{LABELS_SUFFIX}' files: is this a 'predict' output folder?"
        )
    return names


def _read_float_map(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    try:
        data = tifffile.imread(path)
    except Exception as err:  # noqa: BLE001 - tifffile raises many types for bad files
        raise InputError(path, f"cannot read TIFF ({type(err).__name__}: {err})") from None
    data = np.asarray(data, dtype=np.float32)
    if data.shape != shape:
        raise InputError(path, f"map shape {data.shape} differs from the labels' {shape}")
    if not np.all(np.isfinite(data)):
        raise InputError(path, "map holds NaN or infinite values")
    return data


def _clip_probability(prob: np.ndarray) -> np.ndarray:
    return np.clip(prob, 0.0, 1.0)


def _nucleus_table(path: Path) -> tuple[dict[int, float], dict[int, float]]:
    """Label -> ``uncertainty`` and label -> ``p_correct`` of a ``name_nuclei.csv`` (empty
    cells and a missing ``p_correct`` column skipped)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(path, f"cannot read nucleus table ({err})") from None
    uncertainty: dict[int, float] = {}
    p_correct: dict[int, float] = {}
    for row in rows:
        try:
            label = int(row["label"])
            values = (float(row.get("uncertainty") or "nan"), float(row.get("p_correct") or "nan"))
        except (KeyError, TypeError, ValueError):
            raise InputError(
                path, "nucleus table needs integer 'label' and numeric 'uncertainty' columns"
            ) from None
        for table, value in zip((uncertainty, p_correct), values, strict=True):
            if math.isfinite(value):
                table[label] = value
    return uncertainty, p_correct


def _summary(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise InputError(path, f"cannot read summary JSON ({err})") from None
    return data if isinstance(data, dict) else {}


def _as_float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return math.nan


def mean_per_label(labels: np.ndarray, values: np.ndarray) -> dict[int, float]:
    """Mean of ``values`` over each nonzero label (vectorised with bincount)."""
    flat = labels.reshape(-1)
    ids, inverse = np.unique(flat, return_inverse=True)
    sums = np.bincount(inverse, weights=values.reshape(-1).astype(np.float64))
    counts = np.bincount(inverse)
    return {int(i): float(s / c) for i, s, c in zip(ids, sums, counts, strict=True) if i != 0}


def fallback_uncertainties(
    labels: np.ndarray, maps: dict[str, np.ndarray]
) -> tuple[dict[int, float], float]:
    """Nucleus and image uncertainty derived from the maps when no table / summary exists.

    Uses the epistemic map (mutual information) if present, else the entropy: the nucleus
    uncertainty is its mean inside the nucleus, the image uncertainty its mean over the
    predicted foreground (0 when nothing is predicted).

    Returns:
        ``(label -> uncertainty, image uncertainty)``; ``({}, nan)`` without such a map.
    """
    key = "epistemic" if "epistemic" in maps else "entropy" if "entropy" in maps else None
    if key is None:
        return {}, math.nan
    fg = labels > 0
    image = float(maps[key][fg].mean()) if fg.any() else 0.0
    return mean_per_label(labels, maps[key]), image


def read_prediction(
    pred_dir: Path, name: str, review_threshold: float = math.nan
) -> tuple[Prediction, dict]:
    """Read the prediction files of image ``name``.

    Args:
        pred_dir: A ``predict`` output folder.
        name: The image name (file prefix).
        review_threshold: The nucleus review threshold the prediction was made with
            (see :func:`run_review_threshold`), nan when unknown.

    Returns:
        The prediction and its ``name_summary.json`` content (``{}`` if absent).

    Raises:
        InputError: A file is unreadable or its shape does not match the labels.
    """
    pred_dir = Path(pred_dir)
    labels = read_label_image(pred_dir / f"{name}{LABELS_SUFFIX}")
    maps = {}
    for key in MAP_NAMES:
        path = map_path(pred_dir, name, key)
        if path.is_file():
            maps[key] = _read_float_map(path, labels.shape)
    if "probability" in maps:
        maps["probability"] = _clip_probability(maps["probability"])
    summary_path = pred_dir / f"{name}{SUMMARY_SUFFIX}"
    summary = _summary(summary_path) if summary_path.is_file() else {}
    table_path = pred_dir / f"{name}{NUCLEI_SUFFIX}"
    nucleus_u, image_u = fallback_uncertainties(labels, maps)
    p_correct: dict[int, float] = {}
    if table_path.is_file():
        nucleus_u, p_correct = _nucleus_table(table_path)
    if "uncertainty" in summary:
        image_u = _as_float(summary["uncertainty"])
    prediction = Prediction(
        labels=labels,
        maps=maps,
        nucleus_uncertainty=nucleus_u,
        image_uncertainty=image_u,
        predicted_quality=_as_float(summary.get("predicted_quality")),
        review_threshold=review_threshold,
        trust=trust_from_summary(summary, p_correct),
    )
    return prediction, summary


def run_review_threshold(pred_dir: Path) -> float:
    """The nucleus review threshold recorded in a ``predict`` folder's ``run_config.json``.

    Returns:
        The threshold, or nan when the file is absent, unreadable or has none.
    """
    try:
        config = json.loads((Path(pred_dir) / RUN_CONFIG).read_text(encoding="utf-8"))
        return _as_float(config["review"]["nucleus_uncertainty"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError, KeyError, TypeError):
        return math.nan


def _label_shape(path: Path) -> tuple[int, int]:
    try:
        with tifffile.TiffFile(path) as tif:
            return tuple(tif.pages[0].shape[:2])  # type: ignore[return-value]
    except Exception as err:  # noqa: BLE001
        raise InputError(path, f"cannot read TIFF ({type(err).__name__}: {err})") from None


def truth_loaders(
    truth: Path, shapes: dict[str, tuple[int, int]] | None = None
) -> dict[str, TruthLoader]:
    """Truth samples by ID, loaded lazily.

    Args:
        truth: DSB2018 layout folder, label-image folder, or Kaggle run-length CSV file.
        shapes: Image shapes by ID, needed for a CSV without ``Height``/``Width`` columns.

    Returns:
        ID -> loader of ``(labels, image or None)``.

    Raises:
        InputError: Unknown layout, unreadable CSV.
    """
    truth = Path(truth)
    if truth.is_file() and truth.suffix.lower() == ".csv":
        labels_by_id = read_rle_csv(truth, shapes=shapes)
        return {k: (lambda v=v: (v, None)) for k, v in labels_by_id.items()}
    if not truth.exists():
        raise InputError(
            truth, "truth not found (expected a DSB2018 folder, label-image folder or RLE CSV)"
        )

    def loader(ref: SampleRef) -> TruthLoader:
        def load() -> tuple[np.ndarray, np.ndarray | None]:
            sample = ref.load()
            return sample.labels, sample.image

        return load

    return {ref.id: loader(ref) for ref in list_samples(truth)}


def _source_image(summary: dict) -> np.ndarray | None:
    """The original image named in a prediction summary, if it can still be read."""
    source = summary.get("source")
    if not source or not Path(source).is_file():
        return None
    try:
        return read_image(source)
    except (BayesCellSegError, OSError, ValueError):
        return None


def _csv_placeholder_shapes(path: Path) -> dict[str, tuple[int, int]]:
    """A decodable shape for every ID of a run-length CSV without ``Height``/``Width``.

    ``read_rle_csv`` decodes every ID, also those without a prediction (which are only
    reported, never scored). For them the size is unknown, so a single column as long as the
    last run is used: in column-major order it holds the same pixel indices. Predicted IDs get
    their real shape from the prediction (which replaces these entries).
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            ends: dict[str, int] = {}
            sized: set[str] = set()
            for row in reader:
                image_id = (row.get("ImageId") or "").strip()
                if (row.get("Height") or "").strip() and (row.get("Width") or "").strip():
                    sized.add(image_id)
                numbers = [int(v) for v in (row.get("EncodedPixels") or "").split()]
                end = max(
                    (a + b - 1 for a, b in zip(numbers[::2], numbers[1::2], strict=False)),
                    default=1,
                )
                ends[image_id] = max(ends.get(image_id, 1), end)
    except (OSError, UnicodeDecodeError, csv.Error, ValueError, AttributeError):
        return {}  # read_rle_csv reports the problem with the file and line
    return {i: (e, 1) for i, e in ends.items() if i and i not in sized}


@dataclass(frozen=True)
class PredictionPlan:
    """The pairing of a prediction folder with its truth.

    Attributes:
        dataset: Dataset name (the truth's file or folder name).
        names: Names present in both, sorted.
        missing_predictions: Truth IDs without a prediction.
        missing_truths: Prediction names without a truth.
    """

    dataset: str
    names: tuple[str, ...]
    missing_predictions: tuple[str, ...]
    missing_truths: tuple[str, ...]


def plan_predictions(pred_dir: Path, truth: Path) -> tuple[PredictionPlan, dict[str, TruthLoader]]:
    """Match prediction names to truth IDs.

    Raises:
        InputError: No prediction matches any truth ID.
    """
    names = prediction_names(pred_dir)
    shapes = None
    if Path(truth).suffix.lower() == ".csv" and Path(truth).is_file():
        shapes = _csv_placeholder_shapes(Path(truth))
        for n in names:
            try:
                shapes[n] = _label_shape(Path(pred_dir) / f"{n}{LABELS_SUFFIX}")
            except InputError:
                pass  # reading the prediction fails again later: that image's failure, alone
    loaders = truth_loaders(truth, shapes)
    both = sorted(set(names) & set(loaders))
    if not both:
        example = next(iter(sorted(loaders)), "none")
        raise InputError(
            pred_dir,
            f"no prediction matches a truth ID in {truth} (predictions e.g. {names[0]!r}, "
            f"truth IDs e.g. {example!r}); names must be equal",
        )
    plan = PredictionPlan(
        dataset=Path(truth).stem if Path(truth).is_file() else Path(truth).name,
        names=tuple(both),
        missing_predictions=tuple(sorted(set(loaders) - set(names))),
        missing_truths=tuple(sorted(set(names) - set(loaders))),
    )
    return plan, loaders


def iter_prediction_items(
    pred_dir: Path, plan: PredictionPlan, loaders: dict[str, TruthLoader]
) -> Iterator[EvalItem | Failure]:
    """Yield one :class:`EvalItem` per matched name (or a :class:`Failure` if it cannot be read)."""
    threshold = run_review_threshold(pred_dir)
    for name in plan.names:
        try:
            prediction, summary = read_prediction(pred_dir, name, threshold)
            truth, image = loaders[name]()
            if truth.shape != prediction.labels.shape:
                raise InputError(
                    Path(pred_dir) / f"{name}{LABELS_SUFFIX}",
                    f"prediction shape {prediction.labels.shape} differs from truth {truth.shape}",
                )
            if image is None:
                image = _source_image(summary)
            if image is not None and image.shape[:2] != truth.shape:
                image = None
            yield EvalItem(plan.dataset, name, truth, prediction, image)
        except (BayesCellSegError, OSError, ValueError) as err:
            yield Failure(plan.dataset, name, str(err))


def dataset_names(paths: Sequence[Path]) -> list[str]:
    """Unique display names of dataset paths (folder or file name; ``-2``, ``-3`` on clashes)."""
    out: list[str] = []
    for path in paths:
        base = Path(path).stem if Path(path).is_file() else Path(path).name or str(path)
        name, k = base, 2
        while name in out:
            name, k = f"{base}-{k}", k + 1
        out.append(name)
    return out
