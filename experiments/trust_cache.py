"""Run a model once over held-out folders and cache what the trust study needs, per image.

For every ``<heldout>/<source>/images/<id>.*`` with ``labels/<id>.tif`` (as written by
``experiments/heldout_folders.py``) the model predicts once (``Segmenter.predict``, default
settings but ``--diameter``, seed 0) and ``<cache>/<source>/<id>.npz`` keeps:

* the Result: ``labels``, the maps (float16), the summary and prediction info (JSON,
  ``Result.summary_dict()``) and the nucleus table;
* the truth: DSB and AP50 scores, and per predicted nucleus whether a true nucleus matches it
  at IoU > 0.5 and its best IoU;
* the network's bottleneck: per member, the spatial mean and standard deviation of every
  bottleneck channel, as the prediction path computes them (``PredictedMaps.bottleneck``,
  :mod:`bayescellseg.inference.passes`: the pass whose maps are returned, tiles weighted by
  area). Caches made before it came from a forward hook on the last encoder block that also
  counted ``diameter="auto"``'s probe passes; the keys and shapes are the same.

Existing files are kept, so an interrupted run resumes. The shipped ``trust.json`` was fitted on
a cache made with no resizing (``--diameter none``, the default here; the library's predict
default became ``auto`` later). Example::

    nice -n 10 python experiments/trust_cache.py --heldout runs/heldout --cache runs/trust_cache \
        --num-threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from bayescellseg.inference.result import Result
from bayescellseg.inference.segmenter import PredictSettings, Segmenter
from bayescellseg.io.images import read_image, read_label_image
from bayescellseg.metrics.matching import match
from bayescellseg.metrics.segmentation import segmentation_summary
from bayescellseg.postprocess.nuclei import NUCLEUS_COLUMNS

MAP_NAMES = ("probability", "entropy", "aleatoric", "epistemic", "variance", "contour")


def _nucleus_columns(result: Result) -> dict[str, np.ndarray]:
    rows = [r.to_dict() for r in result.nuclei]
    out = {}
    for name in NUCLEUS_COLUMNS:
        values = [np.nan if row[name] is None else row[name] for row in rows]
        out[f"nucleus_{name}"] = np.asarray(values, dtype=np.float64)
    return out


def cache_one(
    seg: Segmenter, image_path: Path, label_path: Path, diameter: float | str | None = None
) -> dict:
    """Predict one image (``diameter`` as :meth:`Segmenter.predict`) and return the arrays."""
    image = read_image(image_path)
    truth = read_label_image(label_path)
    start = time.perf_counter()
    maps = seg.predict_maps(image, PredictSettings(seed=0, diameter=diameter))
    result = seg.segment(maps)
    seconds = time.perf_counter() - start
    stats = maps.samples.bottleneck
    if stats is None:
        raise RuntimeError(f"{image_path}: the network reports no bottleneck statistic")
    scores = segmentation_summary(truth, result.labels).to_dict()
    m = match(truth, result.labels, thresholds=(0.5,))
    record_labels = np.array([r.label for r in result.nuclei], dtype=np.int64)
    if not np.array_equal(np.asarray(m.ids_pred, np.int64), record_labels):
        raise RuntimeError(f"{image_path}: nucleus ids of the match and the records differ")
    summary = {**result.summary_dict(), "seconds": seconds}
    arrays = {name: getattr(result, name).astype(np.float16) for name in MAP_NAMES}
    return {
        **arrays,
        "labels": result.labels.astype(np.uint32),
        **_nucleus_columns(result),
        "summary_json": np.array(json.dumps(summary)),
        "truth_json": np.array(json.dumps(scores)),
        "nucleus_has_match": np.asarray(m.pred_has_match, bool),
        "nucleus_best_iou": np.asarray(m.pred_best_iou, np.float64),
        "bottleneck_mean": stats.mean,
        "bottleneck_std": stats.std,
        "image_shape": np.asarray(image.shape),
    }


def _diameter(text: str) -> float | str | None:
    """``--diameter``: ``none`` -> None, ``auto`` stays, else a number of pixels."""
    return None if text == "none" else text if text == "auto" else float(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heldout", type=Path, required=True)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=None, help="model folder (default bundled)")
    parser.add_argument("--num-threads", type=int, default=1)
    parser.add_argument("--sources", nargs="*", default=None, help="default: every subfolder")
    parser.add_argument("--diameter", default="none",
                        help="'none' (no resizing, as the shipped fit), 'auto' or pixels")  # fmt: skip
    args = parser.parse_args()
    diameter = _diameter(args.diameter)
    torch.set_num_threads(args.num_threads)
    seg = Segmenter.load(args.model)
    sources = args.sources or sorted(p.name for p in args.heldout.iterdir() if p.is_dir())
    for source in sources:
        out = args.cache / source
        out.mkdir(parents=True, exist_ok=True)
        images = sorted((args.heldout / source / "images").iterdir())
        for k, image_path in enumerate(images, 1):
            target = out / f"{image_path.stem}.npz"
            if target.exists():
                continue
            label_path = args.heldout / source / "labels" / f"{image_path.stem}.tif"
            arrays = cache_one(seg, image_path, label_path, diameter)
            partial = target.with_suffix(".partial.npz")
            np.savez_compressed(partial, **arrays)
            partial.rename(target)
            truth = json.loads(str(arrays["truth_json"]))
            print(f"[{source} {k}/{len(images)}] {image_path.stem[:16]}: DSB {truth['dsb']:.3f}",
                  flush=True)  # fmt: skip
    info = {"model": str(seg.source), "heldout": str(args.heldout), "seed": 0,
            "n_samples_effective": seg.n_samples(None), "diameter": diameter}  # fmt: skip
    (args.cache / "cache_info.json").write_text(json.dumps(info, indent=1) + "\n")


if __name__ == "__main__":
    main()
