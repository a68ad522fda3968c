"""The sample agreement and the DSB matching share one IoU engine and agree on a hand case."""

from __future__ import annotations

import numpy as np
import pytest

from bayescellseg.metrics.matching import dsb_score, match
from bayescellseg.metrics.overlaps import best_match_iou, label_index, overlaps
from bayescellseg.postprocess.agreement import TIE_FLOOR, sample_agreement, tie_broken_uncertainty
from bayescellseg.postprocess.nuclei import nucleus_table


def _final() -> np.ndarray:
    """Nucleus 9: 4x4 square (16 px); nucleus 2: 2x5 bar (10 px)."""
    labels = np.zeros((12, 12), np.uint64)
    labels[1:5, 1:5] = 9
    labels[8:10, 2:7] = 2
    return labels


def _sample() -> np.ndarray:
    """Nucleus 9 grown by one column (IoU 16/20 = 0.8); the bar split in two (3 px and 7 px)."""
    sample = np.zeros((12, 12), np.int32)
    sample[1:5, 1:6] = 4
    sample[8:10, 2:4] = 1  # 4 px of the bar: IoU 4/10 = 0.4
    sample[8:10, 4:7] = 5  # 6 px of the bar: IoU 6/10 = 0.6
    return sample


def test_matching_and_agreement_agree_on_a_hand_case() -> None:
    final, sample = _final(), _sample()
    # Best IoU per final nucleus (ascending id 2, 9): 0.6 and 0.8.
    np.testing.assert_allclose(best_match_iou(final, sample), [0.6, 0.8])
    result = match(final, sample)
    np.testing.assert_allclose(result.true_best_iou, [0.6, 0.8])
    # 2 final, 3 sample nuclei. IoU 0.8 matches up to t = 0.75 (6 thresholds), 0.6 at 0.5 and 0.55:
    # TP 2 at 0.5, 0.55 -> 2 / 3; TP 1 at 0.6 ... 0.75 -> 1 / 4; 0 at 0.8 ... 0.95.
    expected = (2 * 2 / 3 + 4 * 1 / 4) / 10
    assert result.score == pytest.approx(expected)
    agreement = sample_agreement(final, [sample, final])
    assert agreement.labels.tolist() == [2, 9]
    np.testing.assert_allclose(agreement.stability, [(0.6 + 1.0) / 2, (0.8 + 1.0) / 2])
    np.testing.assert_allclose(agreement.sample_scores, [expected, 1.0])
    assert agreement.sample_scores[0] == dsb_score(final, sample)


def test_label_index_is_reused_unchanged() -> None:
    final, sample = _final(), _sample()
    index = label_index(final)
    assert index.ids.tolist() == [2, 9] and index.areas().tolist() == [10, 16]
    assert label_index(index) is index
    direct, reused = overlaps(final, sample), overlaps(index, sample)
    for name in ("ids_true", "ids_pred", "rows", "cols", "iou"):
        assert np.array_equal(getattr(direct, name), getattr(reused, name))
    assert np.array_equal(final, _final())  # inputs untouched
    with pytest.raises(ValueError, match="differ in shape"):
        overlaps(index, sample[:-1])


def test_nucleus_table_reads_uint64_labels() -> None:
    maps = {k: np.zeros((12, 12), np.float32) for k in ("probability", "entropy", "epistemic")}
    records = nucleus_table(_final(), maps, [_sample()])
    assert [(r.label, r.area) for r in records] == [(2, 10), (9, 16)]
    assert [r.stability for r in records] == pytest.approx([0.6, 0.8])


def test_tie_broken_uncertainty_hand_values() -> None:
    # (1 - 0.001) * d + 0.001 * h
    assert tie_broken_uncertainty(0.0, 0.2, 3) == pytest.approx(0.0002)
    assert tie_broken_uncertainty(0.5, 0.3, 2) == pytest.approx(0.999 * 0.5 + 0.0003)
    assert tie_broken_uncertainty(1.0, 1.0, 1) == pytest.approx(1.0)
    assert tie_broken_uncertainty(0.0, 0.0, 3) == TIE_FLOOR  # nuclei: never exactly 0
    assert tie_broken_uncertainty(0.0, 0.0, 0) == 0.0  # nothing predicted: may be 0


def test_tie_broken_uncertainty_orders_ties_by_entropy_keeps_other_order() -> None:

    tied = [tie_broken_uncertainty(0.0, h, 5) for h in (0.05, 0.3, 0.1)]
    assert np.argsort(tied).tolist() == [0, 2, 1]
    # a disagreement gap larger than 0.001 is never reversed by the entropy
    assert tie_broken_uncertainty(0.002, 0.0, 5) > tie_broken_uncertainty(0.0, 1.0, 5)


def test_threads_give_the_same_agreement_as_one() -> None:
    from tests.synthetic import synthetic_labels

    final = synthetic_labels((96, 96), 12, seed=0)
    samples = [np.roll(final, shift, axis=1) for shift in (0, 1, 3, 6)]
    one = sample_agreement(final, samples, workers=1)
    two = sample_agreement(final, samples, workers=2)
    assert one.labels.tolist() == two.labels.tolist()
    assert np.array_equal(one.stability, two.stability)
    assert np.array_equal(one.sample_scores, two.sample_scores)
    assert one.sample_scores[0] == 1.0 and one.sample_scores[-1] < one.sample_scores[1]


def test_a_sample_of_another_shape_is_named_in_the_error_with_threads() -> None:
    final = _final()
    with pytest.raises(ValueError, match="sample 1 has shape"):
        sample_agreement(final, [final, final[:-1]], workers=2)


def test_default_threads_follow_the_pixel_budget(monkeypatch) -> None:
    import bayescellseg.postprocess.agreement as agreement

    seen = []
    real = agreement.ThreadPoolExecutor

    def pool(max_workers):
        seen.append(max_workers)
        return real(max_workers=max_workers)

    monkeypatch.setattr(agreement, "ThreadPoolExecutor", pool)
    monkeypatch.setattr(agreement.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    final = _final()  # 144 pixels
    monkeypatch.setattr(agreement, "PARALLEL_PIXELS", 3 * 144)
    sample_agreement(final, [final] * 5)
    assert seen == [3]  # 4 CPUs, 5 samples, 3 images' worth of pixels
    monkeypatch.setattr(agreement, "PARALLEL_PIXELS", 144)
    result = sample_agreement(final, [final] * 5)
    assert seen == [3] and result.sample_scores.tolist() == [1.0] * 5  # one at a time, no pool
