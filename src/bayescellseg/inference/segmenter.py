"""The user-facing predictor: image in, nuclei + per-pixel / per-nucleus / per-image uncertainty out.

Example::

    from bayescellseg import Segmenter, read_image

    seg = Segmenter.load("models/nuclei")          # or Segmenter.load() for the bundled model
    result = seg.predict(read_image("cells.png"), n_samples=20, tta=False, seed=0)
    result.labels                  # (H, W) uint32 nuclei
    result.epistemic               # (H, W) mutual information in bits
    result.summary.needs_review    # the typed ImageSummary

``predict`` is :meth:`Segmenter.predict_maps` (the network, tiled, with the optional resize to
the model's nucleus size) followed by :meth:`Segmenter.segment` (watershed, nucleus records and
image summary). Everything that predicts (batch ``predict``, ``evaluate``, ``calibrate``,
training validation) goes through these two calls.
"""

from __future__ import annotations

import math
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bayescellseg.data.normalize import normalize
from bayescellseg.data.sizes import median_diameter
from bayescellseg.errors import InputError
from bayescellseg.inference.arguments import (
    DEFAULT_DIAMETER,
    PredictSettings,
    as_float_rgb,
    checked_number,
    diameter_argument,
)
from bayescellseg.inference.precision import check_precision, resolve_precision
from bayescellseg.inference.rescale import (
    AUTO_PROBES,
    auto_scale,
    params_at_scale,
    resize_image,
    resize_samples,
    scale_for,
    trust_coarser_probe,
)
from bayescellseg.inference.result import (
    PredictedMaps,
    PredictionInfo,
    Result,
    SampleSegmentations,
)
from bayescellseg.inference.sampling import (
    ImageSamples,
    SamplingOptions,
    members_of,
    model_device,
    sample_image,
    samples_per_member,
)
from bayescellseg.inference.uncertainty import UncertaintyMaps
from bayescellseg.model.config import ModelConfig
from bayescellseg.model.store import (
    BUNDLED_MODELS,
    DEFAULT_ALIAS,
    LICENCE_KEY,
    bundled_model_path,
    bundled_name,
    load_model,
)
from bayescellseg.postprocess.nuclei import analyse_segmentation
from bayescellseg.postprocess.review import ReviewThresholds
from bayescellseg.postprocess.watershed import WatershedParams, instances_from_maps

__all__ = [
    "AUTO_MIN_NUCLEI",
    "PredictSettings",
    "PredictedMaps",
    "PredictionInfo",
    "Result",
    "Segmenter",
    "as_float_rgb",
    "bundled_model_path",
]

#: ``diameter="auto"`` needs at least this many nuclei in the first pass to estimate a size.
AUTO_MIN_NUCLEI = 3

#: Names :meth:`Segmenter.load` accepts instead of a folder for a bundled model.
BUNDLED_NAMES = (DEFAULT_ALIAS, *BUNDLED_MODELS)


