"""Tests of MC dropout, the variational convolution, KL and the sampling switch."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bayescellseg.model.layers import (
    MCDropout,
    VariationalConv2d,
    channels_last_grad,
    gaussian_kl,
    kl_divergence,
    max_pool_2x2,
    row_seeds,
    sampling,
    set_sampling,
)

torch.set_num_threads(1)


def _rho(sigma: float) -> float:
    """Inverse softplus."""
    return math.log(math.expm1(sigma))


@pytest.mark.parametrize("kind", ["spatial", "element"])
def test_mc_dropout_modes(kind: str) -> None:
    layer = MCDropout(0.5, kind)
    x = torch.ones(2, 8, 16, 16)
    layer.eval()
    assert torch.equal(layer(x), x)
    set_sampling(layer, True)
    a, b = layer(x), layer(x)
    assert not torch.equal(a, b)
    set_sampling(layer, False)
    assert torch.equal(layer(x), x)
    layer.train()
    assert not torch.equal(layer(x), x)


@pytest.mark.parametrize("kind", ["spatial", "element"])
@pytest.mark.parametrize("seeded", [False, True])
def test_mc_dropout_statistics(kind: str, seeded: bool) -> None:
    torch.manual_seed(0)
    layer = set_sampling(MCDropout(0.25, kind).eval(), True)
    x = torch.ones(8, 256, 4, 4)
    if seeded:
        with row_seeds(range(8)):
            y = layer(x)
    else:
        y = layer(x)
    assert torch.unique(y).tolist() == pytest.approx([0.0, 1 / 0.75])
    assert (y == 0).float().mean().item() == pytest.approx(0.25, abs=0.04)
    if kind == "spatial":
        per_channel = y.flatten(2)
        assert torch.equal(per_channel.amin(2), per_channel.amax(2))


def test_mc_dropout_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="probability"):
        MCDropout(1.0)
    with pytest.raises(ValueError, match="kind"):
        MCDropout(0.5, "gaussian")


def test_row_seeds_reproduce_rows_and_check_batch() -> None:
    layer = set_sampling(MCDropout(0.5, "element").eval(), True)
    x = torch.ones(3, 4, 5, 5)
    with row_seeds([7, 8, 9]):
        batched = layer(x)
    with row_seeds([8]):
        single = layer(x[:1])
    assert torch.equal(batched[1:2], single)
    with row_seeds([1, 2]), pytest.raises(ValueError, match="2 seeds but the batch has 3 rows"):
        layer(x)


def test_kl_closed_form_hand_computed() -> None:
    layer = VariationalConv2d(1, 1, kernel_size=1, padding=0, bias=False, prior_sigma=2.0)
    with torch.no_grad():
        layer.weight_mu.fill_(0.5)
        layer.weight_rho.fill_(_rho(1.0))
    expected = math.log(2.0 / 1.0) + (1.0 + 0.25) / (2 * 4.0) - 0.5
    assert layer.kl().item() == pytest.approx(expected, rel=1e-5)
    assert kl_divergence(layer).item() == pytest.approx(expected, rel=1e-5)


def test_kl_zero_when_posterior_equals_prior() -> None:
    mu = torch.zeros(10)
    assert gaussian_kl(mu, torch.full((10,), 0.7), 0.7).item() == pytest.approx(0.0, abs=1e-6)


def test_kl_divergence_sums_all_layers_and_counts_bias() -> None:
    torch.manual_seed(0)
    a = VariationalConv2d(2, 3, prior_sigma=0.5)
    b = VariationalConv2d(3, 1, kernel_size=1, padding=0, bias=True)
    model = nn.Sequential(a, nn.ReLU(), nn.Conv2d(1, 1, 1), b)
    total = kl_divergence(model)
    assert total.item() == pytest.approx(a.kl().item() + b.kl().item(), rel=1e-6)
    weight_only = gaussian_kl(b.weight_mu, F.softplus(b.weight_rho), 1.0)
    bias_only = gaussian_kl(b.bias_mu, F.softplus(b.bias_rho), 1.0)
    assert b.kl().item() == pytest.approx(weight_only.item() + bias_only.item(), rel=1e-6)
    total.backward()
    assert a.weight_rho.grad is not None and a.weight_rho.grad.abs().sum() > 0


def test_kl_divergence_is_zero_without_variational_layers() -> None:
    kl = kl_divergence(nn.Conv2d(1, 1, 3))
    assert kl.shape == () and kl.item() == 0.0


def test_variational_eval_is_mean_network() -> None:
    torch.manual_seed(0)
    layer = VariationalConv2d(2, 3, rho_init=0.0).eval()
    x = torch.randn(1, 2, 6, 6)
    expected = F.conv2d(x, layer.weight_mu, layer.bias_mu, padding=1)
    assert torch.equal(layer(x), expected)
    with sampling(layer):
        assert not torch.allclose(layer(x), expected)
    assert layer.sampling is False
    assert torch.equal(layer(x), expected)


def test_local_reparameterisation_matches_weight_sampling() -> None:
    """Output moments equal those of sampling the weights: mean conv(x, mu), var conv(x^2, s^2)."""
    torch.manual_seed(0)
    layer = VariationalConv2d(2, 2, kernel_size=3, padding=1, bias=True, rho_init=_rho(0.3))
    with torch.no_grad():
        layer.bias_rho.fill_(_rho(0.2))
    layer.train()
    x = torch.randn(1, 2, 5, 5)
    n = 4000
    with torch.no_grad():
        out = layer(x.expand(n, -1, -1, -1))
        w = layer.weight_mu + 0.3 * torch.randn(n, *layer.weight_mu.shape)
        bias = layer.bias_mu + 0.2 * torch.randn(n, 2)
        ref = torch.stack([F.conv2d(x, w[i], bias[i], padding=1)[0] for i in range(n)])
    exp_mean = F.conv2d(x, layer.weight_mu, layer.bias_mu, padding=1)[0]
    exp_var = F.conv2d(x.square(), torch.full_like(layer.weight_mu, 0.09), None, padding=1)[0]
    exp_var = exp_var + 0.04
    for samples in (out, ref):
        assert torch.allclose(samples.mean(0), exp_mean, atol=4 * (exp_var.max() / n) ** 0.5)
        assert torch.allclose(samples.var(0), exp_var, rtol=0.15)


def test_variational_gradients_reach_mu_and_rho() -> None:
    torch.manual_seed(0)
    layer = VariationalConv2d(1, 1).train()
    layer(torch.randn(2, 1, 4, 4)).square().sum().backward()
    assert layer.weight_mu.grad.abs().sum() > 0
    assert layer.weight_rho.grad.abs().sum() > 0


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 4, 7, 9), (1, 2, 3, 5)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_max_pool_2x2_equals_the_kernel_without_gradients(shape, channels_last, dtype) -> None:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x[0, 0, 0, 0] = float("nan")  # propagated, as by the kernel
    with torch.inference_mode():
        got = max_pool_2x2(x)
    expected = F.max_pool2d(x, 2)
    assert got.shape == expected.shape == (*shape[:2], shape[2] // 2, shape[3] // 2)
    assert torch.equal(got.isnan(), expected.isnan())
    assert torch.equal(got.nan_to_num(), expected.nan_to_num())
    assert max_pool_2x2(x) is not x and x.shape == shape  # input untouched


def test_max_pool_2x2_hand_computed_and_kernel_gradients() -> None:
    x = torch.tensor([[[[1.0, 5.0, 2.0], [3.0, 4.0, 9.0], [7.0, 8.0, 6.0]]]], requires_grad=True)
    y = max_pool_2x2(x)
    assert y.tolist() == [[[[5.0]]]]  # the odd last row and column are dropped
    y.sum().backward()
    assert x.grad.tolist() == [[[[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]]


def _upsampled_grad(hook: bool, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 5, 6, generator=g)
    skip = torch.randn(2, 3, 10, 12, generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        skip = skip.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    seen = []
    up = F.interpolate(x, size=(10, 12), mode="bilinear", align_corners=False)
    if hook:
        up = channels_last_grad(up)
    up.register_hook(lambda grad: seen.append(grad))  # runs after the layout hook
    cat = torch.cat([up, skip], dim=1)
    (cat * torch.arange(cat.numel(), dtype=cat.dtype).reshape(cat.shape)).sum().backward()
    return x.grad, seen[0]


@pytest.mark.parametrize("channels_last", [False, True])
def test_channels_last_grad_keeps_values_and_changes_only_the_layout(channels_last) -> None:
    plain, _ = _upsampled_grad(hook=False, channels_last=channels_last)
    hooked, grad = _upsampled_grad(hook=True, channels_last=channels_last)
    torch.testing.assert_close(hooked, plain, rtol=1e-6, atol=1e-4)
    _, unhooked = _upsampled_grad(hook=False, channels_last=channels_last)
    assert not unhooked.is_contiguous(memory_format=torch.channels_last)  # a channel slice
    assert grad.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_channels_last_grad_is_identity_forward_and_skips_tensors_without_grad() -> None:
    x = torch.randn(1, 2, 3, 3).contiguous(memory_format=torch.channels_last)
    assert channels_last_grad(x) is x and x._backward_hooks is None
    y = x.clone().requires_grad_()
    assert channels_last_grad(y) is y
    (y * 2).sum().backward()
    assert torch.equal(y.grad, torch.full_like(y, 2.0))
