"""The fitted trust models of a model folder, stored as ``trust.json`` beside ``config.json``.

``trust.json`` holds, all fitted on held-out images (never the network's training images):

* ``scores``: per score (``dsb``, ``ap50``) a ridge model from :data:`IMAGE_FEATURES` to the
  image's score, the split-conformal half-width of its ``1 - alpha`` interval, and the
  calibration pairs (out-of-fold prediction, true score) that review rules are computed from;
* ``nucleus``: a logistic model from :data:`NUCLEUS_FEATURES` to ``P(the nucleus matches a true
  nucleus at IoU > 0.5)`` (``p_correct``) and the ``p_correct`` below which a nucleus is flagged;
* ``ood``: the standardisation, mean and precision matrix of the image features and the
  distance threshold above which an image is flagged as unlike the fitting images;
* ``ood_bottleneck`` (optional; files without it behave as before): the same for the network's
  bottleneck statistic (:attr:`~bayescellseg.inference.result.Result.bottleneck`), stored in
  low-rank form, with its own threshold; an image is OOD when either distance is above its
  threshold;
* ``provenance``: sources, counts, seed and command.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bayescellseg.errors import InputError
from bayescellseg.trust.conformal import ReviewRule, review_threshold
from bayescellseg.trust.features import IMAGE_FEATURES, NUCLEUS_FEATURES
from bayescellseg.trust.linear import LogisticModel, RidgeModel, Standardizer
from bayescellseg.trust.ood import LowRankMahalanobis, Mahalanobis, distance_from_dict

TRUST_FILE = "trust.json"
FORMAT_VERSION = 1
SCORES = ("dsb", "ap50")


@dataclass(frozen=True)
class ScoreModel:
    """Predicted image score with a split-conformal interval.

    Attributes:
        ridge: Features -> score.
        features: The names of the :data:`IMAGE_FEATURES` the ridge model reads, in order.
        half_width: Conformal quantile of the out-of-fold absolute residuals.
        alpha: Miscoverage level of the interval.
        calibration_predicted: Out-of-fold predicted scores of the fitting images.
        calibration_true: Their true scores.
    """

    ridge: RidgeModel
    features: tuple[str, ...]
    half_width: float
    alpha: float
    calibration_predicted: np.ndarray
    calibration_true: np.ndarray

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(predicted, low, high) for (n, len(IMAGE_FEATURES)) features, clipped to [0, 1]."""
        columns = [IMAGE_FEATURES.index(name) for name in self.features]
        centre = self.ridge.predict(np.asarray(x, np.float64)[:, columns])
        return (np.clip(centre, 0.0, 1.0), np.clip(centre - self.half_width, 0.0, 1.0),
                np.clip(centre + self.half_width, 0.0, 1.0))  # fmt: skip

    def review_rule(self, min_quality: float, alpha: float = 0.1, delta: float = 0.1) -> ReviewRule:
        """The Learn-then-Test review rule for ``min_quality`` on the calibration pairs."""
        return review_threshold(
            self.calibration_predicted, self.calibration_true, min_quality, alpha, delta
        )

    def review_fraction_threshold(self, fraction: float) -> float:
        """Predicted score below which ``fraction`` of the calibration images fall."""
        return float(np.quantile(self.calibration_predicted, fraction))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "ridge": self.ridge.to_dict(),
            "features": list(self.features),
            "half_width": self.half_width,
            "alpha": self.alpha,
            "calibration_predicted": self.calibration_predicted.tolist(),
            "calibration_true": self.calibration_true.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoreModel:
        """Inverse of :meth:`to_dict`."""
        return cls(
            ridge=RidgeModel.from_dict(data["ridge"]),
            features=_known_features(data["features"]),
            half_width=float(data["half_width"]),
            alpha=float(data["alpha"]),
            calibration_predicted=np.asarray(data["calibration_predicted"], np.float64),
            calibration_true=np.asarray(data["calibration_true"], np.float64),
        )


