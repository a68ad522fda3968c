"""Build a network from a :class:`ModelConfig`: one U-Net, or an ensemble of U-Nets."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bayescellseg.model.config import ModelConfig
from bayescellseg.model.unet import UNet


class Ensemble(nn.Module):
    """A deep ensemble: independently initialised (and trained) U-Nets.

    ``forward`` returns the logits of every member, stacked: (M, B, 2, H, W). Averaging is left to
    the caller because the right average is over *probabilities* (sigmoid of each member's
    logits), not over logits. Members can also be run one by one (``ensemble.members[i]``),
    including their ``forward_shared`` / ``forward_stochastic`` split when they carry dropout.

    Args:
        members: The member networks.
    """

    def __init__(self, members: nn.ModuleList) -> None:
        super().__init__()
        if len(members) < 1:
            raise ValueError("an ensemble needs at least one member")
        self.members = members

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([member(x) for member in self.members])


def build_model(config: ModelConfig, seed: int = 0) -> nn.Module:
    """Create an untrained network for ``config``.

    The caller's global torch RNG state is left untouched (initialisation runs in a forked RNG).

    Args:
        config: Architecture and method.
        seed: Initialisation seed. Ensemble member i is initialised with ``seed + i``.

    Returns:
        A :class:`~bayescellseg.model.unet.UNet`, or an :class:`Ensemble` of ``n_members`` UNets
        when ``config.method == "ensemble"``.
    """
    if config.method != "ensemble":
        return _seeded_unet(config, seed)
    return Ensemble(nn.ModuleList(_seeded_unet(config, seed + i) for i in range(config.n_members)))


def _seeded_unet(config: ModelConfig, seed: int) -> UNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet(config)
