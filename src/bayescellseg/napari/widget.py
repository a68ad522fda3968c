"""The *Segment nuclei* widget: runs the Segmenter on the selected image layer and adds the
nuclei (Labels, the nucleus table as features, coloured by review flag) and the probability and
epistemic-uncertainty maps (Image layers), placed over the input layer.

napari builds the form from the signature of :func:`segment_nuclei` (``autogenerate`` in
``napari.yaml``). The segmentation runs in napari's main thread: the window waits while it runs
(seconds per megapixel on a CPU). No ``from __future__ import annotations`` here: magicgui reads
the annotations as objects.
"""

import functools
from typing import Annotated, Any

import napari
import numpy as np

from bayescellseg.errors import InputError
from bayescellseg.export.measurements import result_table
from bayescellseg.inference.device import resolve_device
from bayescellseg.io.channels import RawImage, intensity_planes
from bayescellseg.io.pixelsize import diameter_in_pixels
from bayescellseg.napari.layers import segmentation_layers


@functools.lru_cache(maxsize=2)
def _segmenter(model: str, device: str) -> tuple[Any, Any]:
    """The Segmenter and its folder's trust models (None without ``trust.json``)."""
    from bayescellseg.inference.segmenter import Segmenter
    from bayescellseg.trust.model import load_trust

    segmenter = Segmenter.load(model or None, device=str(resolve_device(device)))
    return segmenter, load_trust(segmenter.source)


def layer_image(layer: napari.layers.Image) -> np.ndarray:
    """The 2D (H, W) or (H, W, 3|4) RGB data of an image layer.

    Raises:
        InputError: A layer with more dimensions (a stack or multichannel layer).
    """
    data = np.asarray(layer.data)
    if data.ndim == 2 or (layer.rgb and data.ndim == 3):
        return data
    raise InputError(
        f"layer {layer.name!r}",
        f"has shape {data.shape}; choose a 2D image layer (split a stack or a multichannel "
        "image into single-channel layers first, e.g. Image > Split Stack)",
    )


def segment_nuclei(
    image: napari.layers.Image,
    model: Annotated[str, {"label": "model folder (empty: bundled)"}] = "",
    samples: Annotated[int, {"min": -1, "label": "samples (-1: model default)"}] = -1,
    diameter: Annotated[str, {"label": "diameter (px, 8um, auto or none)"}] = "auto",
    tta: bool = False,
    device: str = "auto",
) -> list[napari.types.LayerDataTuple]:
    """Segment the nuclei of ``image`` and return the layers to add.

    Args:
        image: A 2D grey or RGB image layer. Its ``metadata["pixel_size_um"]`` (set by this
            plugin's reader), if any, gives the um columns and lets ``diameter`` be a length.
        model: A model folder; empty: the bundled model.
        samples: Stochastic samples (-1: the model's default; 0: one deterministic pass).
        diameter: Typical nucleus diameter (``45``, ``8um``), ``auto`` (the default, as in
            ``predict``: measured, resized only when far off the model's size) or ``none``
            (empty: none).
        tta: Cross the samples with the 8 flips / rotations (8x slower).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Returns:
        Layer-data tuples: probability and epistemic maps, then the nuclei.

    Raises:
        InputError: A layer that is not 2D, a bad model folder, device or diameter.
    """
    data = layer_image(image)
    pixel_size = image.metadata.get("pixel_size_um")
    segmenter, trust = _segmenter(model.strip(), device.strip() or "auto")
    result = segmenter.predict(
        data,
        n_samples=None if samples < 0 else samples,
        tta=tta,
        diameter=diameter_in_pixels(diameter.strip() or None, pixel_size, f"layer {image.name!r}"),
    )
    extra: dict[str, Any] = {}
    trust_summary: dict[str, Any] = {}
    if trust is not None:  # as predict: p_correct, its review flag, the predicted score
        from bayescellseg.pipelines.trusted import apply_trust

        result, signals = apply_trust(result, trust, segmenter.params.fg_threshold)
        extra["p_correct"] = signals.p_correct.tolist()
        trust_summary = signals.summary()
    raw = RawImage(data, "grey" if data.ndim == 2 else "colour")
    planes, names = intensity_planes(raw, data, None)
    _, rows = result_table(result.labels, result.nuclei, planes, names, pixel_size, extra)
    maps = {"probability": result.probability, "epistemic": result.epistemic}
    placement = {"scale": tuple(image.scale[-2:]), "translate": tuple(image.translate[-2:])}
    layers = segmentation_layers(result.labels, rows, maps, image.name, placement)
    summary = {**result.summary_dict(), **trust_summary}
    for _, meta, _ in layers:
        meta["metadata"] = {"pixel_size_um": pixel_size, "summary": summary}
    return layers
