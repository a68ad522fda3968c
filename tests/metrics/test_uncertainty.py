"""Tests of the uncertainty-quality metrics (pixel, nucleus and image level)."""

from __future__ import annotations

import numpy as np
import pytest

from bayescellseg.metrics.uncertainty import (
    aupr,
    auroc,
    best_ueo,
    error_detection,
    normalize_uncertainty,
    nucleus_error_auroc,
    qubrats_scores,
    retention_curve,
    spearman,
    ueo_curve,
)


def test_auroc_and_aupr_small_ranked_case() -> None:
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    labels = np.array([0, 0, 1, 1])
    # positive/negative pairs: 0.35 > 0.1 (win), 0.35 < 0.4 (loss), 0.8 > both (2 wins): 3/4
    assert auroc(scores, labels) == pytest.approx(0.75)
    # descending: 0.8 (pos) P=1 R=1/2; 0.4 (neg); 0.35 (pos) P=2/3 R=1 -> AP = .5*1 + .5*2/3
    assert aupr(scores, labels) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_ties() -> None:
    assert auroc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5
    # positive 1.0 vs negatives 1.0 (tie, 1/2) and 0.0 (win): (0.5 + 1) / 2
    assert auroc(np.array([1.0, 1.0, 0.0]), np.array([1, 0, 0])) == pytest.approx(0.75)
    # all scores tied: AP = prevalence
    assert aupr(np.ones(4), np.array([1, 0, 0, 0])) == pytest.approx(0.25)
    # tied group {1.0: pos, neg} then 0.0 neg: P = 1/2 at R = 1
    assert aupr(np.array([1.0, 1.0, 0.0]), np.array([1, 0, 0])) == pytest.approx(0.5)


def test_constant_labels_give_nan_and_bad_input_raises() -> None:
    assert np.isnan(auroc(np.arange(3.0), np.zeros(3)))
    assert np.isnan(auroc(np.arange(3.0), np.ones(3, bool)))
    assert np.isnan(aupr(np.arange(3.0), np.zeros(3)))
    with pytest.raises(ValueError, match="binary"):
        auroc(np.arange(3.0), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="finite"):
        auroc(np.array([np.nan, 1.0]), np.array([0, 1]))


def test_error_detection_perfect_and_inverted() -> None:
    true = np.zeros((6, 6), bool)
    true[1:4, 1:4] = True
    pred = true.copy()
    pred[1, 1] = False  # missed pixel
    pred[5, 5] = True  # false pixel
    err = pred != true
    u = np.where(err, 0.9, 0.1)
    assert error_detection(u, pred, true) == (1.0, 1.0)
    res = error_detection(1 - u, pred, true)
    assert res.auroc == 0.0 and res.aupr == pytest.approx(2 / 36)
    assert np.isnan(error_detection(u, true, true).auroc)  # no errors at all
    mask = np.ones((6, 6), bool)
    mask[5, 5] = False
    assert error_detection(u, pred, true, mask=mask).auroc == 1.0
    rng = np.random.default_rng(0)
    big_true = rng.uniform(size=(100, 100)) < 0.3
    big_pred = big_true ^ (rng.uniform(size=(100, 100)) < 0.1)
    big_u = (big_pred != big_true) + rng.uniform(0, 0.5, (100, 100))
    sub = error_detection(big_u, big_pred, big_true, max_samples=2000, seed=1)
    assert sub == pytest.approx((1.0, 1.0))
    noisy = rng.uniform(size=(100, 100))
    a = error_detection(noisy, big_pred, big_true, max_samples=2000, seed=1)
    assert a == error_detection(noisy, big_pred, big_true, max_samples=2000, seed=1)
    assert abs(a.auroc - 0.5) < 0.1
    with pytest.raises(ValueError, match="probability"):
        error_detection(u, u, true)


def test_normalize_uncertainty() -> None:
    u = np.array([1.0, 2.0, 4.0, 5.0])
    assert normalize_uncertainty(u).tolist() == [0.0, 0.25, 0.75, 1.0]
    assert normalize_uncertainty(u, (0, 10)).tolist() == [0.1, 0.2, 0.4, 0.5]
    assert normalize_uncertainty(np.full(3, 7.0)).tolist() == [0.0, 0.0, 0.0]


