"""The Monte-Carlo temperature / bias fit (evaluation.temperature)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from bayescellseg.evaluation.temperature import fit_mc_calibration, fit_mc_temperature, mc_nll


def _mc_case(n: int = 20_000, n_samples: int = 6, seed: int = 0):
    """Logits of T samples whose MC-averaged probability is calibrated, and outcomes from it."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, n)[None] + rng.normal(0, 1.5, (n_samples, n))
    y = rng.random(n) < expit(z).mean(0)
    return z, y


def test_mc_nll_hand_computed():
    z = np.array([[0.0, np.log(3.0)], [np.log(3.0), 0.0]])  # sigmoid: 0.5 and 0.75
    y = np.array([1, 0])
    # pixel 0: mean p = 0.625 -> -log 0.625; pixel 1: mean p = 0.625 -> -log 0.375
    expected = -(np.log(0.625) + np.log(0.375)) / 2
    assert mc_nll(z, y) == pytest.approx(expected, rel=1e-6)
    # temperature 2 halves the logits; weights make a weighted mean
    p = expit(z / 2).mean(0)
    weighted = -(3 * np.log(p[0]) + 1 * np.log(1 - p[1])) / 4
    assert mc_nll(z, y, 2.0, weights=np.array([3.0, 1.0])) == pytest.approx(weighted, rel=1e-6)
    # a bias is added after the temperature: sigmoid(z / 2 - 1)
    p = expit(z / 2 - 1.0).mean(0)
    assert mc_nll(z, y, 2.0, bias=-1.0) == pytest.approx(
        -(np.log(p[0]) + np.log(1 - p[1])) / 2, rel=1e-6
    )
    with pytest.raises(ValueError, match="bias must be finite"):
        mc_nll(z, y, bias=np.nan)


def test_fit_recovers_known_temperature_and_bias():
    """Outcomes drawn from sigmoid(z / 2 - 0.8): the joint fit finds T = 2 and b = -0.8."""
    rng = np.random.default_rng(4)
    z = rng.normal(0, 4, 40_000)
    y = rng.random(z.size) < expit(z / 2.0 - 0.8)
    temperature, bias = fit_mc_calibration(z, y)
    assert temperature == pytest.approx(2.0, rel=0.06) and bias == pytest.approx(-0.8, abs=0.06)
    # the joint optimum beats the temperature-only fit, which is what bias=False returns
    t_only = fit_mc_temperature(z, y)
    assert fit_mc_calibration(z, y, bias=False) == (t_only, 0.0)
    assert mc_nll(z, y, temperature, bias=bias) < mc_nll(z, y, t_only) - 1e-3
    # scaled logits: T scales, the bias does not
    t3, b3 = fit_mc_calibration(3.0 * z, y)
    assert t3 == pytest.approx(3.0 * temperature, rel=0.01) and b3 == pytest.approx(bias, abs=0.01)
    # with calibrated logits there is nothing to correct
    y0 = rng.random(z.size) < expit(z)
    t0, b0 = fit_mc_calibration(z, y0)
    assert t0 == pytest.approx(1.0, rel=0.06) and b0 == pytest.approx(0.0, abs=0.06)


def test_fit_recovers_known_temperature_of_mc_average():
    z, y = _mc_case()
    assert fit_mc_temperature(z, y) == pytest.approx(1.0, abs=0.08)
    scaled = fit_mc_temperature(3.0 * z, y)
    assert scaled == pytest.approx(3.0, rel=0.05)
    # the NLL at the fitted T is no worse than at the true T or its neighbours
    for t in (scaled * 0.9, 3.0, scaled * 1.1):
        assert mc_nll(3.0 * z, y, scaled) <= mc_nll(3.0 * z, y, t) + 1e-12
    # fitting the mean logit instead (the wrong objective) lands elsewhere
    assert abs(fit_mc_temperature(3.0 * z.mean(0), y) - 3.0) > 0.3


def test_one_sample_equals_ordinary_temperature_scaling():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 3, 5000)
    y = rng.random(5000) < expit(z / 2.5)
    # ordinary temperature scaling, by brute force over a fine grid of T
    grid = np.linspace(2.0, 3.0, 2001)
    nll = [-np.mean(np.where(y, np.log(expit(z / t)), np.log(expit(-z / t)))) for t in grid]
    assert fit_mc_temperature(z, y) == pytest.approx(grid[int(np.argmin(nll))], abs=1e-3)


def test_weights_equal_repeated_pixels():
    z, y = _mc_case(n=3000, seed=2)
    w = np.random.default_rng(3).integers(1, 4, y.size)
    repeated = fit_mc_temperature(np.repeat(z, w, axis=1), np.repeat(y, w))
    assert fit_mc_temperature(z, y, weights=w) == pytest.approx(repeated, rel=1e-3)


@pytest.mark.parametrize(
    ("logits", "targets", "message"),
    [
        (np.zeros((2, 3)), np.zeros(4), "expected"),
        (np.full((1, 2), np.nan), np.zeros(2), "finite"),
        (np.zeros((1, 2)), np.array([0, 2]), "binary"),
        (np.zeros((1, 0)), np.zeros(0), "no pixels"),
    ],
)
def test_fit_rejects_bad_input(logits, targets, message):
    with pytest.raises(ValueError, match=message):
        fit_mc_temperature(logits, targets)
