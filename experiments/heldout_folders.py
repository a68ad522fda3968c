"""Held-out folders per source, for scoring any model on the same images with the same labels.

For every source of a training run's ``split.json``, its validation images are linked into
``OUT/<source>/images`` with their labels (the split's label folder when it has one, e.g. the
corrected DSB2018 labels) in ``OUT/<source>/labels``. ``--whole NAME=DIR`` adds a source that no
training run used (every image held out). Then one ``evaluate`` scores a model per source:

    python experiments/heldout_folders.py --split runs/generalist16/split.json \
        --whole koyuncu=../shared/data/koyuncu_fluo monuseg=../shared/data/monuseg2018_train \
        --out runs/heldout
    bayescellseg evaluate --model MODEL --data runs/heldout/* --out runs/heldout_report_MODEL
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bayescellseg.data.sources import SourceSpec, list_pairs, parse_source
from bayescellseg.data.split import read_source_split
from bayescellseg.io.datasets import SampleFiles


def _link(out: Path, items: list[SampleFiles]) -> int:
    (out / "images").mkdir(parents=True)
    (out / "labels").mkdir()
    for sample_id, image, labels in items:
        if labels is None:
            raise SystemExit(f"{image}: a DSB sample without a label image; give --labels")
        (out / "images" / f"{sample_id}{image.suffix}").symlink_to(image.resolve())
        (out / "labels" / f"{sample_id}{labels.suffix}").symlink_to(labels.resolve())
    return len(items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", type=Path, required=True, help="a model folder's split.json")
    parser.add_argument("--whole", nargs="*", default=[], help="NAME=DIR sources held out whole")
    parser.add_argument("--out", type=Path, required=True, help="new folder")
    args = parser.parse_args()
    for name, entry in read_source_split(args.split).items():
        if not entry["val"] or not entry.get("path"):
            continue
        spec = SourceSpec(name=name, path=entry["path"], labels=entry.get("labels"))
        wanted = set(entry["val"])
        items = [item for item in list_pairs(spec, Path(spec.path), []) if item[0] in wanted]
        if spec.labels is None and any(lab is None for _, _, lab in items):
            raise SystemExit(f"{name}: DSB layout without a label folder is not supported here")
        print(f"{name}: {_link(args.out / name, items)} held-out images")
    for text in args.whole:
        spec = parse_source(text)
        items = list_pairs(spec, Path(spec.path), [])
        print(f"{spec.name}: {_link(args.out / spec.name, items)} images (whole source)")


if __name__ == "__main__":
    main()
