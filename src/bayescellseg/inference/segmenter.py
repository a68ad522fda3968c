"""The user-facing predictor: image in, nuclei + per-pixel / per-nucleus / per-image uncertainty out.

Example::

    from bayescellseg.inference.segmenter import Segmenter

    seg = Segmenter.load("models/nuclei")          # or Segmenter.load() for the bundled model
    result = seg.predict(image, n_samples=20, tta=False, seed=0)
    result.labels          # (H, W) uint32 nuclei
    result.epistemic       # (H, W) mutual information in bits
    result.summary["needs_review"]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch

from bayescellseg.errors import InputError
from bayescellseg.inference.precision import check_precision, resolve_precision
from bayescellseg.inference.sampling import (
    ImageSamples,
    SamplingOptions,
    dequantize,
    members_of,
    sample_image,
    samples_per_member,
)
from bayescellseg.inference.uncertainty import UncertaintyMaps
from bayescellseg.io.images import to_rgb_float
from bayescellseg.model.config import ModelConfig
from bayescellseg.model.store import bundled_model_path, load_model
from bayescellseg.postprocess.nuclei import NucleusRecord, ReviewThresholds, analyse_segmentation
from bayescellseg.postprocess.watershed import WatershedParams, instances_from_maps

#: ``diameter="auto"`` needs at least this many nuclei in the first pass to estimate a size.
AUTO_MIN_NUCLEI = 3


@dataclass(frozen=True)
class Result(UncertaintyMaps):
    """Segmentation and uncertainty of one image: the per-pixel maps of
    :class:`~bayescellseg.inference.uncertainty.UncertaintyMaps` (``probability``, ``entropy``,
    ``aleatoric``, ``epistemic``, ``variance``, ``contour``, each (H, W) float32) plus:

    Attributes:
        labels: (H, W) uint32 nuclei, 0 = background.
        nuclei: Per-nucleus records (see :mod:`bayescellseg.postprocess.nuclei`).
        summary: Per-image summary (``n_nuclei``, ``uncertainty``, ``predicted_quality``,
            ``needs_review``, ``reasons``, ... plus ``n_samples`` and ``tta``).
    """

    labels: np.ndarray = field(kw_only=True)
    nuclei: list[NucleusRecord] = field(default_factory=list, kw_only=True)
    summary: dict[str, Any] = field(default_factory=dict, kw_only=True)

    def maps(self) -> dict[str, np.ndarray]:
        """The per-pixel maps by name."""
        return {f.name: getattr(self, f.name) for f in fields(UncertaintyMaps)}


class _SampleSegmentations(Sequence):
    """Lazy per-sample instance segmentations (computed on access, nothing kept)."""

    def __init__(self, foreground: np.ndarray, contour: np.ndarray, params: WatershedParams):
        self._fg, self._ct, self._params = foreground, contour, params

    def __len__(self) -> int:
        return len(self._fg)

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, index: slice) -> list[np.ndarray]: ...

    def __getitem__(self, index: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return instances_from_maps(
            dequantize(self._fg[index]), dequantize(self._ct[index]), self._params
        )


def as_float_rgb(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Raw image to (H, W, 3) float32 (integers scaled to [0, 1] by their dtype's range).

    Float arrays of any range are accepted: the model's normalisation rescales them anyway.

    Args:
        image: (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA; uint8, uint16, bool or float.
        name: How to name the image in errors.

    Raises:
        InputError: Unsupported shape or dtype, an empty image, or non-finite values.
    """
    return to_rgb_float(image, name, any_float_range=True)


