"""Segmenter: loading, maps, nuclei, summary, settings from the model folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayescellseg.data.normalize import normalize
from bayescellseg.data.sizes import median_diameter
from bayescellseg.errors import InputError
from bayescellseg.inference.rescale import AUTO_RANGE
from bayescellseg.inference.segmenter import (
    AUTO_MIN_NUCLEI,
    Segmenter,
    as_float_rgb,
)
from bayescellseg.inference.uncertainty import UncertaintyMaps
from bayescellseg.postprocess.nuclei import ImageSummary
from tests.synthetic import synthetic_image, synthetic_labels

MAPS = ("probability", "entropy", "aleatoric", "epistemic", "variance", "contour")


@pytest.fixture
def raw_image() -> np.ndarray:
    labels = synthetic_labels((64, 72), n=6, seed=2)
    return (synthetic_image(labels, seed=2) * 255).astype(np.uint8)


def test_predict_maps_nuclei_and_summary(model_dir, raw_image) -> None:
    seg = Segmenter.load(model_dir)
    before = raw_image.copy()
    result = seg.predict(raw_image, n_samples=4, seed=0)
    np.testing.assert_array_equal(raw_image, before)
    assert result.labels.shape == (64, 72) and result.labels.dtype == np.uint32
    for name in MAPS:
        arr = getattr(result, name)
        assert arr.shape == (64, 72) and arr.dtype == np.float32, name
        assert 0 <= arr.min() and arr.max() <= 1, name
    np.testing.assert_allclose(result.epistemic, result.entropy - result.aleatoric, atol=1e-6)
    assert isinstance(result, UncertaintyMaps) and tuple(result.maps()) == MAPS
    assert result.epistemic.max() > 0  # 4 dropout samples disagree somewhere
    ids = np.unique(result.labels)
    assert [r.label for r in result.nuclei] == ids[ids > 0].tolist()
    assert isinstance(result.summary, ImageSummary)
    assert result.info.n_samples == 4 and result.info.tta is False
    assert result.summary.n_nuclei == len(result.nuclei)
    saved = result.summary_dict()  # what name_summary.json holds: the summary, then the info
    assert list(saved) == [*result.summary.to_dict(), *result.info.to_dict()]
    assert {"uncertainty", "predicted_quality", "needs_review", "reasons", "scale"} <= set(saved)
    if result.nuclei:
        assert all(0 <= r.stability <= 1 for r in result.nuclei)
    # Same seed, same result; default T comes from the model config (3).
    again = seg.predict(raw_image, n_samples=4, seed=0)
    np.testing.assert_array_equal(again.probability, result.probability)
    assert seg.predict(raw_image).info.n_samples == 3


def test_grey_and_rgb_inputs_agree(model_dir, raw_image) -> None:
    seg = Segmenter.load(model_dir)
    grey = raw_image[..., 0]
    a = seg.predict(grey, n_samples=2)
    b = seg.predict(np.repeat(grey[..., None], 3, axis=2), n_samples=2)
    np.testing.assert_array_equal(a.probability, b.probability)
    c = seg.predict(grey.astype(np.float32) / 255, n_samples=2)
    np.testing.assert_allclose(c.probability, a.probability, atol=1e-5)


def test_bad_images_raise_input_error(model_dir) -> None:
    seg = Segmenter.load(model_dir)
    with pytest.raises(InputError, match="shape"):
        seg.predict(np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(InputError, match="NaN"):
        seg.predict(np.full((8, 8), np.nan, np.float32))
    assert as_float_rgb(np.full((2, 2), 65535, np.uint16)).max() == 1.0


def test_temperature_and_postprocess_from_extras(model_factory, raw_image) -> None:
    folder = model_factory({"temperature": 2.0, "logit_bias": 0.25}, method="deterministic")
    seg = Segmenter.load(folder, precision="fp32")  # compared with a plain float32 forward
    result = seg.predict(raw_image)
    x = normalize(as_float_rgb(raw_image), mode=seg.config.normalization)
    with torch.no_grad():
        logits = seg.model(torch.from_numpy(x.transpose(2, 0, 1).copy())[None])[0]
    expected = torch.sigmoid(logits[0] / 2 + 0.25).numpy()
    np.testing.assert_allclose(result.probability, expected, atol=1e-5)
    # Deterministic: one sample, no epistemic uncertainty, stability unknown (NaN).
    assert result.info.n_samples == 1
    assert result.epistemic.max() == 0
    assert all(np.isnan(r.stability) for r in result.nuclei)

    strict = Segmenter.load(model_factory({"postprocess": {"fg_threshold": 0.999}}))
    assert strict.params.fg_threshold == 0.999
    assert strict.predict(raw_image, n_samples=2).labels.max() == 0


def test_invalid_extras_are_reported(model_factory) -> None:
    with pytest.raises(InputError, match="postprocess"):
        Segmenter.load(model_factory({"postprocess": {"no_such_setting": 1}}))
    with pytest.raises(InputError, match="temperature"):
        Segmenter.load(model_factory({"temperature": -1}))
    with pytest.raises(InputError, match="logit_bias must be a finite number"):
        Segmenter.load(model_factory({"logit_bias": "high"}))


def test_load_errors(tmp_path) -> None:
    with pytest.raises(InputError, match="not found"):
        Segmenter.load(tmp_path / "missing")
    with pytest.raises(InputError, match="device"):
        Segmenter.load(tmp_path, device="no-such-device")


def test_ensemble_spreads_samples(model_factory, raw_image) -> None:
    seg = Segmenter.load(model_factory(method="ensemble", n_members=2, dropout_rate=0.0))
    result = seg.predict(raw_image, n_samples=10)
    assert result.info.n_samples == 2  # no dropout: one pass per member
    assert result.epistemic.max() > 0  # members disagree


def test_tiled_prediction_runs_and_matches_shape(model_dir) -> None:
    labels = synthetic_labels((100, 90), n=10, seed=4)
    raw = (synthetic_image(labels, seed=4) * 255).astype(np.uint8)
    result = Segmenter.load(model_dir).predict(raw, n_samples=2, tile_size=48)
    assert result.labels.shape == (100, 90)
    assert result.probability.shape == (100, 90)


def test_diameter_resizes_for_the_network_and_back(model_factory, raw_image) -> None:
    seg = Segmenter.load(model_factory({"nucleus_diameter": 20.0}))
    assert seg.nucleus_diameter == 20.0
    plain = seg.predict(raw_image, n_samples=2)
    assert plain.info.scale == 1.0 and plain.info.diameter is None
    for diameter, scale in ((10.0, 2.0), ("40", 0.5)):
        result = seg.predict(raw_image, n_samples=2, diameter=diameter)
        assert result.info.scale == scale and result.info.diameter == float(diameter)
        for name in MAPS:
            assert getattr(result, name).shape == (64, 72), name
        assert result.labels.shape == (64, 72)
    assert not np.allclose(result.probability, plain.probability)  # the network saw another image


def test_auto_diameter_is_the_median_of_a_first_single_pass(model_factory, raw_image) -> None:
    blobs = {"postprocess": {"marker_threshold": 0.1}}  # the random-weight network finds blobs
    first = Segmenter.load(model_factory(blobs)).predict(raw_image, n_samples=0)
    estimate = median_diameter([first.labels], min_count=AUTO_MIN_NUCLEI)
    assert np.isfinite(estimate)
    # twice too small: resized to the near end of the range, model / 1.5; within it: unscaled
    for model_diameter, scale in ((2 * estimate, 2 / AUTO_RANGE), (1.1 * estimate, 1.0)):
        seg = Segmenter.load(model_factory({**blobs, "nucleus_diameter": model_diameter}))
        auto = seg.predict(raw_image, n_samples=2, diameter="auto")
        assert auto.info.diameter == pytest.approx(estimate)
        assert auto.info.scale == pytest.approx(scale)
    blank = np.zeros((64, 72), np.uint8)  # nothing to measure: no resizing
    seg = Segmenter.load(model_factory({"nucleus_diameter": 20.0}))
    summary = seg.predict(blank, n_samples=0, diameter="auto").info
    assert summary.diameter is None and summary.scale == 1.0


def test_auto_diameter_measures_large_nuclei_on_shrunk_images(
    model_factory, raw_image, monkeypatch
) -> None:
    # Scripted measurements by the width of the image each pass saw: the full-scale pass cuts
    # the nuclei into 15 px pieces, the image shrunk by 2 shows them whole at 40 px, and the
    # one shrunk by 4 at 10 px, too small to trust (model 20 px, tolerance 1.25 -> 16 px).
    seen = {72: 15.0, 36: 40.0, 18: 10.0}
    widths = []

    def measured(self, samples):
        widths.append(samples.maps.probability.shape[1])
        return seen[widths[-1]]

    monkeypatch.setattr(Segmenter, "_median_diameter", measured)
    seg = Segmenter.load(model_factory({"nucleus_diameter": 20.0}))
    summary = seg.predict(raw_image, n_samples=0, diameter="auto").info
    assert widths == [36, 18]  # half scale trusted: the image is shrunk, no full-scale pass
    assert summary.diameter == pytest.approx(80.0)
    assert summary.scale == pytest.approx(20 * AUTO_RANGE / 80)  # to the range's upper end
    seen[36] = 12.0  # not trusted: no quarter-scale probe, the full-scale estimate stands
    widths.clear()
    summary = seg.predict(raw_image, n_samples=0, diameter="auto").info
    assert widths == [36, 72]
    assert summary.diameter == 15.0 and summary.scale == 1.0  # within 20 / 1.5 .. 20 * 1.5


def test_bad_diameters_are_refused(model_factory, raw_image) -> None:
    seg = Segmenter.load(model_factory({"nucleus_diameter": 20.0}))
    for bad in ("big", -1.0, 0, float("nan"), True):
        with pytest.raises(InputError, match="^diameter: "):
            seg.predict(raw_image, diameter=bad)
    without = Segmenter.load(model_factory())
    with pytest.raises(InputError, match="records no nucleus_diameter"):
        without.predict(raw_image, diameter=12.0)
    assert without.predict(raw_image, diameter=None).info.scale == 1.0
    with pytest.raises(InputError, match="nucleus_diameter must be a positive number"):
        Segmenter.load(model_factory({"nucleus_diameter": -3}))


def test_auto_reuses_its_first_pass_when_that_is_the_prediction(model_factory, monkeypatch) -> None:
    import bayescellseg.inference.segmenter as segmenter_module

    seg = Segmenter.load(model_factory({"nucleus_diameter": 1000.0}))  # scale clipped, not 1
    calls = []
    real = segmenter_module.sample_image
    monkeypatch.setattr(
        segmenter_module, "sample_image", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    blank = np.zeros((64, 72), np.uint8)  # no nuclei: scale 1, full-scale single pass reused
    result = seg.predict(blank, n_samples=0, diameter="auto")
    assert len(calls) == 2 and result.info.scale == 1.0  # half-scale probe, full-scale pass
    calls.clear()
    seg.predict(blank, n_samples=2, diameter="auto")  # MC: the first pass cannot stand in
    assert len(calls) == 3
    # the reused first pass gives the same maps as a plain single pass at scale 1
    np.testing.assert_array_equal(result.probability, seg.predict(blank, n_samples=0).probability)


def test_load_names_a_missing_bundled_model(tmp_path, monkeypatch) -> None:
    import bayescellseg.inference.segmenter as segmenter_module

    monkeypatch.setattr(segmenter_module, "bundled_model_path", lambda name: tmp_path / name)
    with pytest.raises(InputError, match="bundled pretrained model 'nuclei-nc' is not installed"):
        Segmenter.load("nuclei-nc")
    with pytest.raises(InputError, match="bundled pretrained model 'nuclei' is not installed"):
        Segmenter.load("bundled")


def test_licence_of_the_weights_comes_from_the_config(model_factory) -> None:
    assert Segmenter.load(model_factory()).licence is None
    seg = Segmenter.load(model_factory({"licence": "CC BY-NC-SA 4.0"}))
    assert seg.licence == "CC BY-NC-SA 4.0"


def test_auto_keeps_a_probe_whose_nuclei_are_in_range(
    model_factory, raw_image, monkeypatch
) -> None:
    import bayescellseg.inference.segmenter as segmenter_module

    # half scale: 26 px, trusted (>= 16) and within 20 / 1.5 .. 20 * 1.5; quarter: not trusted
    seen = {72: 15.0, 36: 26.0, 18: 10.0}
    real = Segmenter._median_diameter
    monkeypatch.setattr(
        Segmenter,
        "_median_diameter",
        lambda self, samples: seen[samples.maps.probability.shape[1]],
    )
    calls = []
    real_sample = segmenter_module.sample_image
    monkeypatch.setattr(
        segmenter_module, "sample_image", lambda *a, **k: calls.append(1) or real_sample(*a, **k)
    )
    seg = Segmenter.load(model_factory({"nucleus_diameter": 20.0}))
    auto = seg.predict(raw_image, n_samples=0, diameter="auto")
    assert len(calls) == 2  # the half- and quarter-scale probes, no third pass
    assert auto.info.diameter == pytest.approx(52.0) and auto.info.scale == 0.5
    calls.clear()
    mc = seg.predict(raw_image, n_samples=2, diameter="auto")  # MC: the same scale, a new pass
    assert len(calls) == 3 and mc.info.scale == 0.5
    monkeypatch.setattr(Segmenter, "_median_diameter", real)
    given = seg.predict(raw_image, n_samples=0, diameter=40.0)  # the same scale, 0.5
    assert given.info.scale == 0.5
    np.testing.assert_array_equal(auto.probability, given.probability)
    np.testing.assert_array_equal(auto.labels, given.labels)
