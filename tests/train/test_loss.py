"""Tests of the segmentation loss and the ELBO against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from bayescellseg.model.build import build_model
from bayescellseg.model.config import ModelConfig
from bayescellseg.model.layers import kl_divergence
from bayescellseg.train.loss import elbo_loss, kl_scale, segmentation_loss, soft_dice_loss

torch.set_num_threads(1)


def _targets() -> torch.Tensor:
    t = torch.zeros(2, 2, 4, 4)
    t[0, 0, 1:3, 1:3] = 1.0  # 4 foreground pixels in image 0
    t[0, 1, 1, 1:3] = 1.0  # 2 contour pixels
    t[1, 0, 0, :] = 1.0  # 4 foreground pixels in image 1
    return t


def test_perfect_prediction_is_near_zero() -> None:
    t = _targets()
    logits = (t * 2 - 1) * 30.0
    parts = segmentation_loss(logits, t)
    assert set(parts) == {"total", "bce_fg", "dice_fg", "bce_contour"}
    for value in parts.values():
        assert value.item() == pytest.approx(0.0, abs=1e-6)


def test_uninformative_prediction_hand_computed() -> None:
    t = _targets()
    logits = torch.zeros_like(t)
    parts = segmentation_loss(logits, t, contour_weight=0.5, contour_pos_weight=6.0)
    log2 = math.log(2.0)
    assert parts["bce_fg"].item() == pytest.approx(log2, rel=1e-6)
    # 2 positive contour pixels (weight 6) and 30 negatives over 32 pixels.
    assert parts["bce_contour"].item() == pytest.approx(log2 * (6 * 2 + 30) / 32, rel=1e-6)
    # Per image: p = 0.5 on 16 pixels, 4 target pixels: 1 - (2*2 + 1) / (8 + 4 + 1).
    dice = 1 - 5 / 13
    assert parts["dice_fg"].item() == pytest.approx(dice, rel=1e-6)
    expected_total = log2 + dice + 0.5 * log2 * 42 / 32
    assert parts["total"].item() == pytest.approx(expected_total, rel=1e-6)


def test_dice_of_empty_image_predicted_empty_is_zero() -> None:
    logits = torch.full((1, 8, 8), -30.0)
    assert soft_dice_loss(logits, torch.zeros(1, 8, 8)).item() == pytest.approx(0.0, abs=1e-6)
    assert soft_dice_loss(-logits, torch.zeros(1, 8, 8)).item() == pytest.approx(64 / 65, rel=1e-4)


def test_contour_pos_weight_penalises_missed_contours_more() -> None:
    t = _targets()
    logits = torch.full_like(t, -3.0)
    low = segmentation_loss(logits, t, contour_pos_weight=1.0)["bce_contour"]
    high = segmentation_loss(logits, t, contour_pos_weight=10.0)["bce_contour"]
    assert high.item() > 5 * low.item()


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        segmentation_loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 4))


def test_elbo_scales_kl_by_training_pixels() -> None:
    t = _targets()
    logits = torch.zeros_like(t)
    kl = torch.tensor(320.0)
    parts = elbo_loss(logits, t, kl, n_train=10, beta=0.5)
    base = segmentation_loss(logits, t)["total"]
    assert parts["kl"].item() == pytest.approx(0.5 * 320.0 / (10 * 16), rel=1e-6)
    assert parts["total"].item() == pytest.approx(base.item() + 1.0, rel=1e-6)
    doubled = elbo_loss(logits, t, kl, n_train=20, beta=0.5)
    assert doubled["kl"].item() == pytest.approx(parts["kl"].item() / 2)
    assert kl_scale(10, 16, 0.5) == pytest.approx(0.5 / 160)
    with pytest.raises(ValueError, match="n_train"):
        kl_scale(0, 16)


def test_elbo_backpropagates_to_variational_parameters() -> None:
    cfg = ModelConfig(base_channels=4, depth=2, method="variational", variational_last_k=1)
    model = build_model(cfg).train()
    x = torch.rand(2, 3, 4, 4)
    parts = elbo_loss(model(x), _targets(), kl_divergence(model), n_train=100)
    parts["total"].backward()
    rho = model.head.conv.weight_rho
    assert rho.grad is not None and rho.grad.abs().sum() > 0
    assert parts["kl"].item() > 0
