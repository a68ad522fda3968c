"""Which per-nucleus score best detects wrong nuclei? Compared on the validation split.

For every predicted nucleus of the validation images (model defaults: MC sampling, calibrated
maps, tuned watershed), this records area, mean probability, mean entropy, mean mutual
information, stability, the image uncertainty and whether it is an error (no true nucleus at
IoU > 0.5). It prints the error-detection AUROC of single scores and simple combinations, and
of a logistic regression on all features, fitted on half the images (alternating by ID) and
scored on the other half, and then the other way round.

The features are cached in ``--cache`` (a .npy file), so a rerun only re-scores.

    python experiments/nucleus_scores.py --model runs/decoder16_ft \
        --data ../shared/data/dsb2018/stage1_train --cache runs/nucfeat_ft.npy
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.stats import rankdata

from bayescellseg.data.normalize import imaging_type
from bayescellseg.data.selection import select_refs
from bayescellseg.inference.segmenter import Segmenter, as_float_rgb
from bayescellseg.postprocess.tune import nucleus_errors

COLUMNS = (
    "image",
    "area",
    "prob",
    "entropy",
    "mi",
    "stability",
    "error",
    "brightfield",
    "image_unc",
)


def collect(model: Path, data: Path, cache: Path) -> np.ndarray:
    """One row per predicted nucleus, in ``COLUMNS`` order (cached)."""
    if cache.exists():
        return np.load(cache)
    seg = Segmenter.load(model)
    refs = select_refs(data, "val", None, seg.extras.get("training") or {})
    rows = []
    for k, ref in enumerate(refs):
        sample = ref.load()
        result = seg.predict(sample.image)
        errors = nucleus_errors(sample.labels, result.labels)
        bright = float(imaging_type(as_float_rgb(sample.image)) == "brightfield")
        for rec, err in zip(result.nuclei, errors, strict=True):
            rows.append(
                (k, rec.area, rec.mean_probability, rec.mean_entropy,
                 rec.mean_mutual_information, rec.stability, float(err), bright,
                 result.summary.uncertainty)
            )  # fmt: skip
        print(f"{k + 1}/{len(refs)} {ref.id}", flush=True)
    table = np.array(rows)
    np.save(cache, table)
    return table


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for ``positive`` (ties count half)."""
    ranks = rankdata(score)
    n1 = int(positive.sum())
    n0 = len(positive) - n1
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def fit_logistic(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Weights of an L2-regularised (1e-3) logistic regression; ``x`` includes a constant."""

    def nll(w: np.ndarray) -> float:
        z = x @ w
        return float(np.sum(np.logaddexp(0.0, z) - y * z) + 1e-3 * w @ w)

    return minimize(nll, np.zeros(x.shape[1]), method="L-BFGS-B").x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--cache", type=Path, required=True)
    args = parser.parse_args()
    image, area, prob, ent, mi, stab, err, _, image_unc = collect(
        args.model, args.data, args.cache
    ).T
    y = err.astype(bool)
    print(f"{len(y)} predicted nuclei, {int(y.sum())} errors\n")
    scores = {
        "1 - stability (the product's score)": 1 - stab,
        "mean entropy": ent,
        "mean mutual information": mi,
        "1 - mean probability": 1 - prob,
        "-log area": -np.log(area),
        "image uncertainty": image_unc,
        "1 - stability + entropy": (1 - stab) + ent,
        "1 - stability x mean probability": 1 - stab * prob,
    }
    print("| score | error AUROC |\n|---|---|")
    for name, s in scores.items():
        print(f"| {name} | {auroc(s, y):.3f} |")
    x = np.column_stack([1 - stab, ent, mi, np.log(area), prob, image_unc, np.ones_like(area)])
    half = image % 2 == 0
    held_out = np.zeros(len(y))
    for fold in (True, False):
        w = fit_logistic(x[half == fold], y[half == fold])
        held_out[half != fold] = x[half != fold] @ w
    print(
        f"| logistic regression on all six, 2-fold held out by image | {auroc(held_out, y):.3f} |"
    )


if __name__ == "__main__":
    main()
