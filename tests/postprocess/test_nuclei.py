"""Tests of the per-nucleus table, stability, review flags and the image summary."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest

from bayescellseg.errors import InputError
from bayescellseg.metrics.matching import dsb_score
from bayescellseg.postprocess.nuclei import (
    NUCLEUS_COLUMNS,
    ReviewThresholds,
    analyse_segmentation,
    best_match_iou,
    nucleus_table,
    records_to_rows,
    sample_agreement,
)
from tests.synthetic import synthetic_labels


def _final() -> np.ndarray:
    """Nucleus 7: 4x4 square at rows/cols 2..5; nucleus 3: 5x5 square at rows/cols 10..14."""
    labels = np.zeros((20, 20), np.uint32)
    labels[2:6, 2:6] = 7
    labels[10:15, 10:15] = 3
    return labels


def _shifted_missing() -> np.ndarray:
    """Nucleus 7 shifted right by one pixel (IoU 12/20 = 0.6), nucleus 3 missing."""
    sample = np.zeros((20, 20), np.int32)
    sample[2:6, 3:7] = 1
    return sample


def _maps(shape: tuple[int, int] = (20, 20)) -> dict[str, np.ndarray]:
    prob = np.full(shape, 0.9, np.float32)
    prob[2, 2] = 0.5
    entropy = np.zeros(shape, np.float32)
    entropy[10:15, 10] = 1.0  # one column of the 5x5 nucleus: mean 5/25 = 0.2
    epistemic = np.full(shape, 0.1, np.float32)
    return {"probability": prob, "entropy": entropy, "epistemic": epistemic}


def test_stability_hand_computed() -> None:
    labels = _final()
    agreement = sample_agreement(labels, [labels.copy(), _shifted_missing()])
    assert agreement.labels.tolist() == [3, 7]
    # Nucleus 3: IoU 1 then missing (0) -> 0.5. Nucleus 7: IoU 1 then 0.6 -> 0.8.
    np.testing.assert_allclose(agreement.stability, [0.5, 0.8])
    # Sample 2 vs final: 2 true, 1 predicted, one pair at IoU 0.6 -> TP = 1 at t = 0.5 and 0.55
    # -> 1 / (1 + 0 + 1) = 0.5 twice, 0 at the other eight thresholds -> 1.0 / 10 = 0.1.
    np.testing.assert_allclose(agreement.sample_scores, [1.0, 0.1])
    assert agreement.predicted_quality == pytest.approx(0.55)
    assert agreement.sample_scores[1] == pytest.approx(dsb_score(labels, _shifted_missing()))


def test_stability_one_when_samples_equal_final() -> None:
    labels = synthetic_labels((96, 96), n=10, seed=4)
    agreement = sample_agreement(labels, [labels] * 3)
    np.testing.assert_allclose(agreement.stability, 1.0)
    np.testing.assert_allclose(agreement.sample_scores, 1.0)


def test_stability_matches_brute_force_and_dsb() -> None:
    labels = synthetic_labels((96, 96), n=12, seed=5)
    samples = [np.roll(labels, s, axis=1) for s in (1, 3)] + [synthetic_labels((96, 96), 12, 6)]
    agreement = sample_agreement(labels, samples)
    ids = [i for i in np.unique(labels) if i > 0]
    for k, i in enumerate(ids):
        ious = []
        for sample in samples:
            a = labels == i
            best = 0.0
            for j in np.unique(sample[a]):
                if j == 0:
                    continue
                b = sample == j
                best = max(best, (a & b).sum() / (a | b).sum())
            ious.append(best)
        assert agreement.stability[k] == pytest.approx(np.mean(ious))
    for t, sample in enumerate(samples):
        assert agreement.sample_scores[t] == pytest.approx(dsb_score(labels, sample))


def test_best_match_iou() -> None:
    np.testing.assert_allclose(best_match_iou(_final(), _shifted_missing()), [0.0, 0.6])


def test_nucleus_table_values_and_flags() -> None:
    labels = _final()
    maps = _maps()
    records = nucleus_table(labels, maps, [labels.copy(), _shifted_missing()])
    assert [r.label for r in records] == [3, 7]
    r3, r7 = records
    assert (r7.centroid_y, r7.centroid_x, r7.area) == (3.5, 3.5, 16)
    assert (r3.centroid_y, r3.centroid_x, r3.area) == (12.0, 12.0, 25)
    assert r7.mean_probability == pytest.approx((15 * 0.9 + 0.5) / 16)
    assert r3.mean_probability == pytest.approx(0.9)
    assert r3.mean_entropy == pytest.approx(0.2)
    assert r7.mean_entropy == 0.0
    assert r7.mean_mutual_information == pytest.approx(0.1)
    assert r3.stability == pytest.approx(0.5) and r3.uncertainty == pytest.approx(0.5)
    assert r7.stability == pytest.approx(0.8) and r7.uncertainty == pytest.approx(0.2)
    assert r3.needs_review and not r7.needs_review  # default threshold 0.3
    strict = nucleus_table(labels, maps, [labels, _shifted_missing()], ReviewThresholds(0.1))
    assert all(r.needs_review for r in strict)
    lax = nucleus_table(labels, maps, [labels, _shifted_missing()], ReviewThresholds(0.5))
    assert not any(r.needs_review for r in lax)  # 0.5 is not > 0.5


def test_nucleus_table_without_samples_uses_entropy() -> None:
    records = nucleus_table(_final(), _maps(), None, ReviewThresholds(nucleus_uncertainty=0.1))
    r3, r7 = records
    assert math.isnan(r3.stability)
    assert r3.uncertainty == pytest.approx(0.2) and r3.needs_review
    assert r7.uncertainty == 0.0 and not r7.needs_review


def test_nucleus_table_inputs_checked_and_not_modified() -> None:
    labels = _final()
    maps = _maps()
    copies = {k: v.copy() for k, v in maps.items()}
    labels_copy = labels.copy()
    nucleus_table(labels, maps, [labels])
    assert np.array_equal(labels, labels_copy)
    assert all(np.array_equal(maps[k], copies[k]) for k in maps)
    with pytest.raises(ValueError, match="epistemic"):
        nucleus_table(labels, {"probability": maps["probability"], "entropy": maps["entropy"]})
    with pytest.raises(ValueError, match="shape"):
        nucleus_table(labels, {k: v[:-1] for k, v in maps.items()})
    with pytest.raises(ValueError, match="integers"):
        nucleus_table(labels.astype(np.float32), maps)
    assert nucleus_table(np.zeros((20, 20), np.uint32), maps, [labels]) == []


def test_rows_have_stable_columns_and_write_csv() -> None:
    records = nucleus_table(_final(), _maps(), None)
    rows = records_to_rows(records)
    assert [tuple(row) for row in rows] == [NUCLEUS_COLUMNS] * 2
    assert rows[0]["stability"] is None  # NaN -> empty cell
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=NUCLEUS_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    lines = buf.getvalue().splitlines()
    assert lines[0] == ",".join(NUCLEUS_COLUMNS)
    cells = lines[1].split(",")
    assert cells[:4] == ["3", "12.0", "12.0", "25"]
    assert float(cells[4]) == pytest.approx(0.9) and float(cells[5]) == pytest.approx(0.2)
    assert cells[7:] == ["", "0.2", "False"]  # no stability; uncertainty = mean entropy


def test_image_summary_hand_case() -> None:
    labels = _final()
    maps = _maps()
    fg = labels > 0
    records, summary = analyse_segmentation(labels, maps, fg, [labels, _shifted_missing()])
    assert summary.n_nuclei == 2
    assert summary.foreground_fraction == pytest.approx(41 / 400)
    assert summary.mean_probability == pytest.approx((40 * 0.9 + 0.5) / 41)
    assert summary.mean_entropy == pytest.approx(5 / 41)
    assert summary.mean_stability == pytest.approx(0.65)
    assert summary.predicted_quality == pytest.approx(0.55)
    assert summary.uncertainty == pytest.approx(0.999 * 0.45 + 0.001 * 5 / 41)  # ties: entropy
    assert summary.n_flagged == 1 and summary.fraction_flagged == 0.5
    assert summary.needs_review
    assert len(summary.reasons) == 2
    assert "image uncertainty 0.45 > 0.30" in summary.reasons[0]
    assert "1 of 2 nuclei flagged" in summary.reasons[1]
    data = json.loads(json.dumps(summary.to_dict(), allow_nan=False))
    assert data["n_nuclei"] == 2 and data["needs_review"] is True

    thresholds = ReviewThresholds(
        nucleus_uncertainty=0.6, image_uncertainty=0.5, max_flagged_fraction=0.25
    )
    _, relaxed = analyse_segmentation(labels, maps, fg, [labels, _shifted_missing()], thresholds)
    assert not relaxed.needs_review and relaxed.reasons == ()


def test_image_summary_without_samples_and_empty_cases() -> None:
    labels = _final()
    maps = _maps()
    records, summary = analyse_segmentation(labels, maps, labels > 0, None)
    assert math.isnan(summary.predicted_quality) and math.isnan(summary.mean_stability)
    assert summary.uncertainty == pytest.approx(np.mean([0.2, 0.0]))
    assert summary.to_dict()["predicted_quality"] is None

    empty = np.zeros((20, 20), np.uint32)
    fg = np.zeros((20, 20), bool)
    fg[0:3, 0:3] = True  # foreground predicted but everything removed as too small
    _, lost = analyse_segmentation(empty, maps, fg, [empty])
    assert lost.n_nuclei == 0 and lost.needs_review
    assert lost.reasons == ("foreground predicted but no nucleus found",)
    _, blank = analyse_segmentation(empty, maps, np.zeros((20, 20), bool), [empty])
    assert not blank.needs_review and blank.predicted_quality == 1.0 and blank.uncertainty == 0.0


def test_review_thresholds_round_trip_and_errors() -> None:
    t = ReviewThresholds(0.2, 0.4, 0.1)
    assert ReviewThresholds.from_dict(json.loads(json.dumps(t.to_dict()))) == t
    with pytest.raises(InputError, match="unknown review threshold"):
        ReviewThresholds.from_dict({"nucleus": 0.2})
    with pytest.raises(InputError, match="nucleus_uncertainty"):
        ReviewThresholds.from_dict({"nucleus_uncertainty": float("nan")})


def test_many_nuclei_large_image() -> None:
    # 64 tiles of synthetic nuclei with distinct labels: ~1500 nuclei, 8 samples.
    tile = synthetic_labels((128, 128), n=25, seed=0).astype(np.int64)
    offsets = np.arange(64).reshape(8, 8) * int(tile.max())
    big = np.where(tile[None, None] > 0, tile[None, None] + offsets[..., None, None], 0)
    labels = big.transpose(0, 2, 1, 3).reshape(1024, 1024).astype(np.uint32)
    samples = [np.roll(labels, s, axis=s % 2) for s in range(8)]
    maps = {k: np.random.default_rng(0).random((1024, 1024), np.float32) for k in _maps()}
    records, summary = analyse_segmentation(labels, maps, labels > 0, samples)
    assert len(records) == summary.n_nuclei > 1000


def test_image_summary_agreeing_samples_not_exactly_zero() -> None:
    """Three identical samples (full agreement) still give a positive image uncertainty."""
    labels = _final()
    maps = _maps()
    _, summary = analyse_segmentation(labels, maps, labels > 0, [labels] * 3)
    assert summary.predicted_quality == 1.0
    # mean entropy over the 41 foreground pixels: 5 / 41; uncertainty = 0.001 * 5 / 41
    assert summary.uncertainty == pytest.approx(0.001 * 5 / 41)
    assert summary.uncertainty > 0.0