def test_ueo_by_hand() -> None:
    u = np.array([1.0, 2.0, 4.0, 5.0])  # normalised: 0, 0.25, 0.75, 1
    err = np.array([False, False, True, True])
    curve = ueo_curve(u, err, thresholds=[0.0, 0.1, 0.5, 0.9, 1.0])
    # t=0: flagged {.25,.75,1} (3), 2 errors flagged -> 2*2/(3+2) = 0.8
    # t=0.1: same 0.8; t=0.5: flagged = errors -> 1; t=0.9: flagged {1} -> 2/(1+2)
    # t=1: nothing flagged -> 0
    assert curve.ueo.tolist() == pytest.approx([0.8, 0.8, 1.0, 2 / 3, 0.0])
    ueo, t = best_ueo(u, err, thresholds=[0.0, 0.1, 0.5, 0.9, 1.0])
    assert (ueo, t) == (1.0, 0.5)
    # with the default grid the best threshold is the lowest that excludes 0.25
    ueo, t = best_ueo(u, err)
    assert ueo == 1.0 and 0.25 <= t < 0.75
    # no errors and nothing flagged counts as perfect overlap
    assert ueo_curve(u, np.zeros(4, bool), thresholds=[1.0]).ueo.tolist() == [1.0]


def test_qubrats_by_hand() -> None:
    t = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
    p = np.array([1, 1, 1, 0, 1, 0, 0, 0], bool)  # TP 0,1,2; FN 3; FP 4; TN 5,6,7
    u = np.array([0.0, 0.1, 0.3, 0.8, 0.9, 0.0, 0.2, 0.6])
    q = qubrats_scores(u, p, t, value_range=(0.0, 1.0))
    # tau=1: all kept, Dice = 2*3/(4+4) = 0.75, FTP = FTN = 0
    # tau=.75: FN (0.8) and FP (0.9) filtered -> Dice 6/6 = 1; FTP 0; FTN 0
    # tau=.5: TN 0.6 filtered too -> Dice 1, FTP 0, FTN 1/3
    # tau=.25: TP 0.3 filtered -> Dice 4/4 = 1, FTP 1/3, FTN 1/3
    # tau=0: only u == 0 kept (TP 0.0 and TN 0.0) -> Dice 1, FTP 2/3, FTN 2/3
    assert q.thresholds.tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert q.dice.tolist() == pytest.approx([0.75, 1, 1, 1, 1])
    assert q.ftp_ratio.tolist() == pytest.approx([0, 0, 0, 1 / 3, 2 / 3])
    assert q.ftn_ratio.tolist() == pytest.approx([0, 0, 1 / 3, 1 / 3, 2 / 3])
    # trapezoid with step 0.25: Dice 0.25*(1+1+1+(1+0.75)/2) = 0.96875
    # FTP 0.25*((2/3+1/3)/2 + (1/3)/2) = 1/6; FTN 0.25*(1/2 + 1/3 + 1/6) = 0.25
    assert q.auc_dice == pytest.approx(0.96875)
    assert q.auc_ftp == pytest.approx(1 / 6)
    assert q.auc_ftn == pytest.approx(0.25)
    assert q.score == pytest.approx((0.96875 + (1 - 1 / 6) + (1 - 0.25)) / 3)


def test_qubrats_perfect_uncertainty_beats_random() -> None:
    rng = np.random.default_rng(0)
    t = rng.uniform(size=(32, 32)) < 0.3
    p = t.copy()
    flip = rng.uniform(size=t.shape) < 0.1
    p[flip] = ~p[flip]
    good = np.where(p != t, 1.0, 0.0)
    bad = rng.uniform(size=t.shape)
    assert qubrats_scores(good, p, t).score > qubrats_scores(bad, p, t).score
    assert qubrats_scores(good, p, t).auc_dice > 0.95


def test_nucleus_error_auroc() -> None:
    u = np.array([0.9, 0.1, 0.5])
    assert nucleus_error_auroc(u, np.array([False, True, True])) == 1.0
    assert nucleus_error_auroc(u, np.array([True, False, True])) == 0.0
    assert np.isnan(nucleus_error_auroc(u, np.ones(3, bool)))


