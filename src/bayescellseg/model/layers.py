"""Stochastic layers: MC dropout and variational (Bayes-by-backprop) convolutions.

Both layers are stochastic in training mode. In eval mode they are deterministic unless
*sampling* is switched on with :func:`set_sampling`, which is how T posterior samples are drawn at
inference: ``model.eval(); set_sampling(model, True)``.

Random numbers come from torch's global generator, except inside :func:`row_seeds`: there every
row of the batch has its own ``torch.Generator``, and each stochastic layer draws the noise of row
``r`` from generator ``r`` in layer order. A batch of T rows with seeds ``s_0..s_{T-1}`` therefore
gets exactly the same dropout masks and variational noise as T separate one-row passes with seeds
``[s_0]``, ..., ``[s_{T-1}]`` - which makes batched sampling reproducible and testable.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_VAR_EPS = 1e-10


class _RowGenerators:
    """One ``torch.Generator`` per batch row, created lazily on the device that needs them."""

    def __init__(self, seeds: Sequence[int]) -> None:
        self.seeds = [int(s) for s in seeds]
        self._by_device: dict[str, list[torch.Generator]] = {}

    def get(self, device: torch.device, n_rows: int) -> list[torch.Generator]:
        if n_rows != len(self.seeds):
            raise ValueError(
                f"row_seeds was given {len(self.seeds)} seeds but the batch has {n_rows} rows"
            )
        key = str(device)
        if key not in self._by_device:
            self._by_device[key] = [
                torch.Generator(device=device).manual_seed(s) for s in self.seeds
            ]
        return self._by_device[key]


_ROWS: ContextVar[_RowGenerators | None] = ContextVar("bayescellseg_row_seeds", default=None)


@contextlib.contextmanager
def row_seeds(seeds: Sequence[int]) -> Iterator[None]:
    """Draw the noise of batch row ``r`` from a generator seeded with ``seeds[r]``.

    Inside the block every stochastic layer that is active checks that the batch has
    ``len(seeds)`` rows and draws row by row (slightly slower than one global draw).

    Args:
        seeds: One integer seed per batch row.
    """
    token = _ROWS.set(_RowGenerators(seeds))
    try:
        yield
    finally:
        _ROWS.reset(token)


def _draw_rows(fn: Callable[..., Tensor], row_shape: Sequence[int], like: Tensor) -> Tensor | None:
    """Per-row draws from the active :func:`row_seeds` generators, or None outside the block."""
    rows = _ROWS.get()
    if rows is None:
        return None
    gens = rows.get(like.device, like.shape[0])
    draws = [fn(tuple(row_shape), generator=g, device=like.device) for g in gens]
    return torch.stack(draws).to(like.dtype)


def max_pool_2x2(x: Tensor) -> Tensor:
    """``F.max_pool2d(x, 2)``, exactly; without gradients, as the maximum of four strided views.

    The element-wise form reads channels-last tensors in their own order and runs 2-3x faster
    than the pooling kernel here (a 2x16x512x512 bf16 batch: 3 ms against 9 ms), but its
    backward is 10x slower than the kernel's, so a tensor that needs gradients is pooled by
    the kernel. An odd last row or column is dropped, as by the kernel.
    """
    if x.requires_grad:
        return F.max_pool2d(x, 2)
    x = x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]
    rows = torch.maximum(x[..., ::2, :], x[..., 1::2, :])
    return torch.maximum(rows[..., ::2], rows[..., 1::2])


def _channels_last(grad: Tensor) -> Tensor:
    return grad.contiguous(memory_format=torch.channels_last)


def channels_last_grad(x: Tensor) -> Tensor:
    """``x`` itself; when it is channels-last and needs a gradient, that gradient is made
    channels-last before it flows back into the operation that produced ``x``.

    The gradient of a tensor that is then concatenated arrives as a channel slice of the
    concatenation's gradient, which the bilinear up-sampling backward reads 3-5x slower than a
    dense channels-last tensor (8x32x128x128 bf16 up-sampled 2x: 212 ms against 68 ms with
    the copy).
    """
    if x.requires_grad and x.is_contiguous(memory_format=torch.channels_last):
        x.register_hook(_channels_last)
    return x


class MCDropout(nn.Module):
    """Dropout that stays active in eval mode while sampling is on (Monte Carlo dropout).

    Args:
        p: Drop probability in [0, 1).
        kind: ``spatial`` zeroes whole channels (like ``nn.Dropout2d``), ``element`` single
            activations (like ``nn.Dropout``). Kept values are scaled by ``1 / (1 - p)``.
    """

    def __init__(self, p: float, kind: str = "spatial") -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        if kind not in ("spatial", "element"):
            raise ValueError(f"dropout kind must be 'spatial' or 'element', got {kind!r}")
        self.p = float(p)
        self.kind = kind
        self.sampling = False

    def extra_repr(self) -> str:
        return f"p={self.p}, kind={self.kind}"

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not (self.training or self.sampling):
            return x
        row_shape = (x.shape[1], 1, 1) if self.kind == "spatial" else tuple(x.shape[1:])
        u = _draw_rows(torch.rand, row_shape, x)
        if u is None:
            if self.kind == "spatial":
                return F.dropout2d(x, self.p, training=True)
            return F.dropout(x, self.p, training=True)
        keep = (u >= self.p).to(x.dtype) / (1.0 - self.p)
        return x * keep


def gaussian_kl(mu: Tensor, sigma: Tensor, prior_sigma: float) -> Tensor:
    """Closed-form KL( N(mu, sigma^2) || N(0, prior_sigma^2) ), summed over all elements.

    Per element: ``log(prior_sigma / sigma) + (sigma^2 + mu^2) / (2 prior_sigma^2) - 1/2``.
    """
    kl = (
        math.log(prior_sigma)
        - torch.log(sigma)
        + (sigma.square() + mu.square()) / (2.0 * prior_sigma**2)
        - 0.5
    )
    return kl.sum()


class VariationalConv2d(nn.Module):
    """Bayes-by-backprop 2-D convolution with the local reparameterisation trick.

    Posterior: independent Gaussians ``w ~ N(mu, sigma^2)``, ``sigma = softplus(rho)`` (same for the
    bias). Prior: ``N(0, prior_sigma^2)``. Instead of sampling weights, the pre-activations are
    sampled (Kingma et al. 2015): ``mean = conv(x, mu_w) + mu_b``,
    ``var = conv(x^2, sigma_w^2) + sigma_b^2``, ``out = mean + sqrt(var) * eps`` with
    ``eps ~ N(0, 1)`` per output element. This is exact for a Gaussian posterior, cheaper than
    one weight sample per image and has lower gradient variance. In eval mode with sampling off
    the output is ``mean`` (the posterior-mean network).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size.
        padding: Zero padding on each side.
        bias: Whether to learn a (variational) bias.
        prior_sigma: Prior standard deviation.
        rho_init: Initial rho of every posterior standard deviation.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        padding: int = 1,
        bias: bool = True,
        prior_sigma: float = 1.0,
        rho_init: float = -5.0,
    ) -> None:
        super().__init__()
        if prior_sigma <= 0:
            raise ValueError(f"prior_sigma must be > 0, got {prior_sigma}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.padding = padding
        self.prior_sigma = float(prior_sigma)
        self.rho_init = float(rho_init)
        self.sampling = False
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.weight_mu = nn.Parameter(torch.empty(shape))
        self.weight_rho = nn.Parameter(torch.empty(shape))
        if bias:
            self.bias_mu = nn.Parameter(torch.empty(out_channels))
            self.bias_rho = nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias_mu", None)
            self.register_parameter("bias_rho", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal means (ReLU gain), zero bias means, all rho = ``rho_init``."""
        nn.init.kaiming_normal_(self.weight_mu, mode="fan_out", nonlinearity="relu")
        nn.init.constant_(self.weight_rho, self.rho_init)
        if self.bias_mu is not None:
            nn.init.zeros_(self.bias_mu)
            nn.init.constant_(self.bias_rho, self.rho_init)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"padding={self.padding}, bias={self.bias_mu is not None}, "
            f"prior_sigma={self.prior_sigma}"
        )

    @property
    def weight_sigma(self) -> Tensor:
        """Posterior standard deviation of the weights."""
        return F.softplus(self.weight_rho)

    def forward(self, x: Tensor) -> Tensor:
        mean = F.conv2d(x, self.weight_mu, self.bias_mu, padding=self.padding)
        if not (self.training or self.sampling):
            return mean
        bias_var = None if self.bias_rho is None else F.softplus(self.bias_rho).square()
        var = F.conv2d(x.square(), self.weight_sigma.square(), bias_var, padding=self.padding)
        eps = _draw_rows(torch.randn, mean.shape[1:], mean)
        if eps is None:
            eps = torch.randn_like(mean)
        return mean + torch.sqrt(var + _VAR_EPS) * eps

    def kl(self) -> Tensor:
        """KL(posterior || prior) of all weights and biases of this layer."""
        total = gaussian_kl(self.weight_mu, self.weight_sigma, self.prior_sigma)
        if self.bias_mu is not None:
            total = total + gaussian_kl(self.bias_mu, F.softplus(self.bias_rho), self.prior_sigma)
        return total


STOCHASTIC_LAYERS = (MCDropout, VariationalConv2d)


def stochastic_layers(model: nn.Module) -> list[nn.Module]:
    """All MC dropout and variational layers of ``model`` (in module order)."""
    return [m for m in model.modules() if isinstance(m, STOCHASTIC_LAYERS)]


def set_sampling(model: nn.Module, on: bool) -> nn.Module:
    """Switch posterior sampling on or off for every stochastic layer of ``model``.

    The switch matters in eval mode only (training mode always samples). It is the one switch
    for MC dropout and variational layers alike; batch-norm layers stay in eval mode.

    Args:
        model: A network (a UNet, an Ensemble, or anything containing the layers).
        on: True for stochastic outputs, False for the deterministic (mean-weight) network.

    Returns:
        The same ``model`` object (its layers' flags are set in place; this is a mode switch
        like ``model.eval()``, not a computation).
    """
    for layer in stochastic_layers(model):
        layer.sampling = bool(on)
    return model


@contextlib.contextmanager
def sampling(model: nn.Module, on: bool = True) -> Iterator[nn.Module]:
    """Context manager: sampling on (or off) inside the block, previous flags restored after."""
    layers = stochastic_layers(model)
    before = [layer.sampling for layer in layers]
    set_sampling(model, on)
    try:
        yield model
    finally:
        for layer, flag in zip(layers, before, strict=True):
            layer.sampling = flag


def kl_divergence(model: nn.Module) -> Tensor:
    """Sum of the KL terms of all variational layers of ``model``.

    Returns:
        A scalar tensor (differentiable); ``0.`` on the model's device when there are none.
    """
    layers = [m for m in model.modules() if isinstance(m, VariationalConv2d)]
    if not layers:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        return torch.zeros((), device=device)
    return torch.stack([layer.kl() for layer in layers]).sum()
