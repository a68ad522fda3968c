"""The public API: ``from bayescellseg import Segmenter, Result, read_image``."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import bayescellseg
from bayescellseg import PredictSettings, Result, Segmenter, read_image
from bayescellseg.io.images import read_label_image
from bayescellseg.postprocess.nuclei import ImageSummary
from bayescellseg.samples import sample_ids, sample_root


def test_import_is_cheap_and_names_are_lazy() -> None:
    code = "import sys, bayescellseg; print('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    assert set(bayescellseg.__all__) <= set(dir(bayescellseg))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = bayescellseg.nope


def test_bundled_sample_through_the_public_api() -> None:
    sample = sample_ids()[0]
    image = read_image(sample_root() / sample / "images" / f"{sample}.png")
    seg = Segmenter.load("bundled")
    result = seg.predict(image, seed=0)
    assert isinstance(result, Result) and isinstance(result.summary, ImageSummary)
    assert result.labels.shape == image.shape[:2] and result.summary.n_nuclei > 5
    assert result.info.n_samples == seg.n_samples() == 3
    # predict = predict_maps, then segment
    maps = seg.predict_maps(image, PredictSettings(seed=0))
    again = seg.segment(maps)
    np.testing.assert_array_equal(again.labels, result.labels)
    assert again.summary_dict() == result.summary_dict()


def test_reader_and_exports_through_the_public_api(tmp_path) -> None:
    from bayescellseg import ExportOptions, LoadedImage, load_image, resolve_device, write_exports

    code = (
        "import sys, bayescellseg; bayescellseg.load_image; bayescellseg.write_exports; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]  # reading and writing need no torch
    sample = sample_ids()[0]
    image = load_image(sample_root() / sample / "images" / f"{sample}.png")
    assert isinstance(image, LoadedImage) and image.pixel_size is None
    seg = Segmenter.load(device=str(resolve_device("auto")))
    result = seg.predict(image.image, n_samples=0)
    options = ExportOptions(save=frozenset({"labels", "geojson"}), pixel_size_um=0.5)
    written = write_exports(result, image, "a", tmp_path, options)
    assert [p.name for p in written] == ["a_labels.tif", "a_nuclei.geojson"]
    np.testing.assert_array_equal(read_label_image(written[0]), result.labels)