@dataclass(frozen=True)
class OODModel:
    """Mahalanobis distance of standardised features (the image features, or the bottleneck
    statistic), with its threshold.

    Attributes:
        standardizer: Feature standardisation of the fitting images.
        mahalanobis: Mean and precision (or its low-rank form) of the standardised features.
        threshold: Flag an image when its distance exceeds this.
        alpha: Intended share of in-distribution images flagged.
    """

    standardizer: Standardizer
    mahalanobis: Mahalanobis | LowRankMahalanobis
    threshold: float
    alpha: float

    @property
    def n_features(self) -> int:
        """Length of the feature vector it reads."""
        return int(self.standardizer.mean.size)

    def distance(self, x: np.ndarray) -> np.ndarray:
        """(n,) distances of (n, k) image features."""
        return self.mahalanobis.distance(self.standardizer(x))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"standardizer": self.standardizer.to_dict(),
                "mahalanobis": self.mahalanobis.to_dict(), "threshold": self.threshold,
                "alpha": self.alpha}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OODModel:
        """Inverse of :meth:`to_dict`."""
        return cls(Standardizer.from_dict(data["standardizer"]),
                   distance_from_dict(data["mahalanobis"]), float(data["threshold"]),
                   float(data["alpha"]))  # fmt: skip


@dataclass(frozen=True)
class TrustModel:
    """Everything in ``trust.json``.

    Attributes:
        scores: ``dsb`` and ``ap50`` score models.
        nucleus: Logistic ``p_correct`` model.
        nucleus_review_below: A nucleus is flagged when ``p_correct`` is below this.
        ood: Out-of-distribution model of the image features.
        provenance: Sources, counts, seed, command.
        ood_bottleneck: Out-of-distribution model of the network's bottleneck statistic (None:
            the file has none, and only ``ood`` flags).
    """

    scores: dict[str, ScoreModel]
    nucleus: LogisticModel
    nucleus_review_below: float
    ood: OODModel
    provenance: dict[str, Any] = field(default_factory=dict)
    ood_bottleneck: OODModel | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the ``trust.json`` content; ``ood_bottleneck`` only when fitted)."""
        extra = (
            {} if self.ood_bottleneck is None else {"ood_bottleneck": self.ood_bottleneck.to_dict()}
        )
        return {
            "format_version": FORMAT_VERSION,
            "image_features": list(IMAGE_FEATURES),
            "nucleus_features": list(NUCLEUS_FEATURES),
            "scores": {name: model.to_dict() for name, model in self.scores.items()},
            "nucleus": {
                "logistic": self.nucleus.to_dict(),
                "review_below": self.nucleus_review_below,
            },  # fmt: skip
            "ood": self.ood.to_dict(),
            **extra,
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str | Path = TRUST_FILE) -> TrustModel:
        """Build from :meth:`to_dict`'s output.

        Raises:
            InputError: Another format version, or features that differ from this version's.
        """
        if data.get("format_version") != FORMAT_VERSION:
            raise InputError(where, f"unsupported trust format {data.get('format_version')!r}")
        if (
            tuple(data.get("image_features", ())) != IMAGE_FEATURES
            or tuple(data.get("nucleus_features", ())) != NUCLEUS_FEATURES
        ):
            raise InputError(where, "fitted on other features than this version computes; refit")
        try:
            return cls(
                scores={name: ScoreModel.from_dict(data["scores"][name]) for name in SCORES},
                nucleus=LogisticModel.from_dict(data["nucleus"]["logistic"]),
                nucleus_review_below=float(data["nucleus"]["review_below"]),
                ood=OODModel.from_dict(data["ood"]),
                provenance=dict(data.get("provenance") or {}),
                ood_bottleneck=(
                    OODModel.from_dict(data["ood_bottleneck"]) if "ood_bottleneck" in data else None
                ),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(where, f"malformed trust file ({err!r})") from err


def _known_features(names: list[str]) -> tuple[str, ...]:
    unknown = [n for n in names if n not in IMAGE_FEATURES]
    if unknown:
        raise ValueError(f"unknown image features {unknown}")
    return tuple(names)


def save_trust(model: TrustModel, model_dir: str | Path) -> Path:
    """Write ``trust.json`` into a model folder (``config.json`` is left untouched)."""
    path = Path(model_dir) / TRUST_FILE
    path.write_text(json.dumps(model.to_dict(), indent=1, allow_nan=False) + "\n", "utf-8")
    return path


def load_trust(model_dir: str | Path | None) -> TrustModel | None:
    """The model folder's ``trust.json``, or None when it has none.

    Raises:
        InputError: The file exists but cannot be used.
    """
    if model_dir is None:
        return None
    path = Path(model_dir) / TRUST_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(path, f"cannot read ({err})") from err
    if not isinstance(data, dict):
        raise InputError(path, "expected a JSON object")
    return TrustModel.from_dict(data, path)


def finite_or_none(value: float) -> float | None:
    """``value`` as a float, None when not finite (for CSV / JSON)."""
    return float(value) if math.isfinite(value) else None
