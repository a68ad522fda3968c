"""Sizes of the erroneous nuclei of two models, with sampling off, on the validation split.

An error is a predicted nucleus without a true nucleus at IoU > 0.5. Each model runs with its
own calibration and watershed settings (``Segmenter.predict(n_samples=0)``).

    python experiments/error_sizes.py runs/decoder16 runs/decoder16_ft \
        --data ../shared/data/dsb2018/stage1_train
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bayescellseg.data.selection import select_refs
from bayescellseg.inference.segmenter import Segmenter
from bayescellseg.postprocess.tune import nucleus_errors


def error_areas(model: Path, data: Path) -> tuple[np.ndarray, np.ndarray]:
    """Areas (pixels) of the erroneous and of the matched predicted nuclei."""
    seg = Segmenter.load(model)
    refs = select_refs(data, "val", None, seg.extras.get("training") or {})
    wrong, right = [], []
    for ref in refs:
        sample = ref.load()
        labels = seg.predict(sample.image, n_samples=0).labels
        errors = nucleus_errors(sample.labels, labels)
        areas = np.bincount(labels.ravel())[1:]
        areas = areas[areas > 0]
        wrong.append(areas[errors])
        right.append(areas[~errors])
    return np.concatenate(wrong), np.concatenate(right)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    args = parser.parse_args()
    print(
        "| model | errors | below 60 px | 60 px and above | median error area | median matched area |"
    )
    print("|---|---|---|---|---|---|")
    for model in args.models:
        wrong, right = error_areas(model, args.data)
        print(
            f"| {model.name} | {wrong.size} | {(wrong < 60).sum()} | {(wrong >= 60).sum()} "
            f"| {np.median(wrong):.0f} | {np.median(right):.0f} |"
        )


if __name__ == "__main__":
    main()
