"""Worker for ``test_distributed.py``: run under ``torchrun --nproc_per_node=2``.

Usage: ``python -m torch.distributed.run --standalone --nproc_per_node=2 ddp_script.py OUT``.
Every rank trains the same tiny model on synthetic data with ``fit`` and saves the weights it
ends with (plus the indices of the crops it trained on) as ``OUT/rank<r>.pt``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # for tests.*

from bayescellseg.train import members, trainer  # noqa: E402
from tests.train.helpers import synthetic_samples, tiny_config  # noqa: E402


def main(out: Path) -> None:
    rank = int(os.environ["RANK"])
    seen: list[int] = []
    real_loader, real_fit_member = members.loader, members.fit_member

    def recording_loader(dataset, epoch, config, rt):  # noqa: ANN001, ANN202
        loader = real_loader(dataset, epoch, config, rt)
        seen.extend(loader.sampler)
        return loader

    def saving_fit_member(run, net, *args):  # noqa: ANN001, ANN202
        real_fit_member(run, net, *args)
        state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        torch.save({"model": state, "seen": seen}, out / f"rank{rank}.pt")

    members.loader, members.fit_member = recording_loader, saving_fit_member
    cfg = tiny_config(epochs=2, steps_per_epoch=2)
    trainer.fit(synthetic_samples(4), synthetic_samples(1, size=40, seed=50), cfg, out / "model")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
