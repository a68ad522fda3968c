"""Export the finished members of an ensemble run, while the others still train.

An ensemble run writes ``checkpoints/member_<k>_best.pt`` as each member finishes and the model
folder only at the end. This script writes a model folder of the first ``--members`` members
(each with its best weights), so that a smaller ensemble can be calibrated and evaluated early:

    python experiments/ensemble_partial.py --run runs/ensemble16 --members 2 \
        --single runs/deterministic16 --out runs/ensemble16_m2

It refuses a member whose checkpoint is missing, or whose training is not finished according to
the run's ``train_log.csv`` (fewer logged epochs than the config asks for). The new folder's
``config.json`` records the source run and the members' best epochs. ``nucleus_diameter`` and
the split's provenance (file, hash, data root, which ``calibrate`` and ``evaluate`` check) are
copied from ``--single``, the model folder of member 0's single run (same data and split),
because the ensemble run has not exported them yet.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
from collections import Counter
from pathlib import Path

from bayescellseg.data.sizes import median_diameter
from bayescellseg.data.split import SPLIT_FILE
from bayescellseg.model.build import build_model
from bayescellseg.model.config import ModelConfig
from bayescellseg.model.store import read_model_config, save_model
from bayescellseg.train.checkpoint import load_checkpoint
from bayescellseg.train.config import TrainConfig
from bayescellseg.train.prepare import prepare_data

#: Training extras copied from the single run: what the split checks of calibrate/evaluate read.
PROVENANCE = ("data_root", "split_file", "split_sha256", "n_train_images")


def finished_members(run: Path, epochs: int) -> set[int]:
    """Members with ``epochs`` rows in the run's ``train_log.csv``."""
    with (run / "train_log.csv").open(newline="") as f:
        counts = Counter(int(row["member"]) for row in csv.DictReader(f))
    return {k for k, n in counts.items() if n >= epochs}


def _source(single: Path | None, run: Path, config: TrainConfig) -> dict:
    """Provenance and nucleus diameter: from ``single``, or from the run's ``split.json``."""
    if single is not None:
        return read_model_config(single)[1]
    split = run / SPLIT_FILE
    data = prepare_data(config, run, resume=True)  # reads the stored split, rewrites it as is
    diameter = median_diameter(s.labels for s in data.train)
    training = {**data.provenance, "split_sha256": hashlib.sha256(split.read_bytes()).hexdigest()}
    return {"training": training, "nucleus_diameter": round(diameter, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="ensemble training run folder")
    parser.add_argument("--members", type=int, required=True, help="how many members to keep")
    parser.add_argument("--out", type=Path, required=True, help="new model folder")
    parser.add_argument(
        "--single", type=Path, default=None,
        help="model folder of member 0's single run (default: the run's own split.json; "
        "the nucleus diameter is then measured on its training images)",
    )  # fmt: skip
    args = parser.parse_args()

    doc = json.loads((args.run / "training_config.json").read_text())
    config = TrainConfig.from_dict(doc)
    model_cfg = ModelConfig.from_dict(doc["model"])
    if model_cfg.method != "ensemble":
        raise SystemExit(f"{args.run}: not an ensemble run (method {model_cfg.method!r})")
    if not 1 <= args.members <= model_cfg.n_members:
        raise SystemExit(f"--members must be between 1 and {model_cfg.n_members}")
    done = finished_members(args.run, config.epochs)
    one = args.members == 1  # a single network: the member itself, without dropout
    small = model_cfg.replace(n_members=args.members, method="deterministic" if one else "ensemble")
    model = build_model(small, seed=config.seed)
    best_epochs = []
    for k, member in enumerate([model] if one else model.members):
        path = args.run / "checkpoints" / f"member_{k}_best.pt"
        if k not in done or not path.exists():
            raise SystemExit(f"{args.run}: member {k} has not finished training")
        state = load_checkpoint(path)
        member.load_state_dict(state["model"])
        best_epochs.append(state.get("epoch"))
    source = _source(args.single, args.run, config)
    provenance = {k: source["training"][k] for k in PROVENANCE if k in source["training"]}
    extras: dict = {
        "training": {
            **provenance,
            "partial_ensemble_of": str(args.run),
            "member_best_epochs": best_epochs,
        }
    }
    if "nucleus_diameter" in source:
        extras["nucleus_diameter"] = source["nucleus_diameter"]
    save_model(args.out, model, small, extras)
    print(f"wrote {args.out}: {args.members} members, best epochs {best_epochs}")


if __name__ == "__main__":
    main()
