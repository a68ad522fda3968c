"""What a prediction returns: the maps of :meth:`Segmenter.predict_maps` and the
:class:`Result` of :meth:`Segmenter.segment` / :meth:`Segmenter.predict`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, overload

import numpy as np

from bayescellseg.inference.sampling import ImageSamples, dequantize
from bayescellseg.inference.uncertainty import UncertaintyMaps
from bayescellseg.postprocess.nuclei import ImageSummary, NucleusRecord
from bayescellseg.postprocess.watershed import WatershedParams, instances_from_maps


@dataclass(frozen=True)
class PredictionInfo:
    """How a prediction was made (the last entries of ``name_summary.json``).

    Attributes:
        n_samples: Effective number of stochastic samples T (per-sample maps).
        tta: Whether every sample was crossed with the 8 flips / rotations.
        diameter: The nucleus diameter given or estimated (pixels), None if none was used.
        scale: The factor the image was resized by for the network (1.0: none).
        precision: The concrete precision of the forward pass (``fp32``, ``bf16``, ``fp16``).
    """

    n_samples: int
    tta: bool
    diameter: float | None
    scale: float
    precision: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict, in the order of the fields."""
        return asdict(self)


@dataclass(frozen=True)
class PredictedMaps:
    """The network's output for one image, on the image's grid, before segmentation.

    Attributes:
        samples: Per-pixel maps and compact per-sample maps (uint8 foreground / contour
            probabilities; float16 raw foreground logits when asked for).
        scale: The resize factor the network ran at (1.0: none); the watershed settings are
            adapted to it by :meth:`Segmenter.segment`.
        diameter: The nucleus diameter given or estimated, None if none was used.
        tta: Whether TTA was used.
        precision: The concrete precision of the forward pass.
    """

    samples: ImageSamples
    scale: float = 1.0
    diameter: float | None = None
    tta: bool = False
    precision: str = "fp32"

    @property
    def maps(self) -> UncertaintyMaps:
        """The per-pixel maps (probability, entropy, aleatoric, epistemic, variance, contour)."""
        return self.samples.maps

    @property
    def bottleneck(self) -> np.ndarray | None:
        """(2C,) float32 bottleneck statistic of the network's pass over the image (the members'
        mean per-channel spatial mean, then std; :mod:`bayescellseg.inference.passes`), None
        for a network without an encoder."""
        stats = self.samples.bottleneck
        return None if stats is None else stats.vector()

    @property
    def n_samples(self) -> int:
        """Number of per-sample maps T."""
        return int(self.samples.foreground.shape[0])

    def info(self) -> PredictionInfo:
        """The :class:`PredictionInfo` of a result segmented from these maps."""
        return PredictionInfo(self.n_samples, self.tta, self.diameter, self.scale, self.precision)


@dataclass(frozen=True)
class Result(UncertaintyMaps):
    """Segmentation and uncertainty of one image: the per-pixel maps of
    :class:`~bayescellseg.inference.uncertainty.UncertaintyMaps` (``probability``, ``entropy``,
    ``aleatoric``, ``epistemic``, ``variance``, ``contour``, each (H, W) float32) plus:

    Attributes:
        labels: (H, W) uint32 nuclei, 0 = background.
        nuclei: Per-nucleus records (see :mod:`bayescellseg.postprocess.nuclei`).
        summary: Per-image summary (``n_nuclei``, ``uncertainty``, ``predicted_quality``,
            ``needs_review``, ``reasons``, ...).
        info: How the prediction was made (``n_samples``, ``tta``, ``diameter``, ``scale``,
            ``precision``).
        bottleneck: (2C,) float32 statistic of the network's bottleneck over the image
            (:attr:`PredictedMaps.bottleneck`; the trust models' second OOD distance reads
            it), None when unknown.
    """

    labels: np.ndarray = field(kw_only=True)
    nuclei: list[NucleusRecord] = field(kw_only=True)
    summary: ImageSummary = field(kw_only=True)
    info: PredictionInfo = field(kw_only=True)
    bottleneck: np.ndarray | None = field(default=None, kw_only=True, compare=False)

    def maps(self) -> dict[str, np.ndarray]:
        """The per-pixel maps by name."""
        return {f.name: getattr(self, f.name) for f in fields(UncertaintyMaps)}

    def summary_dict(self) -> dict[str, Any]:
        """The summary and the prediction info as one JSON-serialisable dict (NaN: None), as
        ``name_summary.json`` stores them."""
        return {**self.summary.to_dict(), **self.info.to_dict()}


class SampleSegmentations(Sequence):
    """Lazy per-sample instance segmentations (computed on access, nothing kept).

    Args:
        foreground: (T, H, W) uint8 per-sample foreground probabilities.
        contour: (T, H, W) uint8 per-sample contour probabilities.
        params: Watershed settings.
    """

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
