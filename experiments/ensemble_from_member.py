"""Start an ensemble run whose member 0 is an already trained single network.

Ensemble member 0 is trained with the run's own seed, the same initial weights
(``build_model(config, seed)``), crops and augmentation as a single network of the same
architecture and training settings. So a finished deterministic run *is* member 0 of the
ensemble, and training it again would only repeat 1.5-2 CPU hours. This script checks that the
two runs agree on everything but ``preset``, ``method`` and ``n_members`` (and that member 0's
initial weights equal the single network's), then writes the ensemble run folder as if member 0
had just finished: ``training_config.json``, ``checkpoints/member_0_best.pt`` (the single
run's exported best weights), and ``checkpoints/last.pt`` (the single run's final state, with
the ensemble's config). ``bayescellseg train --resume --out OUT`` then trains members 1.. and
writes the ensemble model folder. ``train_log.csv`` keeps member 0's rows, so the ensemble's
training time includes them.

    python experiments/ensemble_from_member.py --single runs/deterministic16 \
        --config experiments/configs/ensemble16.json --out runs/ensemble16
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bayescellseg.model.build import build_model
from bayescellseg.model.config import ModelConfig
from bayescellseg.model.store import load_model
from bayescellseg.train.checkpoint import load_checkpoint, save_checkpoint
from bayescellseg.train.config import TrainConfig, resolve_model_config

#: What may differ between the single run and the ensemble (besides run-time fields).
ENSEMBLE_FIELDS = {"preset"}
ENSEMBLE_MODEL_FIELDS = {"method", "n_members", "n_samples"}


def differences(single: dict, ensemble: dict) -> list[str]:
    """Training settings (and model settings) on which the two configs disagree."""
    from bayescellseg.train.config import RESUMABLE_FIELDS

    skip = ENSEMBLE_FIELDS | RESUMABLE_FIELDS | {"model"}
    out = [k for k in ensemble if k not in skip and single.get(k) != ensemble[k]]
    model_a, model_b = single["model"], ensemble["model"]
    out += [
        f"model.{k}"
        for k in model_b
        if k not in ENSEMBLE_MODEL_FIELDS and model_a.get(k) != model_b[k]
    ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--single", type=Path, required=True, help="finished single run")
    parser.add_argument("--config", type=Path, required=True, help="ensemble training config")
    parser.add_argument("--out", type=Path, required=True, help="new ensemble run folder")
    args = parser.parse_args()

    single_cfg = json.loads((args.single / "training_config.json").read_text())
    ensemble = TrainConfig.from_json(args.config.read_text(), args.config).to_dict()
    ensemble["model"] = resolve_model_config(ensemble.get("preset"), ensemble["model"])
    ens_model = ModelConfig.from_dict(ensemble["model"])
    if ens_model.method != "ensemble" or ens_model.dropout_rate != 0:
        raise SystemExit(f"{args.config}: expected an ensemble without dropout")
    diff = differences(single_cfg, ensemble)
    if diff:
        raise SystemExit(f"the runs differ in {diff}: member 0 would not be the single run")
    state = load_checkpoint(args.single / "checkpoints" / "last.pt")
    if int(state["epoch"]) < ensemble["epochs"] or int(state["member"]) != 0:
        raise SystemExit(f"{args.single} has not finished its {ensemble['epochs']} epochs")
    fresh_single = build_model(ModelConfig.from_dict(single_cfg["model"]), seed=ensemble["seed"])
    fresh_member = build_model(ens_model, seed=ensemble["seed"]).members[0]
    a, b = fresh_single.state_dict(), fresh_member.state_dict()
    if a.keys() != b.keys() or not all(torch.equal(a[k], b[k]) for k in a):
        raise SystemExit("member 0's initial weights differ from the single network's")
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"{args.out} exists and is not empty")

    loaded = load_model(args.single)
    best_epoch = loaded.extras.get("training", {}).get("best_epoch")
    history = state["history"]
    best = max(history, key=lambda r: r["val_dsb"])
    (args.out / "checkpoints").mkdir(parents=True)
    (args.out / "training_config.json").write_text(json.dumps(ensemble, indent=2) + "\n")
    save_checkpoint(
        args.out / "checkpoints" / "member_0_best.pt",
        {"model": loaded.model.state_dict(), "epoch": best["epoch"], "metric": best["val_dsb"]},
    )
    save_checkpoint(args.out / "checkpoints" / "last.pt", {**state, "config": ensemble})
    (args.out / "member_0_source.json").write_text(
        json.dumps(
            {"single_run": str(args.single.resolve()), "best_epoch": best_epoch or best["epoch"]},
            indent=2,
        )
        + "\n"
    )
    print(f"{args.out}: member 0 = {args.single} (best epoch {best['epoch']}); now run")
    print(f"  bayescellseg train --data DATA --out {args.out} --resume")


if __name__ == "__main__":
    main()
