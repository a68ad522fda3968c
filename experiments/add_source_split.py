"""Add one more source to a split file: its images split by tile (or by group), seeded.

Used to train the opt-in model on the generalist split plus MoNuSeg, keeping the DSB2018 and
TNBC parts unchanged so the held-out images of both stay the same:

    python experiments/add_source_split.py --split experiments/checkpoints/generalist16/split.json \
        --add monuseg=../shared/data/monuseg2018_train --val-fraction 0.25 --seed 0 \
        --out experiments/checkpoints/nuclei_nc/split.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bayescellseg.data.sources import list_pairs, parse_source
from bayescellseg.data.split import split_one_source
from bayescellseg.io.atomic import write_json_atomic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", type=Path, required=True, help="split file to extend")
    parser.add_argument("--add", required=True, help="NAME=DIR of the new source")
    parser.add_argument("--val-fraction", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="new split file")
    args = parser.parse_args()
    doc = json.loads(args.split.read_text(encoding="utf-8"))
    spec = parse_source(args.add)
    if spec.name in doc["sources"]:
        raise SystemExit(f"{args.split}: already has a source {spec.name!r}")
    ids = sorted(item[0] for item in list_pairs(spec, Path(spec.path), []))
    parts = split_one_source(spec.name, ids, ["all"] * len(ids), None, args.val_fraction, args.seed)
    doc["sources"][spec.name] = {
        "path": str(Path(spec.path).resolve()),
        "role": "split",
        "labels": None,
        "method": f"by tile, val_fraction {args.val_fraction}, seed {args.seed}",
        "n_train": len(parts["train"]),
        "n_val": len(parts["val"]),
        "train": parts["train"],
        "val": parts["val"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, doc, overwrite=False)
    print(f"{spec.name}: train {len(parts['train'])}, val {len(parts['val'])}: {parts['val']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
