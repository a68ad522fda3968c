"""Record a model folder's ``nucleus_diameter``: the median nucleus size of its training split.

``bayescellseg train`` records it itself; this backfills folders trained before it did, so
that ``predict --diameter`` works with them. The value is computed exactly as the trainer does
(:func:`bayescellseg.data.sizes.median_diameter` over every nucleus of the split's training
images) and written with ``update_extras``.

    python experiments/record_diameter.py --model runs/decoder16_ft \
        --data ../shared/data/dsb2018/stage1_train [--dry-run]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bayescellseg.data.dataset import load_samples
from bayescellseg.data.sizes import equivalent_diameters, median_diameter
from bayescellseg.data.split import load_split
from bayescellseg.model.store import load_model, update_extras


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, nargs="+")
    parser.add_argument("--data", type=Path, required=True, help="DSB2018 stage1_train")
    parser.add_argument("--dry-run", action="store_true", help="print, do not write")
    args = parser.parse_args()
    train_ids = load_split()["train"]
    samples = load_samples(args.data, train_ids)
    diameter = round(median_diameter(s.labels for s in samples), 3)
    n_nuclei = sum(equivalent_diameters(s.labels).size for s in samples)
    print(f"{len(samples)} training images, {n_nuclei} nuclei: median diameter {diameter} px")
    for model in args.model:
        split = (load_model(model).extras.get("training") or {}).get("split_file")
        if split not in (None, "dsb2018_stage1.json"):
            raise SystemExit(f"{model}: trained on split {split}, not the bundled one")
        if not args.dry_run:
            update_extras(model, nucleus_diameter=diameter)
            print(f"{model}: nucleus_diameter = {diameter}")


if __name__ == "__main__":
    main()