def test_spearman() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    y = np.array([10.0, 20.0, 25.0, 100.0, 1.0])
    assert spearman(x, y) == pytest.approx(1.0)  # the nan pair is dropped
    assert spearman(x, -y) == pytest.approx(-1.0)
    assert np.isnan(spearman(np.ones(4), np.arange(4.0)))
    assert np.isnan(spearman(np.arange(2.0), np.arange(2.0)))


def test_retention_curve_on_four_images_by_hand() -> None:
    u = np.array([0.9, 0.1, 0.3, 0.5])
    s = np.array([0.2, 0.9, 0.6, 0.8])
    rc = retention_curve(u, s)
    # f = 0, 1/4, 1/2, 3/4. Model refers by uncertainty: img0 (0.2), img3 (0.8), img2 (0.6).
    # f=0: (0.2+0.9+0.6+0.8)/4 = 0.625; f=1/4: (0.9+0.6+0.8)/3; f=1/2: (0.9+0.6)/2; f=3/4: 0.9
    assert rc.fractions.tolist() == [0.0, 0.25, 0.5, 0.75]
    assert rc.model.tolist() == pytest.approx([0.625, 2.3 / 3, 0.75, 0.9])
    # oracle refers the worst first: 0.2, 0.6, 0.8
    assert rc.oracle.tolist() == pytest.approx([0.625, 2.3 / 3, 0.85, 0.9])
    assert rc.random.tolist() == pytest.approx([0.625] * 4)
    # mean height: trapezoid with step 0.25 over [0, 0.75], divided by 0.75
    area = 0.25 * ((0.625 + 2.3 / 3) / 2 + (2.3 / 3 + 0.75) / 2 + (0.75 + 0.9) / 2)
    assert rc.auc_model == pytest.approx(area / 0.75)
    assert rc.auc_random == pytest.approx(0.625)
    assert rc.auc_random < rc.auc_model < rc.auc_oracle
    assert rc.n_images == 4 and rc.to_dict()["referred_score"] is None


def test_retention_curve_with_corrected_referrals_and_ties() -> None:
    u = np.array([0.9, 0.1, 0.3, 0.5])
    s = np.array([0.2, 0.9, 0.6, 0.8])
    rc = retention_curve(u, s, referred_score=1.0)
    # referred images count as 1.0: f=1/4: (2.3 + 1)/4; f=1/2: (1.5 + 2)/4; f=3/4: (0.9 + 3)/4
    assert rc.model.tolist() == pytest.approx([0.625, 3.3 / 4, 3.5 / 4, 3.9 / 4])
    assert rc.random.tolist() == pytest.approx(
        [0.625, (3 * 0.625 + 1) / 4, (2 * 0.625 + 2) / 4, (0.625 + 3) / 4]
    )
    # constant uncertainty carries no information: model == random
    flat = retention_curve(np.ones(4), s, fractions=[0.0, 0.5])
    assert flat.model.tolist() == pytest.approx(flat.random.tolist())
    with pytest.raises(ValueError, match="fractions"):
        retention_curve(u, s, fractions=[0.0, 1.0])
    with pytest.raises(ValueError, match="differ"):
        retention_curve(u, s[:3])


def test_auroc_equals_the_rank_formula_on_random_ties() -> None:
    from scipy import stats

    rng = np.random.default_rng(4)
    scores = rng.integers(0, 5, 300).astype(float)  # many ties
    labels = rng.uniform(size=300) < 0.3
    ranks = stats.rankdata(scores)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    expected = (ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    assert auroc(scores, labels) == pytest.approx(expected, rel=1e-12)
    # AP by its definition: thresholds at each distinct score, descending
    ap, prev_recall = 0.0, 0.0
    for thr in np.unique(scores)[::-1]:
        called = scores >= thr
        recall = (called & labels).sum() / n_pos
        ap += (recall - prev_recall) * (called & labels).sum() / called.sum()
        prev_recall = recall
    assert aupr(scores, labels) == pytest.approx(ap, rel=1e-12)
