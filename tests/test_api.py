"""The public API: ``from bayescellseg import Segmenter, Result, read_image``."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import bayescellseg
from bayescellseg import PredictSettings, Result, Segmenter, read_image
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
