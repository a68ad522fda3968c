"""A tiny Bayesian U-Net must actually learn synthetic nuclei with the training loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.segmentation import find_boundaries

from bayescellseg.model.build import build_model
from bayescellseg.model.config import ModelConfig
from bayescellseg.model.layers import kl_divergence, set_sampling
from bayescellseg.train.loss import elbo_loss, segmentation_loss
from tests.synthetic import synthetic_image, synthetic_labels

torch.set_num_threads(1)


def _batch(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for i in range(n):
        labels = synthetic_labels((32, 32), n=3, seed=seed + i, radius=(3.0, 6.0))
        image = synthetic_image(labels, seed=seed + i)
        fg = labels > 0
        contour = find_boundaries(labels, mode="inner")
        xs.append(image.transpose(2, 0, 1))
        ys.append(np.stack([fg, contour]).astype(np.float32))
    return torch.from_numpy(np.stack(xs)).float(), torch.from_numpy(np.stack(ys))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["mc_dropout", "variational"])
def test_tiny_model_learns_foreground(method: str) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(base_channels=8, depth=2, method=method, dropout_rate=0.2)
    model = build_model(cfg, seed=0)
    x, y = _batch(6, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    first = None
    for _ in range(30):
        logits = model(x)
        if method == "variational":
            parts = elbo_loss(logits, y, kl_divergence(model), n_train=6)
            data_loss = (parts["total"] - parts["kl"]).item()
        else:
            parts = segmentation_loss(logits, y)
            data_loss = parts["total"].item()
        first = data_loss if first is None else first
        opt.zero_grad()
        parts["total"].backward()
        opt.step()
    assert data_loss < 0.5 * first
    model.eval()
    with torch.no_grad():
        prob = torch.sigmoid(model(x)[:, 0])
        set_sampling(model, True)
        samples = torch.stack([torch.sigmoid(model(x)[:, 0]) for _ in range(4)])
    accuracy = ((prob > 0.5) == (y[:, 0] > 0.5)).float().mean().item()
    assert accuracy > 0.9
    assert samples.std(0).mean().item() > 0