class Segmenter:
    """A loaded model plus its post-processing settings, ready to predict.

    Args:
        model: The network (UNet or Ensemble); put in eval mode.
        config: Its configuration.
        extras: The model folder's extras (``postprocess``, ``temperature``, ``logit_bias``,
            ``review``, ``nucleus_diameter``, ...).
        source: Where it was loaded from (for provenance), if anywhere.
        precision: Default precision of :meth:`predict`: ``auto`` (bf16 where the hardware
            computes it natively), ``fp32``, ``bf16`` or ``fp16`` (CUDA); see
            :mod:`bayescellseg.inference.precision`.

    Raises:
        InputError: Invalid calibration or post-processing settings in ``extras``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config: ModelConfig,
        extras: dict[str, Any] | None = None,
        source: Path | None = None,
        precision: str = "auto",
    ) -> None:
        self.model = model.eval()
        self.precision = check_precision(precision)
        self.config = config
        self.extras = dict(extras or {})
        self.source = source
        where = str(source or "model")
        self.params = WatershedParams.from_dict(
            self.extras.get("postprocess") or {}, f"{where}: postprocess"
        )
        self.review = ReviewThresholds.from_dict(
            self.extras.get("review") or {}, f"{where}: review"
        )
        self.temperature = checked_number(self.extras, "temperature", 1.0, where, positive=True)
        self.logit_bias = checked_number(self.extras, "logit_bias", 0.0, where, positive=False)
        diameter = self.extras.get("nucleus_diameter")
        self.nucleus_diameter: float | None = (
            None
            if diameter is None
            else checked_number(self.extras, "nucleus_diameter", 0, where, True)
        )

    @classmethod
    def load(
        cls, path: str | Path | None = None, device: str = "cpu", precision: str = "auto"
    ) -> Segmenter:
        """Load a model folder (``config.json`` + ``weights.safetensors`` [+ ``calibration.json``]).

        Args:
            path: The model folder, or the name of a bundled model: None, ``"bundled"`` or
                ``"nuclei"`` (the default), ``"nuclei-nc"`` (opt-in, non-commercial licence).
            device: ``cpu``, ``cuda``, ``cuda:1``, ...
            precision: Default precision of :meth:`predict` (``auto``, ``fp32``, ``bf16``,
                ``fp16``).

        Raises:
            InputError: The folder is missing or invalid, the bundled model is not installed,
                or the device or precision is unknown or unsupported.
        """
        check_precision(precision)
        name = bundled_name(path)
        if name is not None:
            folder = bundled_model_path(name)
            if not (folder / "config.json").is_file():
                raise InputError(
                    folder,
                    f"the bundled pretrained model {name!r} is not installed; pass a model "
                    "folder trained with 'bayescellseg train'",
                )
        else:
            folder = Path(str(path))
        try:
            torch_device = torch.device(device)
        except RuntimeError as err:
            raise InputError("device", f"unknown device {device!r} ({err})") from err
        if torch_device.type == "cuda" and not torch.cuda.is_available():
            raise InputError("device", f"{device!r} requested but CUDA is not available")
        resolve_precision(precision, torch_device)  # refuse e.g. fp16 on a CPU before loading
        loaded = load_model(folder, device=torch_device)
        return cls(loaded.model, loaded.config, loaded.extras, source=folder, precision=precision)

    def with_calibration(self, **calibration: Any) -> Segmenter:
        """A Segmenter of the same network with other calibration settings.

        Args:
            **calibration: Any of ``temperature``, ``logit_bias``, ``postprocess`` (a
                :class:`WatershedParams`) and ``review`` (a :class:`ReviewThresholds`).
        """
        known = ("temperature", "logit_bias", "postprocess", "review")
        unknown = sorted(set(calibration) - set(known))
        if unknown:
            raise TypeError(f"unknown calibration settings {unknown}")
        extras = dict(self.extras)
        for key, value in calibration.items():
            extras[key] = value.to_dict() if hasattr(value, "to_dict") else value
        return Segmenter(self.model, self.config, extras, self.source, self.precision)

    @property
    def licence(self) -> str | None:
        """The licence of the weights when it is not the package's MIT (e.g. the opt-in
        ``nuclei-nc`` model's CC BY-NC-SA 4.0), from ``config.json``; None otherwise."""
        value = self.extras.get(LICENCE_KEY)
        return str(value) if value else None

    @property
    def device(self) -> torch.device:
        """The device the network is on."""
        return model_device(self.model)

    def resolved_precision(self, precision: str | None = None) -> str:
        """The concrete precision (``fp32``, ``bf16`` or ``fp16``) :meth:`predict` runs in.

        Args:
            precision: A per-call request; None: the Segmenter's default.

        Raises:
            InputError: Unknown, or not supported on the device.
        """
        return resolve_precision(self.precision if precision is None else precision, self.device)

    def resolve_diameter(self, diameter: float | str | None) -> float | str | None:
        """Check a ``diameter`` argument of :meth:`predict` before a batch starts.

        Returns:
            None (no resizing), ``"auto"`` or the diameter as a float. ``"auto"`` is None for a
            model that records no ``nucleus_diameter``: there is no size to resize to.

        Raises:
            InputError: Not ``"auto"``, ``"none"`` or a positive number, or a number for a
                model that records no ``nucleus_diameter``.
        """
        diameter = None if diameter is None else diameter_argument(diameter)
        if diameter is None or (diameter == "auto" and self.nucleus_diameter is None):
            return None
        if self.nucleus_diameter is None:
            raise InputError(
                self.source or "model",
                "the model records no nucleus_diameter (the median nucleus size it was trained "
                "on), so a diameter cannot be given; models trained by this version record it",
            )
        return diameter

    def n_samples(self, n_samples: int | None = None) -> int:
        """The effective number of stochastic samples T for a requested ``n_samples``."""
        members = len(members_of(self.model))
        return sum(samples_per_member(self.config, members, n_samples))

    def _sample(self, image: np.ndarray, options: SamplingOptions, tile_size: int) -> ImageSamples:
        return sample_image(self.model, self.config, image, options, tile_size)

    def _scale(
        self,
        normalised: np.ndarray,
        diameter: float | str | None,
        options: SamplingOptions,
        tile_size: int,
    ) -> tuple[float | None, float, ImageSamples | None]:
        """The image's nucleus diameter (given or estimated; None if unknown), the resize
        factor for the network (1.0: none) and, for ``"auto"``, the single pass it ran at
        exactly that factor (else None)."""  # fmt: skip
        diameter = self.resolve_diameter(diameter)
        if diameter is None or self.nucleus_diameter is None:
            return None, 1.0, None
        if diameter != "auto":
            return diameter, scale_for(diameter, self.nucleus_diameter), None
        single = replace(options, n_samples=0, tta=False, keep_logits=False)
        estimate, probes = self._coarse_estimate(normalised, single, tile_size)
        if estimate is not None:  # large nuclei: the image is shrunk, no full-scale pass needed
            for factor, probe in probes:  # finest first: a probe already at a size in range
                if auto_scale(estimate * factor, self.nucleus_diameter) == 1.0:
                    return estimate, factor, probe
            return estimate, auto_scale(estimate, self.nucleus_diameter), None
        first = self._sample(normalised, single, tile_size)
        estimate = self._median_diameter(first)
        if math.isnan(estimate):
            return None, 1.0, first
        scale = auto_scale(estimate, self.nucleus_diameter)
        return estimate, scale, first if scale == 1.0 else None

    def _coarse_estimate(
        self, normalised: np.ndarray, single: SamplingOptions, tile_size: int
    ) -> tuple[float | None, list[tuple[float, ImageSamples]]]:
        """The diameter measured on the image shrunk by the coarser :data:`AUTO_PROBES`, each
        tried while the one before was trusted (None when the first is not trusted), and the
        trusted probes' passes with their factors, finest first."""
        estimate, probes = None, []
        for factor in AUTO_PROBES[1:]:
            shrunk = resize_image(normalised, factor)
            probe = self._sample(shrunk, single, tile_size)
            at_probe = self._median_diameter(probe)
            if not trust_coarser_probe(at_probe, self.nucleus_diameter):
                break
            estimate = at_probe / factor
            probes.append((factor, probe))
        return estimate, probes

    def _median_diameter(self, samples: ImageSamples) -> float:
        """Median nucleus diameter of a single-pass prediction, in its pixels (nan: too few)."""
        maps = samples.maps
        labels = instances_from_maps(maps.probability, maps.contour, self.params)
        return median_diameter([labels], min_count=AUTO_MIN_NUCLEI)

    def predict_maps(
        self, image: np.ndarray, settings: PredictSettings | None = None
    ) -> PredictedMaps:
        """The network's maps of one image (normalised, tiled, resized to the model's nucleus
        size when asked and brought back to the image's grid), before segmentation.

        Args:
            image: Raw (H, W) grey or (H, W, 3) colour image (see :meth:`predict`).
            settings: How to run the network (None: the defaults of :meth:`predict`).

        Returns:
            Per-pixel maps, per-sample maps and how they were made (the input of
            :meth:`segment`).

        Raises:
            InputError: A bad image, ``diameter`` or ``precision``; ``keep_logits`` with a
                resize.
        """
        settings = settings or PredictSettings()
        normalised = normalize(as_float_rgb(image), mode=self.config.normalization)
        options = SamplingOptions(
            n_samples=settings.n_samples,
            tta=settings.tta,
            seed=settings.seed,
            temperature=self.temperature,
            logit_bias=self.logit_bias,
            keep_logits=settings.keep_logits,
            precision=self.resolved_precision(settings.precision),
        )
        tile = settings.tile_size
        measured, scale, first = self._scale(normalised, settings.diameter, options, tile)
        single_pass = options.n_samples == 0 or not self.config.is_stochastic
        reuse = first is not None and single_pass and not options.tta and not options.keep_logits
        if reuse:  # auto's pass at this scale is this very prediction
            samples = first if scale == 1.0 else resize_samples(first, normalised.shape[:2])
        elif scale == 1.0:
            samples = self._sample(normalised, options, tile)
        elif settings.keep_logits:
            raise InputError("diameter", "raw logits are not kept for a resized image")
        else:
            samples = self._sample(resize_image(normalised, scale), options, tile)
            samples = resize_samples(samples, normalised.shape[:2])
        return PredictedMaps(samples, scale, measured, bool(settings.tta), options.precision)

    def segment(self, maps: PredictedMaps, stability: bool = True) -> Result:
        """Nuclei, their records and the image summary from :meth:`predict_maps`' output.

        Args:
            maps: The maps of one image.
            stability: Segment every sample too, for each nucleus's stability and the
                image's predicted quality (False: skip them, NaN in the records; faster).

        Returns:
            The result (the same as :meth:`predict` with the same settings).
        """
        params = self.params if maps.scale == 1.0 else params_at_scale(self.params, maps.scale)
        pixel = maps.maps
        labels = instances_from_maps(pixel.probability, pixel.contour, params)
        map_dict = {
            "probability": pixel.probability,
            "entropy": pixel.entropy,
            "epistemic": pixel.epistemic,
        }
        samples = maps.samples
        per_sample = None
        if stability and maps.n_samples > 1:
            per_sample = SampleSegmentations(samples.foreground, samples.contour, params)
        records, summary = analyse_segmentation(
            labels, map_dict, pixel.probability > params.fg_threshold, per_sample, self.review
        )
        return Result(
            **{f.name: getattr(pixel, f.name) for f in fields(UncertaintyMaps)},
            labels=labels,
            nuclei=records,
            summary=summary,
            info=maps.info(),
            bottleneck=maps.bottleneck,
        )

    def predict(
        self,
        image: np.ndarray,
        n_samples: int | None = None,
        tta: bool = False,
        seed: int = 0,
        tile_size: int = 512,
        diameter: float | str | None = DEFAULT_DIAMETER,
        precision: str | None = None,
    ) -> Result:
        """Segment nuclei and measure uncertainty: :meth:`predict_maps`, then :meth:`segment`.

        Args:
            image: Raw (H, W) grey or (H, W, 3) colour image (uint8, uint16 or float in [0, 1]);
                it is normalised with the model's ``normalization`` mode.
            n_samples: Stochastic samples T (None: the model's default; 0: one deterministic
                pass with dropout off / mean variational weights). Ignored by a
                deterministic model; an ensemble without dropout always uses one pass per member.
            tta: Cross every sample with the 8 flips / 90-degree rotations (8x slower).
            seed: Seed of the samples; the same seed gives the same result.
            tile_size: Images larger than this are processed in overlapping tiles (at the
                model's scale).
            diameter: Typical nucleus diameter in the image, in pixels: the image is resized so
                its nuclei match the model's training size (``nucleus_diameter``) and the outputs
                are resized back. ``"auto"`` estimates it from single-pass
                segmentations of the image shrunk by 2 and 4 for large nuclei and, when
                those are not trusted, at full scale
                (:data:`~bayescellseg.inference.rescale.AUTO_PROBES`), and resizes only when it
                is off by more than :data:`~bayescellseg.inference.rescale.AUTO_RANGE`, to the
                nearer end of that range (the default; a model without ``nucleus_diameter`` is
                never resized). None: no resizing.
            precision: Precision of the network's forward pass (None: the Segmenter's
                default); the sigmoid and every moment stay in float32.

        Returns:
            The labels, maps, nucleus records, image summary and :class:`PredictionInfo`
            (``diameter``: the given or estimated diameter or None; ``scale``: the resize
            factor used; ``precision``: the concrete precision of the forward pass).

        Raises:
            InputError: A bad image, a bad ``diameter``, a number of pixels for a model that
                recorded no ``nucleus_diameter``, or an unsupported ``precision``.
        """
        settings = PredictSettings(n_samples, tta, seed, tile_size, diameter, precision)
        return self.segment(self.predict_maps(image, settings))
