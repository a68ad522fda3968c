"""Training losses: foreground BCE + soft Dice, weighted contour BCE, and the ELBO.

Targets are (B, 2, H, W) float tensors in [0, 1]: channel 0 = foreground, 1 = contour
(``data.targets.make_targets``); logits have the same shape.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

DEFAULT_CONTOUR_WEIGHT = 1.0
DEFAULT_CONTOUR_POS_WEIGHT = 5.0
DEFAULT_DICE_WEIGHT = 1.0
DICE_SMOOTH = 1.0


def soft_dice_loss(logits: Tensor, target: Tensor, smooth: float = DICE_SMOOTH) -> Tensor:
    """Mean over images of ``1 - (2 sum(p t) + s) / (sum(p) + sum(t) + s)``, ``p = sigmoid``.

    Computed per image (sums over H, W) and averaged, so an empty crop predicted empty scores 0.

    Args:
        logits: (B, H, W) logits.
        target: (B, H, W) targets in [0, 1].
        smooth: Additive smoothing ``s``.
    """
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    inter = (p * t).sum(1)
    dice = (2.0 * inter + smooth) / (p.sum(1) + t.sum(1) + smooth)
    return (1.0 - dice).mean()


def segmentation_loss(
    logits: Tensor,
    targets: Tensor,
    contour_weight: float = DEFAULT_CONTOUR_WEIGHT,
    contour_pos_weight: float = DEFAULT_CONTOUR_POS_WEIGHT,
    dice_weight: float = DEFAULT_DICE_WEIGHT,
) -> dict[str, Tensor]:
    """Loss of a (foreground, contour) prediction.

    ``total = bce_fg + dice_weight * dice_fg + contour_weight * bce_contour`` where

    * ``bce_fg``: mean per-pixel binary cross-entropy of the foreground channel;
    * ``dice_fg``: :func:`soft_dice_loss` of the foreground channel;
    * ``bce_contour``: mean per-pixel BCE of the contour channel with positive pixels weighted
      by ``contour_pos_weight`` (contours are ~5-10 % of pixels; the weight stops the network
      from predicting "no contour" everywhere, which would merge touching nuclei).

    Args:
        logits: (B, 2, H, W) logits.
        targets: (B, 2, H, W) targets in [0, 1].
        contour_weight: Weight of the contour term in ``total``.
        contour_pos_weight: Weight of positive contour pixels inside the contour BCE.
        dice_weight: Weight of the Dice term in ``total``.

    Returns:
        ``{"total", "bce_fg", "dice_fg", "bce_contour"}``, scalar tensors (``total`` carries the
        gradient; the parts are detached-able views of the same graph).

    Raises:
        ValueError: Shapes differ or do not have 2 channels.
    """
    if logits.shape != targets.shape or logits.ndim != 4 or logits.shape[1] != 2:
        raise ValueError(
            f"logits and targets must both be (B, 2, H, W); got {tuple(logits.shape)} and "
            f"{tuple(targets.shape)}"
        )
    targets = targets.to(logits.dtype)
    fg_logits, fg_target = logits[:, 0], targets[:, 0]
    bce_fg = F.binary_cross_entropy_with_logits(fg_logits, fg_target)
    dice_fg = soft_dice_loss(fg_logits, fg_target)
    pos_weight = torch.tensor(contour_pos_weight, dtype=logits.dtype, device=logits.device)
    bce_contour = F.binary_cross_entropy_with_logits(
        logits[:, 1], targets[:, 1], pos_weight=pos_weight
    )
    total = bce_fg + dice_weight * dice_fg + contour_weight * bce_contour
    return {"total": total, "bce_fg": bce_fg, "dice_fg": dice_fg, "bce_contour": bce_contour}


def kl_scale(n_train: int, pixels_per_sample: int, beta: float = 1.0) -> float:
    """Factor that multiplies the KL in :func:`elbo_loss`: ``beta / (n_train * pixels_per_sample)``."""
    if n_train < 1 or pixels_per_sample < 1:
        raise ValueError(
            f"n_train and pixels_per_sample must be >= 1, got {n_train} and {pixels_per_sample}"
        )
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    return beta / (n_train * pixels_per_sample)


def elbo_loss(
    logits: Tensor,
    targets: Tensor,
    kl: Tensor,
    n_train: int,
    beta: float = 1.0,
    **loss_kwargs: float,
) -> dict[str, Tensor]:
    """Negative ELBO per pixel for the variational network: data loss + scaled KL.

    The ELBO over a training set of ``n_train`` images of ``P`` pixels each is
    ``sum_data log p(y | x, w) - KL(q || p)``. Our data term (:func:`segmentation_loss`) is a
    *mean per pixel*, so dividing the negative ELBO by the number of training pixels
    ``N = n_train * P`` gives

        ``loss = data_loss + beta * KL / (n_train * P)``,

    i.e. the KL is scaled by the number of training samples, where a sample is one pixel of one
    training image (``P`` is taken from ``targets``: ``H * W`` of the crops). ``beta`` in [0, 1]
    anneals the KL in at the start of training (``beta = 1`` is the true ELBO).

    Args:
        logits: (B, 2, H, W) logits (one stochastic forward pass).
        targets: (B, 2, H, W) targets.
        kl: ``kl_divergence(model)`` (scalar).
        n_train: Number of training images (or crops per epoch) the data term is averaged over.
        beta: KL annealing factor.
        **loss_kwargs: Passed to :func:`segmentation_loss`.

    Returns:
        The :func:`segmentation_loss` dict plus ``kl`` (the scaled term that was added) and
        ``total`` including it.
    """
    parts = segmentation_loss(logits, targets, **loss_kwargs)
    pixels = int(targets.shape[-2] * targets.shape[-1])
    kl_term = kl * kl_scale(n_train, pixels, beta)
    return {**parts, "kl": kl_term, "total": parts["total"] + kl_term}