class Segmenter:
    """A loaded model plus its post-processing settings, ready to predict.

    Args:
        model: The network (UNet or Ensemble), eval mode.
        config: Its configuration.
        extras: The model folder's extras (``postprocess``, ``temperature``, ``logit_bias``,
            ``review``, ...).
        source: Where it was loaded from (for provenance), if anywhere.
        precision: Default precision of :meth:`predict`: ``auto`` (bf16 where the hardware
            computes it natively), ``fp32``, ``bf16`` or ``fp16`` (CUDA); see
            :mod:`bayescellseg.inference.precision`.
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
        temperature = self.extras.get("temperature", 1.0)
        if temperature is None:
            temperature = 1.0
        if not isinstance(temperature, int | float) or not temperature > 0:
            raise InputError(where, f"temperature must be a positive number, got {temperature!r}")
        self.temperature = float(temperature)
        bias = self.extras.get("logit_bias", 0.0)
        if bias is None:
            bias = 0.0
        if not isinstance(bias, int | float) or not math.isfinite(bias):
            raise InputError(where, f"logit_bias must be a finite number, got {bias!r}")
        self.logit_bias = float(bias)
        diameter = self.extras.get("nucleus_diameter")
        if diameter is not None and not (
            isinstance(diameter, int | float) and math.isfinite(diameter) and diameter > 0
        ):
            raise InputError(where, f"nucleus_diameter must be a positive number, got {diameter!r}")
        self.nucleus_diameter: float | None = None if diameter is None else float(diameter)

    @classmethod
    def load(
        cls, path: str | Path | None = None, device: str = "cpu", precision: str = "auto"
    ) -> Segmenter:
        """Load a model folder (``config.json`` + ``weights.safetensors``).

        Args:
            path: The model folder; None loads the bundled pretrained nucleus model.
            device: ``cpu``, ``cuda``, ``cuda:1``, ...
            precision: Default precision of :meth:`predict` (``auto``, ``fp32``, ``bf16``,
                ``fp16``).

        Raises:
            InputError: The folder is missing or invalid, the bundled model is not installed,
                or the precision is unknown or unsupported on the device.
        """
        check_precision(precision)
        if path is None:
            folder = bundled_model_path()
            if not (folder / "config.json").is_file():
                raise InputError(
                    folder,
                    "the bundled pretrained model is not installed; pass a model folder "
                    "(--model DIR) trained with 'bayescellseg train'",
                )
        else:
            folder = Path(path)
        try:
            torch_device = torch.device(device)
        except RuntimeError as err:
            raise InputError("--device", f"unknown device {device!r} ({err})") from err
        if torch_device.type == "cuda" and not torch.cuda.is_available():
            raise InputError("--device", f"{device!r} requested but CUDA is not available")
        resolve_precision(precision, torch_device)  # refuse e.g. fp16 on a CPU before loading
        loaded = load_model(folder, device=torch_device)
        return cls(loaded.model, loaded.config, loaded.extras, source=folder, precision=precision)

    @property
    def device(self) -> torch.device:
        """The device the network is on."""
        return next(self.model.parameters()).device

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
            None, ``"auto"`` or the diameter as a float.

        Raises:
            InputError: Not ``"auto"`` or a positive number, or the model records no
                ``nucleus_diameter``.
        """
        if diameter is None:
            return None
        diameter = _diameter_argument(diameter)
        if self.nucleus_diameter is None:
            raise InputError(
                self.source or "model",
                "the model records no nucleus_diameter (the median nucleus size it was trained "
                "on), so --diameter cannot be used; models trained by this version record it",
            )
        return diameter

    def _scale(
        self,
        normalised: np.ndarray,
        diameter: float | str | None,
        options: SamplingOptions,
        tile_size: int,
    ) -> tuple[float | None, float, ImageSamples | None]:
        """The image's nucleus diameter (given or estimated; None if unknown), the resize
        factor for the network (1.0: none) and the full-scale first pass of ``"auto"`` (else
        None)."""
        from bayescellseg.inference.rescale import (
            AUTO_PROBES,
            auto_scale,
            resize_image,
            scale_for,
            trust_coarser_probe,
        )

        diameter = self.resolve_diameter(diameter)
        if diameter is None or self.nucleus_diameter is None:
            return None, 1.0, None
        if diameter != "auto":
            return diameter, scale_for(diameter, self.nucleus_diameter), None
        single = replace(options, n_samples=0, tta=False)
        first = sample_image(self.model, self.config, normalised, single, tile_size)
        estimate = self._median_diameter(first)
        for probe in AUTO_PROBES[1:]:
            if math.isnan(estimate):
                break
            shrunk = resize_image(normalised, probe)
            at_probe = self._median_diameter(
                sample_image(self.model, self.config, shrunk, single, tile_size)
            )
            if not trust_coarser_probe(at_probe, self.nucleus_diameter):
                break
            estimate = at_probe / probe
        if math.isnan(estimate):
            return None, 1.0, first
        return estimate, auto_scale(estimate, self.nucleus_diameter), first

    def _median_diameter(self, samples: ImageSamples) -> float:
        """Median nucleus diameter of a single-pass prediction, in its pixels (nan: too few)."""
        from bayescellseg.data.sizes import median_diameter

        maps = samples.maps
        labels = instances_from_maps(maps.probability, maps.contour, self.params)
        return median_diameter([labels], min_count=AUTO_MIN_NUCLEI)

    def n_samples(self, n_samples: int | None = None) -> int:
        """The effective number of stochastic samples T for a requested ``n_samples``."""
        members = len(members_of(self.model))
        return sum(samples_per_member(self.config, members, n_samples))

    def predict(
        self,
        image: np.ndarray,
        n_samples: int | None = None,
        tta: bool = False,
        seed: int = 0,
        tile_size: int = 512,
        diameter: float | str | None = None,
        precision: str | None = None,
    ) -> Result:
        """Segment nuclei and measure uncertainty.

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
                segmentations at full scale and, for large nuclei, on the image shrunk by 2 and 4
                (:data:`~bayescellseg.inference.rescale.AUTO_PROBES`), and resizes only when it
                is off by more than :data:`~bayescellseg.inference.rescale.AUTO_RANGE`, to the
                nearer end of that range. None: no resizing.
            precision: Precision of the network's forward pass (None: the Segmenter's
                default); the sigmoid and every moment stay in float32.

        Returns:
            The labels, maps, nucleus records and image summary (with ``diameter``, the given
            or estimated diameter or None, ``scale``, the resize factor used, and
            ``precision``, the concrete precision of the forward pass).

        Raises:
            InputError: A bad image, a bad ``diameter``, a ``diameter`` for a model that
                recorded no ``nucleus_diameter``, or an unsupported ``precision``.
        """
        from bayescellseg.data.normalize import normalize
        from bayescellseg.inference.rescale import params_at_scale, resize_image, resize_samples

        normalised = normalize(as_float_rgb(image), mode=self.config.normalization)
        options = SamplingOptions(
            n_samples=n_samples,
            tta=tta,
            seed=seed,
            temperature=self.temperature,
            logit_bias=self.logit_bias,
            precision=self.resolved_precision(precision),
        )
        measured, scale, first = self._scale(normalised, diameter, options, tile_size)
        params = self.params
        single_pass = options.n_samples == 0 or not self.config.is_stochastic
        if scale == 1.0 and first is not None and single_pass and not options.tta:
            samples = first  # auto's first pass is this very prediction
        elif scale == 1.0:
            samples = sample_image(self.model, self.config, normalised, options, tile_size)
        else:
            resized = resize_image(normalised, scale)
            samples = sample_image(self.model, self.config, resized, options, tile_size)
            samples = resize_samples(samples, normalised.shape[:2])
            params = params_at_scale(params, scale)
        del normalised  # large images: free it before the per-sample segmentations
        extra = {"tta": bool(tta), "diameter": measured, "scale": scale}
        return self._segment(samples, params, {**extra, "precision": options.precision})

    def _segment(
        self, samples: ImageSamples, params: WatershedParams, extra: dict[str, Any]
    ) -> Result:
        """Nuclei, their records and the image summary (plus ``n_samples`` and ``extra``)."""
        maps = samples.maps
        labels = instances_from_maps(maps.probability, maps.contour, params)
        map_dict = {
            "probability": maps.probability,
            "entropy": maps.entropy,
            "epistemic": maps.epistemic,
        }
        n_total = samples.foreground.shape[0]
        sample_labels = (
            _SampleSegmentations(samples.foreground, samples.contour, params)
            if n_total > 1
            else None
        )
        records, summary = analyse_segmentation(
            labels,
            map_dict,
            maps.probability > params.fg_threshold,
            sample_labels,
            self.review,
        )
        return Result(
            **{f.name: getattr(maps, f.name) for f in fields(UncertaintyMaps)},
            labels=labels,
            nuclei=records,
            summary={**summary.to_dict(), "n_samples": n_total, **extra},
        )


def _diameter_argument(diameter: float | str) -> float | str:
    """Validate a ``diameter`` argument: ``"auto"`` or a positive number of pixels."""
    if isinstance(diameter, str):
        if diameter == "auto":
            return diameter
        try:
            diameter = float(diameter)
        except ValueError:
            raise InputError("--diameter", f"expected 'auto' or pixels, got {diameter!r}") from None
    if isinstance(diameter, bool) or not isinstance(diameter, int | float):
        raise InputError("--diameter", f"expected 'auto' or pixels, got {diameter!r}")
    if not (math.isfinite(diameter) and diameter > 0):
        raise InputError("--diameter", f"must be a positive number of pixels, got {diameter}")
    return float(diameter)
