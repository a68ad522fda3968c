"""The options of ``predict`` (:class:`PredictOptions`), their checks before a batch starts and
the run identity recorded in ``run_config.json``."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from bayescellseg.errors import InputError
from bayescellseg.export import DEFAULT_SAVE, SAVE_CHOICES
from bayescellseg.inference.arguments import DEFAULT_DIAMETER
from bayescellseg.inference.segmenter import PredictSettings, Segmenter
from bayescellseg.io.pixelsize import parse_length
from bayescellseg.pipelines.predict_image import ImageInput
from bayescellseg.pipelines.trusted import ReviewRequest
from bayescellseg.trust.model import TRUST_FILE, TrustModel


@dataclass(frozen=True)
class PredictOptions:
    """Options of a prediction run (the model and its device come with the Segmenter).

    Attributes:
        n_samples: Stochastic samples T (None: the model's default).
        tta: Cross every sample with the 8 flips / rotations.
        tile_size: Images larger than this are processed in overlapping tiles.
        overwrite: Replace existing output files.
        seed: Seed of the stochastic samples.
        diameter: Typical nucleus diameter: pixels (``45``), a length (``"8um"``, needs the
            pixel size), ``"auto"`` (the default) or None / ``"none"`` (see
            :meth:`~bayescellseg.inference.segmenter.Segmenter.predict`).
        resume: Finish an interrupted batch in the same output folder: keep the images whose
            outputs are complete, redo the others (same model and options required).
        precision: Precision of the network's forward pass (None: the Segmenter's own);
            see :mod:`bayescellseg.inference.precision`.
        save: The per-image outputs to write (:data:`~bayescellseg.export.SAVE_CHOICES`).
        channel: The nuclear channel of multichannel images (0-based).
        channels: Several nuclear channels to combine.
        pixel_size: Micrometres per pixel, overriding the files' metadata.
        min_quality: Flag images not certified to reach this DSB score (needs ``trust.json``).
        review_fraction: Flag this share of the batch, lowest predicted scores first (needs
            ``trust.json``).
        review_alpha: Allowed expected share of unflagged images below ``min_quality``.
    """

    n_samples: int | None = None
    tta: bool = False
    tile_size: int = 512
    overwrite: bool = False
    seed: int = 0
    diameter: float | str | None = DEFAULT_DIAMETER
    resume: bool = False
    precision: str | None = None
    save: frozenset[str] = DEFAULT_SAVE
    channel: int | None = None
    channels: tuple[int, ...] | None = None
    pixel_size: float | None = None
    min_quality: float | None = None
    review_fraction: float | None = None
    review_alpha: float = 0.1

    def settings(self) -> PredictSettings:
        """The :class:`PredictSettings` of every image (the diameter is set per image)."""
        return PredictSettings(
            n_samples=self.n_samples,
            tta=self.tta,
            seed=self.seed,
            tile_size=self.tile_size,
            precision=self.precision,
        )

    def reading(self) -> ImageInput:
        """How the images are read."""
        channels = None if self.channels is None else tuple(self.channels)
        return ImageInput(self.channel, channels, self.pixel_size, self.diameter)

    def review(self) -> ReviewRequest:
        """The batch review rule asked for."""
        return ReviewRequest(self.min_quality, self.review_fraction, self.review_alpha)


def _check_diameter(segmenter: Segmenter, diameter: float | str | None) -> None:
    """A bad diameter fails before the batch (a length is converted per image)."""
    if isinstance(diameter, str) and diameter.strip().lower() not in ("auto", "none"):
        value, unit = parse_length(diameter, "diameter")
        if unit not in (None, "px"):
            segmenter.resolve_diameter(value)  # only checks that the model records a size
            return
        diameter = value
    segmenter.resolve_diameter(diameter)


def _check_review(options: PredictOptions, trust: TrustModel | None, model: str) -> None:
    if options.min_quality is not None and options.review_fraction is not None:
        raise InputError("min_quality", "give min_quality or review_fraction, not both")
    for name, low, high in (("min_quality", 0, 1), ("review_fraction", 0, 1)):
        value = getattr(options, name)
        if value is not None and not (math.isfinite(value) and low <= value <= high):
            raise InputError(name, f"must be between {low} and {high}, got {value}")
    if not 0 < options.review_alpha < 1:
        raise InputError("review_alpha", f"must be in (0, 1), got {options.review_alpha}")
    if options.review().active and trust is None:
        raise InputError(
            "min_quality" if options.min_quality is not None else "review_fraction",
            f"needs the predicted scores of a trust model, but the model folder {model} has no "
            f"{TRUST_FILE}; fit one with experiments/trust_study.py or use the bundled model",
        )


def check_options(segmenter: Segmenter, options: PredictOptions, trust: TrustModel | None) -> None:
    """Refuse bad options before any image is read.

    Raises:
        InputError: Naming the option (by its parameter name; the CLI shows the flag).
    """
    if options.tile_size < 32:
        raise InputError(
            "tile_size", f"tile size must be at least 32 pixels, got {options.tile_size}"
        )
    if options.n_samples is not None and options.n_samples < 0:
        raise InputError(
            "n_samples", f"must be at least 0 (0 = one deterministic pass), got {options.n_samples}"
        )
    if options.resume and options.overwrite:
        raise InputError("resume", "cannot be combined with overwrite=True (which redoes all)")
    if options.channel is not None and options.channels is not None:
        raise InputError("channel", "give channel or channels, not both")
    unknown = sorted(set(options.save) - set(SAVE_CHOICES))
    if unknown or not options.save:
        raise InputError("save", f"unknown outputs {unknown}; choose from {SAVE_CHOICES}")
    _check_review(options, trust, str(segmenter.source))
    segmenter.resolved_precision(options.precision)  # an unsupported precision fails up front
    _check_diameter(segmenter, options.diameter)


def _trust_record(trust: TrustModel) -> dict[str, Any]:
    keys = ("sources", "n_images", "fitted_on")
    return {"file": TRUST_FILE, **{k: trust.provenance.get(k) for k in keys}}


def base_config(
    segmenter: Segmenter, options: PredictOptions, trust: TrustModel | None
) -> dict[str, Any]:
    """The run-identity part of ``run_config.json`` (the options with the device and the
    concrete precision, so a resume on another device or precision is refused)."""
    recorded = {
        **dataclasses.asdict(options),
        "save": [name for name in SAVE_CHOICES if name in options.save],
        "channels": None if options.channels is None else list(options.channels),
        "device": str(segmenter.device),
        "precision": segmenter.resolved_precision(options.precision),
    }
    return {
        "model": str(segmenter.source),
        "model_config": segmenter.config.to_dict(),
        "temperature": segmenter.temperature,
        "logit_bias": segmenter.logit_bias,
        "postprocess": segmenter.params.to_dict(),
        "review": segmenter.review.to_dict(),
        "nucleus_diameter": segmenter.nucleus_diameter,
        "trust": None if trust is None else _trust_record(trust),
        "options": recorded,
    }
