"""bayescellseg: nucleus segmentation with a Bayesian U-Net and measured uncertainty.

The public API, imported lazily so that ``import bayescellseg`` stays cheap (no torch)::

    from bayescellseg import Segmenter, read_image

    seg = Segmenter.load()                      # the bundled model, or a model folder
    result = seg.predict(read_image("cells.png"))
    result.labels, result.epistemic, result.summary.needs_review
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from bayescellseg.inference.result import PredictedMaps, PredictionInfo, Result
    from bayescellseg.inference.segmenter import PredictSettings, Segmenter
    from bayescellseg.io.images import read_image

_EXPORTS = {
    "PredictSettings": "bayescellseg.inference.segmenter",
    "PredictedMaps": "bayescellseg.inference.result",
    "PredictionInfo": "bayescellseg.inference.result",
    "Result": "bayescellseg.inference.result",
    "Segmenter": "bayescellseg.inference.segmenter",
    "read_image": "bayescellseg.io.images",
}

__all__ = [
    "PredictSettings",
    "PredictedMaps",
    "PredictionInfo",
    "Result",
    "Segmenter",
    "__version__",
    "read_image",
]


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bayescellseg' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
