"""Does ``--diameter`` rescue images whose nuclei are larger or smaller than in training?

Validation images are resized by a factor (the truth with nearest-neighbour), which simulates
another magnification, and segmented three ways: without resizing, with ``diameter="auto"`` and
with the true median diameter of the resized truth (the best a user could give). Factor 1
shows whether ``auto`` costs anything on images at the training scale. ``--auto-range``
compares values of ``rescale.AUTO_RANGE`` (how far off an estimate may be before ``auto``
resizes); the package's value was chosen with it.

    python experiments/diameter_study.py --model runs/decoder16_ft \
        --data ../shared/data/dsb2018/stage1_train --limit 40 --factors 0.5 1 2 > runs/diameter_study.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from skimage.transform import resize

from bayescellseg.data.selection import select_refs
from bayescellseg.data.sizes import median_diameter
from bayescellseg.inference import rescale
from bayescellseg.inference.segmenter import Segmenter
from bayescellseg.metrics.matching import dsb_score

MODES = ("none", "auto", "true median")


def rescaled(image: np.ndarray, labels: np.ndarray, factor: float):
    """Image (bilinear, anti-aliased when shrinking) and truth (nearest) resized by ``factor``."""
    shape = (max(1, round(labels.shape[0] * factor)), max(1, round(labels.shape[1] * factor)))
    if factor == 1:
        return image, labels
    img = resize(image, shape, order=1, anti_aliasing=factor < 1, preserve_range=True)
    lab = resize(labels, shape, order=0, anti_aliasing=False, preserve_range=True)
    return img.astype(image.dtype), lab.astype(labels.dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument(
        "--limit", type=int, default=40, help="first N validation images (of the model's split)"
    )
    parser.add_argument("--factors", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    parser.add_argument("--samples", type=int, default=0, help="T (default 0: one pass)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument(
        "--auto-range",
        type=float,
        nargs="+",
        default=[rescale.AUTO_RANGE],
        help="values of rescale.AUTO_RANGE to compare in the auto rows (default: the package's)",
    )
    args = parser.parse_args()
    seg = Segmenter.load(args.model)
    training = seg.extras.get("training") or {}
    refs = select_refs(args.data, "val", seg.source, training, limit=args.limit)
    print(f"model {args.model} (nucleus_diameter {seg.nucleus_diameter} px), "
          f"{len(refs)} validation images, T = {args.samples}\n")  # fmt: skip
    print("| image factor | diameter | mean DSB | mean scale used | s / image |")
    print("|---|---|---|---|---|")
    samples = [ref.load() for ref in refs]
    for factor in args.factors:
        data = [rescaled(s.image, s.labels, factor) for s in samples]
        runs = [(m, r) for m in args.modes for r in (args.auto_range if m == "auto" else [None])]
        for mode, auto_range in runs:
            if auto_range is not None:
                rescale.AUTO_RANGE = auto_range  # read by Segmenter.predict at each call
            scores, scales, start = [], [], time.perf_counter()
            for image, truth in data:
                diameter = {"none": None, "auto": "auto"}.get(mode)
                if mode == "true median":
                    diameter = median_diameter([truth])
                    if np.isnan(diameter):
                        diameter = None
                result = seg.predict(image, n_samples=args.samples, diameter=diameter)
                scores.append(dsb_score(truth, result.labels))
                scales.append(result.info.scale)
            seconds = (time.perf_counter() - start) / len(data)
            label = mode if auto_range is None else f"auto (range {auto_range:g})"
            print(f"| {factor:g} | {label} | {np.mean(scores):.3f} | {np.mean(scales):.2f} | "
                  f"{seconds:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
