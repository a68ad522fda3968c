"""Assemble an ensemble model folder from networks of other model folders.

Each ``--member`` is a model folder holding one U-Net (``runs/decoder16_ft``) or one member of an
ensemble folder (``runs/ensemble16:1``). All must share the architecture (width, depth, norm,
input channels; dropout layers carry no weights, so a dropout model can join a dropout-free
ensemble, where it runs with dropout off) and the training split. For example, the ensemble
whose first member is the H&E-tuned ``decoder16_ft``:

    python experiments/ensemble_assemble.py --member runs/decoder16_ft \
        --member runs/ensemble16:1 --member runs/ensemble16:2 --out runs/ensemble16_ft0

The new folder is uncalibrated (run ``bayescellseg calibrate``). Its ``config.json`` records
the members' sources under ``training.assembled_from``; ``experiments/study_table.py`` adds up
their training hours from there.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ensemble_partial import PROVENANCE  # the split's provenance: must agree, and is copied
from torch import nn

from bayescellseg.model.build import Ensemble
from bayescellseg.model.config import ModelConfig
from bayescellseg.model.store import load_model, save_model

#: Architecture fields that must agree between the sources.
ARCHITECTURE = ("base_channels", "depth", "norm", "in_channels", "normalization")


def parse_member(spec: str) -> tuple[Path, int | None]:
    """``"runs/a"`` -> (runs/a, None); ``"runs/a:1"`` -> (runs/a, 1)."""
    folder, sep, index = spec.rpartition(":")
    if sep and index.isdigit():
        return Path(folder), int(index)
    return Path(spec), None


def take_member(folder: Path, index: int | None) -> tuple[nn.Module, ModelConfig, dict]:
    """The network ``index`` of ``folder`` (the whole network when None), its config and extras."""
    loaded = load_model(folder)
    network, config = loaded.model, loaded.config
    if isinstance(network, Ensemble):
        if index is None or not 0 <= index < len(network.members):
            raise SystemExit(f"{folder}: an ensemble of {len(network.members)}; name a member (:k)")
        return network.members[index], config, loaded.extras
    if index is not None:
        raise SystemExit(f"{folder}: not an ensemble, so it has no member {index}")
    return network, config, loaded.extras


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--member", action="append", required=True, help="model folder, or folder:k (repeat)"
    )
    parser.add_argument("--out", type=Path, required=True, help="new model folder")
    args = parser.parse_args()
    if len(args.member) < 2:
        raise SystemExit("an ensemble needs at least two --member")

    members, sources, extras0 = [], [], None
    first: ModelConfig | None = None
    for spec in args.member:
        folder, index = parse_member(spec)
        network, config, extras = take_member(folder, index)
        if first is None:
            first, extras0 = config, extras
        for name in ARCHITECTURE:
            if getattr(config, name) != getattr(first, name):
                raise SystemExit(
                    f"{spec}: {name} {getattr(config, name)!r} != {getattr(first, name)!r}"
                )
        for name in PROVENANCE:
            if extras.get("training", {}).get(name) != extras0["training"].get(name):
                raise SystemExit(f"{spec}: trained on another split ({name} differs)")
        members.append(network)
        sources.append({"source": str(folder), "member": index})
    assert first is not None and extras0 is not None
    config = first.replace(method="ensemble", n_members=len(members), dropout_rate=0.0, n_samples=1)
    ensemble = Ensemble(nn.ModuleList(members))
    training = {k: extras0["training"][k] for k in PROVENANCE if k in extras0["training"]}
    new_extras: dict = {"training": {**training, "assembled_from": sources}}
    if "nucleus_diameter" in extras0:
        new_extras["nucleus_diameter"] = extras0["nucleus_diameter"]
    save_model(args.out, ensemble, config, new_extras)
    print(f"wrote {args.out}: {len(members)} members from {', '.join(args.member)}")


if __name__ == "__main__":
    main()
