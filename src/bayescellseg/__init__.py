"""bayescellseg: nucleus segmentation with a Bayesian U-Net and measured uncertainty.

The public API, imported lazily so that ``import bayescellseg`` stays cheap (no torch)::

    from bayescellseg import Segmenter, read_image

    seg = Segmenter.load()                      # the bundled model, or a model folder
    result = seg.predict(read_image("cells.png"))
    result.labels, result.epistemic, result.summary.needs_review

and for the lab's files and tools::

    from bayescellseg import ExportOptions, Segmenter, load_image, resolve_device, write_exports

    image = load_image("stack.tif", channel=2)  # pixel size, axes and intensity planes too
    seg = Segmenter.load(device=str(resolve_device("auto")))
    result = seg.predict(image.image)
    px = image.pixel_size.um if image.pixel_size else None
    write_exports(result, image, "stack", "out", ExportOptions(pixel_size_um=px))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from bayescellseg.export.writer import ExportOptions, write_exports
    from bayescellseg.inference.device import resolve_device
    from bayescellseg.inference.result import PredictedMaps, PredictionInfo, Result
    from bayescellseg.inference.segmenter import PredictSettings, Segmenter
    from bayescellseg.io.images import LoadedImage, load_image, read_image

_EXPORTS = {
    "ExportOptions": "bayescellseg.export.writer",
    "LoadedImage": "bayescellseg.io.images",
    "PredictSettings": "bayescellseg.inference.segmenter",
    "PredictedMaps": "bayescellseg.inference.result",
    "PredictionInfo": "bayescellseg.inference.result",
    "Result": "bayescellseg.inference.result",
    "Segmenter": "bayescellseg.inference.segmenter",
    "load_image": "bayescellseg.io.images",
    "read_image": "bayescellseg.io.images",
    "resolve_device": "bayescellseg.inference.device",
    "write_exports": "bayescellseg.export.writer",
}

__all__ = [
    "ExportOptions",
    "LoadedImage",
    "PredictSettings",
    "PredictedMaps",
    "PredictionInfo",
    "Result",
    "Segmenter",
    "__version__",
    "load_image",
    "read_image",
    "resolve_device",
    "write_exports",
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
