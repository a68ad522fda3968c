"""Tests of build_model and the Ensemble."""

from __future__ import annotations

import torch

from bayescellseg.model.build import Ensemble, build_model
from bayescellseg.model.config import ModelConfig
from bayescellseg.model.layers import MCDropout, set_sampling
from bayescellseg.model.unet import UNet

torch.set_num_threads(1)


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_build_unet_is_seeded_and_leaves_global_rng_alone() -> None:
    cfg = ModelConfig(base_channels=4, depth=2)
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = build_model(cfg, seed=5)
    after = torch.rand(3)
    assert torch.equal(before, after)
    b = build_model(cfg, seed=5)
    c = build_model(cfg, seed=6)
    assert isinstance(a, UNet)
    assert all(torch.equal(p, q) for p, q in zip(_weights(a), _weights(b), strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(_weights(a), _weights(c), strict=True))


def test_ensemble_members_use_seed_plus_index() -> None:
    cfg = ModelConfig(base_channels=4, depth=2, method="ensemble", n_members=3, dropout_rate=0.0)
    ens = build_model(cfg, seed=10)
    assert isinstance(ens, Ensemble) and len(ens.members) == 3
    single = build_model(cfg.replace(method="deterministic", n_members=1), seed=11)
    member_weights = _weights(ens.members[1])
    assert all(torch.equal(p, q) for p, q in zip(member_weights, _weights(single), strict=True))
    x = torch.rand(2, 3, 13, 17)
    out = ens.eval()(x)
    assert out.shape == (3, 2, 2, 13, 17)
    assert torch.equal(out[1], single.eval()(x))
    assert not torch.allclose(out[0], out[2])
    assert sum(isinstance(m, MCDropout) for m in ens.modules()) == 0


def test_ensemble_with_dropout_samples() -> None:
    cfg = ModelConfig(base_channels=4, depth=2, method="ensemble", n_members=2, dropout_rate=0.3)
    ens = build_model(cfg).eval()
    assert sum(isinstance(m, MCDropout) for m in ens.modules()) == 2 * 2
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(ens(x), ens(x))
    set_sampling(ens, True)
    assert not torch.equal(ens(x), ens(x))
