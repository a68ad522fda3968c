"""Does the bundled model segment H&E better from the hematoxylin channel than from inverted RGB?

For every colour brightfield image of the given folders, the shipped normalisation (percentile
scaling, inverted) is compared with the hematoxylin optical density of ``skimage.color.rgb2hed``
(percentile-scaled, repeated over the three input channels, so nuclei are bright as in
fluorescence); same model, default ``diameter="auto"``, one pass. Prints the mean DSB score of
each per folder. Session 31 (tried and dropped, docs/study.md):

    python experiments/hematoxylin_input.py runs/heldout/tnbc runs/heldout/dsb2018 runs/heldout/monuseg
"""

from __future__ import annotations

import argparse

import numpy as np
from skimage.color import rgb2hed

from bayescellseg.data.normalize import imaging_type, is_colour
from bayescellseg.inference import segmenter as segmenter_module
from bayescellseg.inference.segmenter import Segmenter
from bayescellseg.io.datasets import list_samples
from bayescellseg.metrics.matching import dsb_score

SHIPPED = segmenter_module.normalize


def hematoxylin(image: np.ndarray, mode: str = "auto") -> np.ndarray:
    """Hematoxylin density of a colour brightfield image as a 3-channel [0, 1] image."""
    a = np.asarray(image, np.float32)
    if imaging_type(a) != "brightfield" or not is_colour(a):
        return SHIPPED(image, mode=mode)
    h = rgb2hed(np.clip(a, 0.0, 1.0))[..., 0]
    lo, hi = np.percentile(h, [1.0, 99.8])
    g = np.clip((h - lo) / max(hi - lo, 1e-8), 0.0, 1.0).astype(np.float32)
    return np.repeat(g[..., None], 3, axis=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="annotated folders (H&E images are used)")
    parser.add_argument("--model", default=None, help="model folder (default: the bundled one)")
    args = parser.parse_args()
    seg = Segmenter.load(args.model)
    print("| folder | colour images | inverted RGB (shipped) | hematoxylin |")
    print("|---|---|---|---|")
    for folder in args.folders:
        scores: dict[str, list[float]] = {"rgb": [], "hematoxylin": []}
        for ref in list_samples(folder):
            sample = ref.load()
            if not is_colour(np.asarray(sample.image, np.float32)):
                continue
            for name, fn in (("rgb", SHIPPED), ("hematoxylin", hematoxylin)):
                segmenter_module.normalize = fn  # the Segmenter's one normalisation call
                try:
                    result = seg.predict(sample.image, diameter="auto")
                finally:
                    segmenter_module.normalize = SHIPPED
                scores[name].append(dsb_score(sample.labels, result.labels))
        n = len(scores["rgb"])
        rgb, hem = (f"{np.mean(v):.3f}" if v else "-" for v in scores.values())
        print(f"| {folder} | {n} | {rgb} | {hem} |", flush=True)


if __name__ == "__main__":
    main()
