"""Which calibration map, fitted on which pixels? Cross-fitted on the validation split.

`bayescellseg calibrate` fits and reports on the same validation images. This experiment gives
held-out figures instead: the validation images (sorted by ID) are split into two halves by
alternating index; each map is fitted on one half and scored on the other, and the two scored
halves are pooled. Maps compared (``p = mean_t sigmoid(z_t / T + b)``):

* ``none``: T = 1, b = 0;
* ``temperature, all pixels`` / ``temperature, band``: T only, fitted on all pixels / on the
  boundary band (within 3 px of a true nucleus boundary);
* ``temperature + bias, all pixels`` / ``temperature + bias, band``: T and b.

The model's outputs are cached per image (``--cache``, float16 logits), so a rerun only refits.

    python experiments/calibration_maps.py --model runs/decoder16 \
        --data ../shared/data/dsb2018/stage1_train --cache runs/calmaps_decoder16 [--samples 0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.special import expit

from bayescellseg.data.normalize import normalize
from bayescellseg.data.selection import select_refs
from bayescellseg.evaluation.temperature import fit_mc_calibration
from bayescellseg.inference.sampling import SamplingOptions, sample_image
from bayescellseg.inference.segmenter import Segmenter, as_float_rgb
from bayescellseg.metrics.calibration import CalibrationAccumulator, boundary_band

MAPS = {  # name: (fit region, fit the bias)
    "none": (None, False),
    "temperature, all pixels": ("all", False),
    "temperature + bias, all pixels": ("all", True),
    "temperature, band": ("band", False),
    "temperature + bias, band": ("band", True),
}


def collect(model: Path, data: Path, cache: Path, n_samples: int | None, seed: int) -> list[Path]:
    """Run the model on every validation image once; cache raw logits and truth per image."""
    seg = Segmenter.load(model)
    refs = select_refs(data, "val", None, seg.extras.get("training") or {})
    options = SamplingOptions(n_samples=n_samples, seed=seed, keep_logits=True)
    cache.mkdir(parents=True, exist_ok=True)
    files = []
    for i, ref in enumerate(refs):
        path = cache / f"{ref.id}.npz"
        files.append(path)
        if path.exists():
            continue
        sample = ref.load()
        image = normalize(as_float_rgb(sample.image, ref.id), mode=seg.config.normalization)
        out = sample_image(seg.model, seg.config, image, options)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, logits=out.foreground_logits, truth=np.asarray(sample.labels, np.uint32))
        tmp.replace(path)
        print(f"[{i + 1}/{len(refs)}] {ref.id}", flush=True)
    return files


Item = tuple[np.ndarray, np.ndarray, np.ndarray]


def load(path: Path) -> Item:
    """(T, H, W) float16 logits, (H, W) bool truth, (H, W) bool boundary band."""
    with np.load(path) as d:
        truth = d["truth"]
        return d["logits"].astype(np.float16), truth > 0, boundary_band(truth, width=3)


def fit(items: list[Item], region: str, bias: bool, cap: int, seed: int) -> tuple[float, float]:
    """Fit ``(T, b)`` on a per-image pixel subsample of ``region``, weighted as in calibrate."""
    rng = np.random.default_rng(seed)
    zs, ys, ws = [], [], []
    for z, y, band in items:
        pool = np.flatnonzero(band) if region == "band" else np.arange(y.size)
        if not pool.size:
            continue
        pick = rng.choice(pool, size=min(cap, pool.size), replace=False)
        zs.append(z.reshape(z.shape[0], -1)[:, pick].astype(np.float32))
        ys.append(y.reshape(-1)[pick])
        ws.append(np.full(pick.size, pool.size / pick.size))
    return fit_mc_calibration(np.concatenate(zs, 1), np.concatenate(ys), np.concatenate(ws), bias)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--cache", type=Path, required=True, help="per-image logits cache")
    parser.add_argument("--samples", type=int, default=None, help="T (default: the model's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fit-pixels", type=int, default=200_000, dest="fit_pixels", help="per half"
    )
    args = parser.parse_args()

    files = collect(args.model, args.data, args.cache, args.samples, args.seed)
    items = [load(path) for path in files]
    halves = [items[0::2], items[1::2]]
    cap = max(1, args.fit_pixels // len(halves[0]))
    rows = {}
    for name, (region, bias) in MAPS.items():
        fitted = [
            (1.0, 0.0) if region is None else fit(h, region, bias, cap, args.seed) for h in halves
        ]
        acc = {"all": CalibrationAccumulator(), "band": CalibrationAccumulator()}
        for (temperature, b), scored in zip(fitted, halves[::-1], strict=True):
            for z, y, band in scored:
                scaled = z.astype(np.float32) / np.float32(temperature) + np.float32(b)
                prob = expit(scaled).mean(axis=0)
                acc["all"].add(prob, y)
                acc["band"].add(prob, y, band)
        res = {k: a.result() for k, a in acc.items()}
        rows[name] = {
            "fits (T, b) per half": [[round(t, 4), round(b, 4)] for t, b in fitted],
            **{f"{m}_{k}": float(getattr(r, m)) for k, r in res.items() for m in ("ece", "nll")},
        }
    print(
        f"\nHeld-out (2-fold cross-fitted) calibration of {args.model}, {len(files)} val images\n"
    )
    print("| map | ECE all | ECE band | NLL all | NLL band | fitted (T, b) per half |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        fits = "; ".join(f"{t:.3f}, {b:+.3f}" for t, b in r["fits (T, b) per half"])
        print(
            f"| {name} | {r['ece_all']:.4f} | {r['ece_band']:.4f} | {r['nll_all']:.4f} "
            f"| {r['nll_band']:.4f} | {fits} |"
        )
    (args.cache / "results.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
