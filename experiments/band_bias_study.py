"""Can one temperature and bias give every source a band ECE <= 0.03?

For each held-out folder, the bundled model's calibrated mean foreground probability is kept on
the boundary band (3 px either side of the true nucleus edges, as ``evaluate`` measures it), at
the default ``diameter="auto"``. An affine map ``sigmoid(a * logit(p) + b)`` is then fitted
(weighted so every source counts the same) on each source alone and on pooled sources, and the
pooled fits are scored cross-fitted: fitted on the even-numbered images of the fitting sources,
scored on the odd ones, and the other way round (a source outside the fit is scored with the
fit on all of the fitting sources' images). ``--enlarge F`` resizes every image and its labels
by F first (as ``diameter_study.py`` does) and ``--limit N`` keeps the first N images of each
folder, to see how the bias moves with the scale ``auto`` runs at. Session 31 (docs/study.md):

    python experiments/band_bias_study.py --data dsb2018=runs/heldout/dsb2018 tnbc=runs/heldout/tnbc \
        koyuncu=runs/heldout/koyuncu monuseg=runs/heldout/monuseg --cache runs/band_cache
    python experiments/band_bias_study.py --data x1=runs/heldout/dsb2018 --limit 40 --cache runs/band_cache
    python experiments/band_bias_study.py --data x2=runs/heldout/dsb2018 --limit 40 --enlarge 2 \
        --cache runs/band_cache
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from diameter_study import rescaled
from scipy.optimize import minimize
from scipy.special import expit, logit

from bayescellseg.inference.arguments import PredictSettings
from bayescellseg.inference.segmenter import Segmenter
from bayescellseg.io.datasets import list_samples
from bayescellseg.metrics.calibration import boundary_band, ece

Band = tuple[np.ndarray, np.ndarray, np.ndarray]  # logits, truth, image index


def band_pixels(
    seg: Segmenter, folder: str, cache: Path, enlarge: float = 1.0, limit: int | None = None
) -> Band:
    """The (logit, truth, image index) of every band pixel of a folder (cached as .npz)."""
    tag = "" if enlarge == 1 and limit is None else f"_x{enlarge:g}_n{limit}"
    path = cache / f"{Path(folder).name}{tag}.npz"
    if not path.exists():
        p, t, img = [], [], []
        for i, ref in enumerate(list_samples(folder)[:limit]):
            sample = ref.load()
            image, labels = rescaled(sample.image, sample.labels, enlarge)
            maps = seg.predict_maps(image, PredictSettings(diameter="auto"))
            band = boundary_band(labels, 3)
            p.append(maps.maps.probability[band].astype(np.float32))
            t.append(labels[band] > 0)
            img.append(np.full(int(band.sum()), i, np.int32))
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, p=np.concatenate(p), t=np.concatenate(t), img=np.concatenate(img))
    d = np.load(path)
    z = logit(np.clip(d["p"].astype(np.float64), 1e-6, 1 - 1e-6))
    return z, d["t"], d["img"]


def fit_affine(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
    """``(a, b)`` minimising the NLL of ``sigmoid(a z + b)``, each part weighted equally."""
    z = np.concatenate([p[0] for p in parts])
    t = np.concatenate([p[1] for p in parts]).astype(np.float64)
    w = np.concatenate([np.full(len(p[0]), 1.0 / max(len(p[0]), 1)) for p in parts])

    def nll(v: np.ndarray) -> tuple[float, np.ndarray]:
        s = v[0] * z + v[1]
        loss = np.sum(w * (np.logaddexp(0.0, s) - t * s))  # -log-likelihood, stable
        r = w * (expit(s) - t)
        return float(loss), np.array([np.sum(r * z), np.sum(r)])

    a, b = minimize(nll, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B").x
    return float(a), float(b)


def cross_fitted_ece(data: dict[str, Band], fitting: list[str]) -> dict[str, float]:
    """Band ECE of every source under a fit on ``fitting``, cross-fitted by image parity."""
    out = {}
    for name, (z, t, img) in data.items():
        q = np.empty_like(z)
        for half in (0, 1):
            parts = [
                (zz[ii % 2 != half], tt[ii % 2 != half]) if s == name else (zz, tt)
                for s, (zz, tt, ii) in data.items()
                if s in fitting
            ]
            a, b = fit_affine(parts)
            m = img % 2 == half
            q[m] = expit(a * z[m] + b)
        out[name] = ece(q, t)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", required=True, help="NAME=FOLDER, held-out images")
    parser.add_argument("--model", default=None, help="model folder (default: the bundled one)")
    parser.add_argument("--cache", type=Path, required=True, help="folder for the band pixels")
    parser.add_argument("--enlarge", type=float, default=1.0, help="resize factor (default 1)")
    parser.add_argument("--limit", type=int, default=None, help="first N images per folder")
    args = parser.parse_args()
    seg = Segmenter.load(args.model)
    folders = dict(item.split("=", 1) for item in args.data)
    data = {
        name: band_pixels(seg, folder, args.cache, args.enlarge, args.limit)
        for name, folder in folders.items()
    }
    names = list(data)
    print("| fit | a | b | " + " | ".join(f"{n} band ECE" for n in names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    now = {n: ece(expit(z), t) for n, (z, t, _) in data.items()}
    print("| shipped calibration | 1 | 0 | " + " | ".join(f"{now[n]:.3f}" for n in names) + " |")
    for name, (z, t, _) in data.items():
        a, b = fit_affine([(z, t)])
        row = [f"{ece(expit(a * z + b), t):.3f} (in-sample)" if n == name else "" for n in names]
        print(f"| {name} alone | {a:.2f} | {b:+.2f} | " + " | ".join(row) + " |")
    for k in range(2, len(names) + 1):
        fitting = names[:k]
        a, b = fit_affine([(data[n][0], data[n][1]) for n in fitting])
        scores = cross_fitted_ece(data, fitting)
        row = " | ".join(f"{scores[n]:.3f}" for n in names)
        print(f"| pooled {' + '.join(fitting)} (cross-fitted) | {a:.2f} | {b:+.2f} | {row} |")


if __name__ == "__main__":
    main()
