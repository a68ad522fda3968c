"""Do fluorescence and brightfield/H&E images want different watershed settings?

`bayescellseg calibrate` tunes one set of watershed settings on all validation images, and 109 of
the 134 are fluorescence. This experiment tunes them per imaging type and gives held-out
figures: the validation images (sorted by ID) of each type are split into two halves by
alternating index, settings are tuned on one half and scored on the other, and the halves are
pooled. It compares one global setting against one per imaging type.

The model's maps are cached per image (``--cache``), so a rerun only re-tunes.

    python experiments/watershed_by_type.py --model runs/decoder16 \
        --data ../shared/data/dsb2018/stage1_train --cache runs/wsbytype_decoder16 [--samples 0]
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from bayescellseg.data.normalize import imaging_type
from bayescellseg.data.selection import select_refs
from bayescellseg.inference.segmenter import Segmenter, as_float_rgb
from bayescellseg.metrics.matching import dsb_score
from bayescellseg.postprocess.tune import tune_watershed
from bayescellseg.postprocess.watershed import WatershedParams, instances_from_maps

GRID: dict[str, tuple[float, ...]] = {
    "fg_threshold": (0.3, 0.4, 0.5, 0.6),
    "marker_threshold": (0.3, 0.5, 0.7, 0.8),
    "contour_weight": (0.5, 1.0, 1.5),
}


def collect(model: Path, data: Path, cache: Path, n_samples: int | None) -> list[Path]:
    """Predict every validation image once; cache maps, truth and imaging type per image."""
    seg = Segmenter.load(model)
    refs = select_refs(data, "val", None, seg.extras.get("training") or {})
    cache.mkdir(parents=True, exist_ok=True)
    files = []
    for i, ref in enumerate(refs):
        path = cache / f"{ref.id}.npz"
        files.append(path)
        if path.exists():
            continue
        sample = ref.load()
        image = as_float_rgb(sample.image, ref.id)
        result = seg.predict(image, n_samples=n_samples)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            probability=result.probability.astype(np.float16),
            contour=result.contour.astype(np.float16),
            truth=np.asarray(sample.labels, np.uint32),
            kind=imaging_type(image),
        )
        tmp.replace(path)
        print(f"{i + 1}/{len(refs)} {ref.id}", flush=True)
    return files


def mean_dsb(items: list[dict[str, np.ndarray]], params: WatershedParams) -> list[float]:
    """DSB score of each item with ``params``."""
    return [
        dsb_score(it["truth"], instances_from_maps(it["probability"], it["contour"], params))
        for it in items
    ]


def tune(items: list[dict[str, np.ndarray]], base: WatershedParams) -> WatershedParams:
    """The grid's best settings on ``items``."""
    return tune_watershed(
        [it["probability"] for it in items],
        [it["contour"] for it in items],
        [it["truth"] for it in items],
        GRID,
        base,
    )[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=None, help="T (default: the model's)")
    args = parser.parse_args()

    files = collect(args.model, args.data, args.cache, args.samples)
    items = []
    for f in files:
        with np.load(f) as z:
            items.append(
                {
                    "probability": z["probability"].astype(np.float32),
                    "contour": z["contour"].astype(np.float32),
                    "truth": z["truth"],
                    "kind": str(z["kind"]),
                }
            )
    base = WatershedParams.from_dict(Segmenter.load(args.model).extras.get("postprocess") or {})
    kinds = sorted({it["kind"] for it in items})
    halves = [items[0::2], items[1::2]]

    # held out: tune on one half, score the other; pooled over both directions
    scores: dict[str, dict[str, list[float]]] = {"global": {}, "per type": {}}
    for fit, held in ((halves[0], halves[1]), (halves[1], halves[0])):
        global_params = tune(fit, base)
        for kind in kinds:
            held_k = [it for it in held if it["kind"] == kind]
            fit_k = [it for it in fit if it["kind"] == kind]
            type_params = tune(fit_k, base)
            scores["global"].setdefault(kind, []).extend(mean_dsb(held_k, global_params))
            scores["per type"].setdefault(kind, []).extend(mean_dsb(held_k, type_params))

    print("\nHeld-out mean DSB (2-fold cross-fit on the validation split)\n")
    print("| settings | " + " | ".join(f"{k} (n)" for k in kinds) + " | all |")
    print("|---" * (len(kinds) + 2) + "|")
    for name, by_kind in scores.items():
        cells = [f"{np.mean(by_kind[k]):.3f} ({len(by_kind[k])})" for k in kinds]
        pooled = np.mean([s for k in kinds for s in by_kind[k]])
        print(f"| {name} | " + " | ".join(cells) + f" | {pooled:.3f} |")

    print("\nSettings tuned on all validation images:")
    print("  global:", dataclasses.asdict(tune(items, base)))
    for kind in kinds:
        print(
            f"  {kind}:", dataclasses.asdict(tune([it for it in items if it["kind"] == kind], base))
        )


if __name__ == "__main__":
    main()
