"""The trust signals in predict: per-image flags (pipelines.trusted.apply_trust), the batch review
rule (batch_review) and the option checks before a batch (predict_options.check_options)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bayescellseg.errors import InputError
from bayescellseg.inference.segmenter import Segmenter
from bayescellseg.model.store import bundled_model_path
from bayescellseg.pipelines.predict import PredictOptions, predict_batch
from bayescellseg.pipelines.predict_options import check_options
from bayescellseg.pipelines.trusted import NO_NUCLEUS, ReviewRequest, apply_trust, batch_review
from bayescellseg.trust.model import TrustModel, load_trust
from bayescellseg.trust.signals import trust_signals
from tests.export.results import synthetic_result
from tests.pipelines.test_predict import write_images


@pytest.fixture(scope="module")
def trust() -> TrustModel:
    model = load_trust(bundled_model_path())
    assert model is not None  # the bundled model ships a trust.json
    return model


def test_apply_trust_flags_nuclei_by_p_correct_and_drops_the_old_image_flags(
    trust: TrustModel,
) -> None:
    result, _ = synthetic_result()
    old = replace(result.summary, needs_review=True, reasons=("image uncertainty 0.50 > 0.30", "x"))
    result = replace(result, summary=old)
    labels_before = result.labels.copy()
    trusted, signals = apply_trust(result, trust, 0.5)
    expected = trust_signals(result, trust, 0.5)
    np.testing.assert_array_equal(signals.p_correct, expected.p_correct)
    flags = [r.needs_review for r in trusted.nuclei]
    assert flags == [bool(p < trust.nucleus_review_below) for p in signals.p_correct]
    assert trusted.summary.n_flagged == sum(flags)
    assert trusted.summary.reasons == signals.reasons  # the old image reasons are gone
    assert trusted.summary.needs_review == bool(signals.reasons)
    assert result.summary is old and result.summary.reasons[1] == "x"  # input kept
    np.testing.assert_array_equal(result.labels, labels_before)


def test_apply_trust_keeps_the_no_nucleus_reason(trust: TrustModel) -> None:
    result, _ = synthetic_result()
    empty = replace(
        result,
        labels=np.zeros_like(result.labels),
        nuclei=[],
        summary=replace(result.summary, n_nuclei=0, foreground_fraction=0.1),
    )
    trusted, _ = apply_trust(empty, trust, 0.5)
    assert trusted.summary.needs_review and trusted.summary.reasons[0] == NO_NUCLEUS
    assert trusted.summary.fraction_flagged == 0.0


def _rows() -> list[dict]:
    return [
        {"image": "a", "status": "ok", "predicted_score": 0.9, "needs_review": False, "reasons": ""},
        {"image": "b", "status": "ok", "predicted_score": 0.1, "needs_review": True, "reasons": "ood"},
        {"image": "c", "status": "failed: broken"},
        {"image": "d", "status": "ok", "predicted_score": None, "needs_review": False},
        {"image": "e", "status": "ok", "predicted_score": 0.5, "needs_review": False, "reasons": ""},
    ]  # fmt: skip


def test_batch_review_budget_flags_the_lowest_scores_and_keeps_the_rows(trust: TrustModel) -> None:
    rows = _rows()
    out, record = batch_review(rows, trust, ReviewRequest(review_fraction=0.3))
    assert rows == _rows()  # not modified
    assert record["n_images"] == 3 and record["n_flagged"] == 1
    assert [r["needs_review"] for r in out if "needs_review" in r] == [False, True, False, False]
    assert out[1]["reasons"].startswith("ood; among the lowest predicted scores")
    assert "review budget 30%" in record["statement"]


def test_batch_review_min_quality_states_its_guarantee(trust: TrustModel) -> None:
    out, record = batch_review(_rows(), trust, ReviewRequest(min_quality=0.5, alpha=0.2))
    assert "at least 80% of the images not flagged have a DSB score >= 0.5" in record["statement"]
    assert out[1]["needs_review"] and "not certified to reach DSB score 0.5" in out[1]["reasons"]
    none, empty = batch_review([_rows()[2]], trust, ReviewRequest(min_quality=0.5))
    assert empty["n_images"] == 0 and none == [_rows()[2]]


def test_options_are_checked_before_the_batch(model_dir: Path, trust: TrustModel) -> None:
    segmenter = Segmenter.load(model_dir)  # a test model without trust.json or nucleus size
    bad = [
        (PredictOptions(min_quality=0.5), "needs the predicted scores of a trust model"),
        (PredictOptions(min_quality=0.5, review_fraction=0.1), "not both"),
        (PredictOptions(review_fraction=1.5), "between 0 and 1"),
        (PredictOptions(review_alpha=0.0), "review_alpha: must be in"),
        (PredictOptions(channel=1, channels=(0, 1)), "channel: give channel or channels"),
        (PredictOptions(save=frozenset({"tiff"})), "save: unknown outputs"),
        (PredictOptions(diameter="8furlong"), "unknown unit"),
        (PredictOptions(diameter="8um"), "records no nucleus_diameter"),
    ]
    for options, message in bad:
        with pytest.raises(InputError, match=message):
            check_options(segmenter, options, None)
    check_options(segmenter, PredictOptions(min_quality=0.5), trust)  # with a trust model: fine
    check_options(segmenter, PredictOptions(diameter="none"), None)


def test_a_length_diameter_without_pixel_size_fails_that_image_only(
    tmp_path: Path, model_factory
) -> None:
    model = model_factory({"nucleus_diameter": 18.0})
    images = write_images(tmp_path / "in", n=1, corrupt=False)
    summary = predict_batch(
        Segmenter.load(model), images, tmp_path / "out", PredictOptions(n_samples=2, diameter="8um")
    )
    assert summary.n_failed == 1
    assert (
        "img0.png: diameter='8um' is a length, but the image records no pixel size"
        in (summary.failures[0][1])
    )
    with_size = PredictOptions(n_samples=2, diameter="8um", pixel_size=0.5)
    summary = predict_batch(Segmenter.load(model), images, tmp_path / "b", with_size)
    assert summary.n_ok == 1 and math.isclose(summary.rows[0]["diameter"], 16.0)
