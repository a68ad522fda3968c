"""Model configuration: the architecture and the kind of Bayesian approximation.

A :class:`ModelConfig` is everything needed to rebuild a network before loading its weights; it
is stored as the ``"model"`` entry of a model folder's ``config.json``.

Methods:

* ``deterministic``: a plain U-Net (no uncertainty from the weights; only the softmax).
* ``mc_dropout``: dropout layers that stay on at inference (Gal & Ghahramani 2016); ``T`` passes
  give samples from the approximate posterior predictive.
* ``variational``: Bayes-by-backprop convolutions (Gaussian mean-field posterior, local
  reparameterisation) in the last ``variational_last_k`` decoder blocks and the head.
* ``ensemble``: ``n_members`` independently initialised U-Nets (Lakshminarayanan et al. 2017);
  with ``dropout_rate > 0`` every member also carries MC dropout.

Dropout placement (``mc_dropout`` and ``ensemble``):

* ``all``: after every contraction (encoder, including the bottleneck) and expansion (decoder)
  block, as in Bayesian SegNet / the original Bayesian U-Net.
* ``decoder``: after every decoder block.
* ``last_k``: after the last ``dropout_last_k`` decoder blocks only. Everything before the first
  dropout layer is computed once per image and only the tail is sampled, so sampling is cheap.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

METHODS = ("deterministic", "mc_dropout", "variational", "ensemble")
PLACEMENTS = ("all", "decoder", "last_k")
DROPOUT_KINDS = ("spatial", "element")
NORMALIZATIONS = ("auto", "fluorescence", "brightfield")
NORMS = ("group", "batch")

CLI_FLAG = "cli"
"""Field-metadata key of the settings that ``bayescellseg train`` offers as flags (its value:
the flag's argparse options, e.g. ``choices``); see :mod:`bayescellseg.train.cli_args`."""


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and uncertainty method of a Bayesian U-Net.

    Attributes:
        base_channels: Feature channels of the first level; they double at every level down.
        depth: Number of down-sampling steps (levels below the input resolution). Inputs are
            padded internally to a multiple of ``2**depth``.
        method: ``deterministic``, ``mc_dropout``, ``variational`` or ``ensemble``.
        dropout_rate: Drop probability of the MC dropout layers. Used by ``mc_dropout`` and
            ``ensemble`` (0 = no dropout in the members); ignored by the other methods.
        dropout_placement: ``all``, ``decoder`` or ``last_k`` (see module docstring).
        dropout_last_k: Number of final decoder blocks followed by dropout for ``last_k``
            (at most ``depth``; only checked against ``depth`` when it is used).
        dropout_kind: ``spatial`` drops whole feature maps (``Dropout2d``); ``element`` drops
            single activations (``Dropout``).
        n_members: Ensemble size (``ensemble`` only; the other methods use 1).
        prior_sigma: Standard deviation of the Gaussian weight prior N(0, prior_sigma^2)
            (``variational``).
        posterior_rho_init: Initial rho of the posterior, sigma = softplus(rho)
            (``variational``; -5 gives sigma ~ 0.0067, i.e. it starts almost deterministic).
        variational_last_k: Number of final decoder blocks whose convolutions are variational
            (``variational``; 0..depth; the 1x1 head is always variational).
        n_samples: Default number of stochastic forward passes T at inference (for an
            ensemble: passes per member, 1 when the members have no dropout).
        normalization: Input normalisation mode passed to ``data.normalize.normalize``.
        in_channels: Input channels (3: the RGB-normalised image).
        norm: Normalisation layer in the conv blocks: ``group`` (GroupNorm, independent of the
            batch size, so small training batches and batched sampling behave the same) or
            ``batch`` (BatchNorm, running statistics at inference).

    Fields with :data:`CLI_FLAG` metadata are also flags of ``bayescellseg train``.
    """

    base_channels: int = field(default=32, metadata={CLI_FLAG: {}})
    depth: int = field(default=4, metadata={CLI_FLAG: {}})
    method: str = field(default="mc_dropout", metadata={CLI_FLAG: {"choices": METHODS}})
    dropout_rate: float = field(default=0.5, metadata={CLI_FLAG: {}})
    dropout_placement: str = field(default="decoder", metadata={CLI_FLAG: {"choices": PLACEMENTS}})
    dropout_last_k: int = 2
    dropout_kind: str = "spatial"
    n_members: int = field(default=1, metadata={CLI_FLAG: {}})
    prior_sigma: float = 1.0
    posterior_rho_init: float = -5.0
    variational_last_k: int = 2
    n_samples: int = 20
    normalization: str = "auto"
    in_channels: int = 3
    norm: str = "group"

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def uses_dropout(self) -> bool:
        """Whether the network contains MC dropout layers."""
        return self.method in ("mc_dropout", "ensemble") and self.dropout_rate > 0

    @property
    def is_stochastic(self) -> bool:
        """Whether a single network gives different outputs when sampling is on."""
        return self.uses_dropout or self.method == "variational"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (every field, plain Python types)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build a config from :meth:`to_dict` output.

        Missing keys take their defaults, so older files keep loading.

        Raises:
            ValueError: On unknown keys or invalid values (the message names them).
        """
        if not isinstance(data, dict):
            raise ValueError(f"model config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown model config key(s) {unknown}; known keys are {sorted(known)}"
            )
        return cls(**data)

    def replace(self, **changes: Any) -> ModelConfig:
        """Return a copy with some fields changed (validated; unknown keys raise ValueError)."""
        return ModelConfig.from_dict({**self.to_dict(), **changes})


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"between {low} and {high}"
        raise ValueError(f"{name} must be {bound}, got {value}")


def _check_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _validate(cfg: ModelConfig) -> None:
    _check_int("base_channels", cfg.base_channels, 1, 1024)
    _check_int("depth", cfg.depth, 1, 7)
    _check_choice("method", cfg.method, METHODS)
    rate = _check_float("dropout_rate", cfg.dropout_rate)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout_rate must be in [0, 1), got {rate}")
    _check_choice("dropout_placement", cfg.dropout_placement, PLACEMENTS)
    last_k_used = cfg.uses_dropout and cfg.dropout_placement == "last_k"
    _check_int("dropout_last_k", cfg.dropout_last_k, 1, cfg.depth if last_k_used else None)
    _check_choice("dropout_kind", cfg.dropout_kind, DROPOUT_KINDS)
    _check_int("n_members", cfg.n_members, 1, 64)
    if cfg.method == "ensemble" and cfg.n_members < 2:
        raise ValueError(f"method 'ensemble' needs n_members >= 2, got {cfg.n_members}")
    if cfg.method != "ensemble" and cfg.n_members != 1:
        raise ValueError(f"n_members must be 1 unless method is 'ensemble' (got {cfg.n_members})")
    if cfg.method == "mc_dropout" and rate == 0.0:
        raise ValueError("method 'mc_dropout' needs dropout_rate > 0")
    if _check_float("prior_sigma", cfg.prior_sigma) <= 0:
        raise ValueError(f"prior_sigma must be > 0, got {cfg.prior_sigma}")
    _check_float("posterior_rho_init", cfg.posterior_rho_init)
    variational = cfg.method == "variational"
    _check_int("variational_last_k", cfg.variational_last_k, 0, cfg.depth if variational else None)
    _check_int("n_samples", cfg.n_samples, 1, 10_000)
    _check_choice("normalization", cfg.normalization, NORMALIZATIONS)
    _check_int("in_channels", cfg.in_channels, 1, 64)
    _check_choice("norm", cfg.norm, NORMS)
    _check_size(cfg)


MAX_PARAMETERS = 250_000_000
"""Largest network accepted (all ensemble members): 1 GB of float32 weights."""

MAX_TILE_ACTIVATION_BYTES = 4 * 2**30
"""Largest estimated activation memory of one member on a 512x512 tile."""


def estimated_parameters(cfg: ModelConfig) -> int:
    """Number of weights the network of ``cfg`` has (all members), computed without building it.

    Exact for the U-Net of :mod:`bayescellseg.model.unet` up to the variational layers' extra
    parameters, which are counted as twice their convolution (mean and rho).
    """
    ch = [cfg.base_channels * 2**i for i in range(cfg.depth + 1)]

    def block(c_in: int, c_out: int, variational: bool) -> int:
        conv = 9 * (c_in * c_out + c_out * c_out)
        return conv * (2 if variational else 1) + 4 * c_out  # two norms: weight + bias

    ins = [cfg.in_channels, *ch[:-1]]
    total = sum(block(c_in, c_out, False) for c_in, c_out in zip(ins, ch, strict=True))
    for j in range(cfg.depth):
        level = cfg.depth - 1 - j
        variational = cfg.method == "variational" and j >= cfg.depth - cfg.variational_last_k
        total += block(ch[level + 1] + ch[level], ch[level], variational)
    total += (ch[0] * 2 + 2) * (2 if cfg.method == "variational" else 1)
    return total * cfg.n_members


def estimated_tile_bytes(cfg: ModelConfig, tile: int = 512) -> int:
    """Rough activation memory of one member's forward pass on a ``tile`` x ``tile`` input.

    Counts about four float32 feature maps per level (block input, the two convolutions and
    the skip kept for the decoder).
    """
    maps = sum(cfg.base_channels * 2**i * (tile // 2**i) ** 2 for i in range(cfg.depth + 1))
    return 4 * 4 * maps


def _check_size(cfg: ModelConfig) -> None:
    """Refuse networks far beyond anything this package can run (before building them)."""
    n_params = estimated_parameters(cfg)
    if n_params > MAX_PARAMETERS:
        raise ValueError(
            f"the network would have about {n_params:,} parameters ({n_params * 4 / 1e9:.1f} GB "
            f"of float32 weights; base_channels {cfg.base_channels}, depth {cfg.depth}, "
            f"{cfg.n_members} member(s)), over the limit of {MAX_PARAMETERS:,}"
        )
    tile_bytes = estimated_tile_bytes(cfg)
    if tile_bytes > MAX_TILE_ACTIVATION_BYTES:
        raise ValueError(
            f"one forward pass on a 512x512 tile would need about {tile_bytes / 2**30:.0f} GiB "
            f"of activations (base_channels {cfg.base_channels}, depth {cfg.depth}), over the "
            f"limit of {MAX_TILE_ACTIVATION_BYTES / 2**30:.0f} GiB"
        )


PRESETS: dict[str, dict[str, Any]] = {
    # The original Bayesian U-Net for nuclei: 32 filters, 4 levels, dropout 0.5 after every
    # contraction and expansion block, 15 MC samples. Element-wise dropout, as in the original
    # Bayesian SegNet / U-Net implementations (plain ``Dropout`` layers), so that the preset
    # reproduces the published model rather than a variant of it.
    "original": {
        "base_channels": 32,
        "depth": 4,
        "method": "mc_dropout",
        "dropout_rate": 0.5,
        "dropout_placement": "all",
        "dropout_kind": "element",
        "n_samples": 15,
    },
    # Spatial dropout after the last two decoder blocks only: the encoder and the first decoder
    # stages run once per image and only the full-resolution tail is sampled (cheap sampling).
    "decoder": {
        "base_channels": 32,
        "depth": 4,
        "method": "mc_dropout",
        "dropout_rate": 0.3,
        "dropout_placement": "last_k",
        "dropout_last_k": 2,
        "dropout_kind": "spatial",
        "n_samples": 20,
    },
    "deterministic": {
        "base_channels": 32,
        "depth": 4,
        "method": "deterministic",
        "dropout_rate": 0.0,
        "n_samples": 1,
    },
    "variational": {
        "base_channels": 32,
        "depth": 4,
        "method": "variational",
        "dropout_rate": 0.0,
        "variational_last_k": 2,
        "prior_sigma": 1.0,
        "posterior_rho_init": -5.0,
        "n_samples": 20,
    },
    "ensemble": {
        "base_channels": 32,
        "depth": 4,
        "method": "ensemble",
        "n_members": 5,
        "dropout_rate": 0.0,
        "n_samples": 1,
    },
}


def config_from_preset(name: str, **overrides: Any) -> ModelConfig:
    """Build the config of a named preset, with some fields overridden.

    Args:
        name: A key of :data:`PRESETS`.
        **overrides: Fields to change (validated like any config).

    Raises:
        ValueError: Unknown preset or invalid override.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
    return ModelConfig.from_dict({**PRESETS[name], **overrides})
