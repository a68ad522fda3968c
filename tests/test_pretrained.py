"""The bundled pretrained nucleus model: present, small, calibrated, and it segments nuclei."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bayescellseg.inference.segmenter import Segmenter, bundled_model_path
from bayescellseg.io.dsb import read_dsb_sample
from bayescellseg.metrics.matching import dsb_score
from bayescellseg.model.store import read_calibration
from bayescellseg.samples import sample_root

SMALL_SAMPLE = "1609b1b8480ee52652a644403b3f7d5511410a016750aa3b9a4c8ddb3e893e8e"  # 360x360
GREY_SAMPLE = "c1afe66cd139f996fd984f5f2622903730ec2f1192d90608154f07f7ef6cdb4b"  # 256x320


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter.load()


def test_bundled_model_folder_is_complete_and_small() -> None:
    folder = bundled_model_path()
    for name in ("config.json", "weights.safetensors", "MODEL_CARD.md", "train_log.csv"):
        assert (folder / name).is_file(), name
    assert (folder / "weights.safetensors").stat().st_size <= 25 * 2**20
    config = json.loads((folder / "config.json").read_text())
    # the study's choice (docs/study.md): a deep ensemble of three width-16 U-Nets
    assert config["model"]["method"] == "ensemble" and config["model"]["n_members"] == 3
    # calibrated on the held-out validation images of both training sources (calibration.json)
    calibration = read_calibration(folder)
    assert (
        calibration["temperature"] > 0 and calibration["logit_bias"] < 0
    )  # borders over-predicted
    assert {"postprocess", "review", "calibration"} <= set(calibration)
    assert calibration["calibration"]["n_images"] == 139  # 130 DSB2018 + 9 TNBC
    assert calibration["calibration"]["fit_region"] == "band"
    assert (folder / "trust.json").is_file() and (folder / "split.json").is_file()


def test_bundled_model_segments_a_validation_sample(segmenter: Segmenter) -> None:
    sample = read_dsb_sample(sample_root(), SMALL_SAMPLE)
    result = segmenter.predict(sample.image, n_samples=4, seed=0)
    assert result.labels.shape == sample.labels.shape
    assert dsb_score(sample.labels, result.labels) > 0.5  # 0.72 in the validation report
    n_true = len(np.unique(sample.labels)) - 1
    assert abs(result.summary.n_nuclei - n_true) <= 0.3 * n_true
    for name, values in result.maps().items():
        assert np.isfinite(values).all(), name
        assert values.min() >= 0.0 and values.max() <= 1.0, name
    assert np.allclose(result.entropy - result.aleatoric, result.epistemic, atol=1e-5)
    assert {r.label for r in result.nuclei} == set(np.unique(result.labels)) - {0}


def test_diameter_restores_accuracy_on_an_enlarged_image(segmenter) -> None:
    """Nuclei twice the training size split into pieces unless the image is shrunk first: by
    default (``diameter="auto"``) or with the diameter given."""
    from skimage.transform import resize

    from bayescellseg.data.sizes import median_diameter

    assert segmenter.nucleus_diameter == pytest.approx(19.931)  # median of the training split
    sample = read_dsb_sample(sample_root(), GREY_SAMPLE)
    shape = (2 * sample.labels.shape[0], 2 * sample.labels.shape[1])
    image = resize(sample.image, shape, order=1, preserve_range=True).astype(sample.image.dtype)
    truth = resize(sample.labels, shape, order=0, preserve_range=True).astype(sample.labels.dtype)
    native = dsb_score(sample.labels, segmenter.predict(sample.image, n_samples=0).labels)
    plain = dsb_score(truth, segmenter.predict(image, n_samples=0, diameter=None).labels)
    default = segmenter.predict(image, n_samples=0)  # diameter="auto"
    given = segmenter.predict(image, n_samples=0, diameter=median_diameter([truth]))
    assert given.labels.shape == shape and given.info.scale < 0.5
    assert default.labels.shape == shape and default.info.scale < 0.5
    # measured with ensemble16_dh (bf16, torch resizing, balanced tiles): no resizing 0.145, the
    # default "auto" 0.476, the true diameter 0.433; native 0.471 (ensemble16_ft: 0.174, 0.491,
    # 0.505, 0.508)
    assert dsb_score(truth, default.labels) > plain + 0.15
    assert dsb_score(truth, given.labels) > plain + 0.25
    assert dsb_score(truth, given.labels) > native - 0.05


def test_bundled_trust_models_fitted_on_held_out_images(segmenter: Segmenter) -> None:
    """trust.json (issue 21): beside config.json, fitted on held-out images, usable."""
    from bayescellseg.trust import load_trust, trust_signals

    folder = bundled_model_path()
    trust = load_trust(folder)
    assert trust is not None
    record = trust.provenance
    assert record["fitted_on"] == "held-out images only"
    # MoNuSeg (CC BY-NC-SA) is left out of the bundled fit; its licence would carry over
    assert record["sources"] == {"dsb2018": 130, "koyuncu": 41, "tnbc": 9}
    assert set(record["licences"]) == set(record["sources"])
    # the DSB2018 images are the model's validation images, never its training images
    config = json.loads((folder / "config.json").read_text())
    assert "trust" not in config  # config.json is not rewritten
    sample = read_dsb_sample(sample_root(), SMALL_SAMPLE)
    result = segmenter.predict(sample.image, seed=0)
    signals = trust_signals(result, trust, segmenter.params.fg_threshold)
    assert 0.0 <= signals.predicted_score_low <= signals.predicted_score
    assert signals.predicted_score <= signals.predicted_score_high <= 1.0
    truth = dsb_score(sample.labels, result.labels)  # 0.72 in the validation report
    assert signals.predicted_score_low <= truth <= signals.predicted_score_high
    assert signals.p_correct.shape == (len(result.nuclei),)
    assert np.all((signals.p_correct > 0) & (signals.p_correct < 1))
    assert not signals.ood  # a validation image of the training source (and a fitting image)


def test_opt_in_nc_model_carries_its_licence() -> None:
    """``nuclei-nc`` (trained also on MoNuSeg, CC BY-NC-SA 4.0) says so in its folder and on
    load, and segments like the default model."""
    folder = bundled_model_path("nuclei-nc")
    for name in ("config.json", "weights.safetensors", "MODEL_CARD.md", "LICENSE", "split.json"):
        assert (folder / name).is_file(), name
    assert (folder / "weights.safetensors").stat().st_size <= 25 * 2**20
    assert "CC BY-NC-SA 4.0" in (folder / "LICENSE").read_text()
    split = json.loads((folder / "split.json").read_text())
    assert set(split["sources"]) == {"dsb2018", "tnbc", "monuseg"}
    calibration = read_calibration(folder)
    assert calibration["calibration"]["n_images"] == 147  # 130 DSB2018 + 9 TNBC + 8 MoNuSeg
    seg = Segmenter.load("nuclei-nc")
    assert seg.licence is not None and seg.licence.startswith("CC BY-NC-SA 4.0")
    assert Segmenter.load().licence is None  # the default model is MIT
    sample = read_dsb_sample(sample_root(), SMALL_SAMPLE)
    result = seg.predict(sample.image, seed=0)
    assert dsb_score(sample.labels, result.labels) > 0.5


def test_opt_in_nc_model_has_its_own_trust_models() -> None:
    """``nuclei-nc``'s trust.json: fitted on its own held-out images, MoNuSeg's 8 included (the
    folder carries that licence already), and it gives this model's images signals."""
    from bayescellseg.trust import load_trust, trust_signals

    seg = Segmenter.load("nuclei-nc")
    trust = load_trust(bundled_model_path("nuclei-nc"))
    assert trust is not None and trust.provenance["fitted_on"] == "held-out images only"
    assert trust.provenance["sources"] == {"dsb2018": 130, "koyuncu": 41, "monuseg": 8, "tnbc": 9}
    assert "CC BY-NC-SA" in trust.provenance["licences"]["monuseg"]
    sample = read_dsb_sample(sample_root(), SMALL_SAMPLE)
    result = seg.predict(sample.image, seed=0)
    signals = trust_signals(result, trust, seg.params.fg_threshold)
    truth = dsb_score(sample.labels, result.labels)
    assert signals.predicted_score_low <= truth <= signals.predicted_score_high
    assert signals.p_correct.shape == (len(result.nuclei),)
    assert not signals.ood
