"""Trust-signal study (issue 21): fit on some sources, test on a source never used in fitting.

Reads the cache of ``experiments/trust_cache.py`` (one model run over the held-out folders of
``experiments/heldout_folders.py``), rebuilds each image's Result, computes the trust features,
and prints, per left-out source (leave-one-source-out: every trust model is fitted on the other
sources only):

* predicted vs true DSB score: MAE, Pearson, interval coverage and width (with the old
  ``predicted_quality`` MAE beside it), and AP50 the same way;
* the ``--min-quality`` rule: realised share of unflagged images scoring >= q, at the stated 90 %;
* ``--review-fraction 0.2``: share of the oracle's gain in mean DSB of the kept images (with the
  old image-uncertainty ranking beside it);
* ``p_correct`` ECE and nucleus-error AUROC (old nucleus uncertainty beside it);
* OOD AUROC of the left-out source against the fitting sources' out-of-fold distances;

then the in-distribution (out-of-fold, all sources) figures, the tie count, and with ``--ship``
fits on all images and writes ``trust.json`` into the model folder. Example::

    python experiments/trust_study.py --cache runs/trust_cache --ship src/bayescellseg/pretrained/nuclei
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from bayescellseg.inference.segmenter import Result
from bayescellseg.inference.uncertainty import tie_broken_uncertainty
from bayescellseg.metrics.uncertainty import auroc
from bayescellseg.postprocess.nuclei import NUCLEUS_COLUMNS, NucleusRecord
from bayescellseg.trust.features import image_features, nucleus_features
from bayescellseg.trust.fit import (
    FitOptions,
    TrustData,
    assign_folds,
    fit_trust,
    out_of_fold_scores,
)
from bayescellseg.trust.measures import (
    budget_measures,
    nucleus_measures,
    review_measures,
    score_measures,
)
from bayescellseg.trust.model import save_trust
from bayescellseg.trust.ood import out_of_fold_distances

MAPS = ("probability", "entropy", "aleatoric", "epistemic", "variance", "contour")
INT_COLUMNS = ("label", "area")


def load_result(path: Path) -> tuple[Result, dict, np.ndarray, dict]:
    """The cached Result, truth scores, nucleus match flags and extras of one image."""
    d = np.load(path)
    records = []
    for i in range(d["nucleus_label"].size):
        values = {c: d[f"nucleus_{c}"][i] for c in NUCLEUS_COLUMNS}
        values = {c: int(v) if c in INT_COLUMNS else bool(v) if c == "needs_review" else float(v)
                  for c, v in values.items()}  # fmt: skip
        records.append(NucleusRecord(**values))
    result = Result(
        **{m: d[m].astype(np.float32) for m in MAPS},
        labels=d["labels"],
        nuclei=records,
        summary=json.loads(str(d["summary_json"])),
    )
    extras = {"bottleneck": np.concatenate([d["bottleneck_mean"].mean(0),
                                            d["bottleneck_std"].mean(0)])}  # fmt: skip
    return result, json.loads(str(d["truth_json"])), d["nucleus_has_match"].copy(), extras


def load_cache(cache: Path) -> tuple[TrustData, dict[str, np.ndarray]]:
    """TrustData of every cached image, plus per-image baselines and bottleneck features."""
    ids, sources, xs, dsb, ap50 = [], [], [], [], []
    nx, nimg, ncorr = [], [], []
    base = {"predicted_quality": [], "uncertainty": [], "nucleus_uncertainty": [],
            "bottleneck": [], "tie_zero_before": [], "tie_zero_after": []}  # fmt: skip
    for source_dir in sorted(p for p in cache.iterdir() if p.is_dir()):
        for path in sorted(source_dir.glob("*.npz")):
            if path.name.endswith(".partial.npz"):
                continue
            result, truth, has_match, extras = load_result(path)
            x = image_features(result)
            index = len(ids)
            ids.append(f"{source_dir.name}/{path.stem}")
            sources.append(source_dir.name)
            xs.append(x)
            dsb.append(truth["dsb"])
            ap50.append(truth["ap50"])
            nuc = nucleus_features(result, x)
            nx.append(nuc)
            nimg.append(np.full(len(nuc), index))
            ncorr.append(has_match)
            s = result.summary
            base["predicted_quality"].append(s["predicted_quality"])
            base["uncertainty"].append(s["uncertainty"])
            base["nucleus_uncertainty"].append([r.uncertainty for r in result.nuclei])
            base["bottleneck"].append(extras["bottleneck"])
            has_nuclei = s["n_nuclei"] > 0
            base["tie_zero_before"].append(has_nuclei and s["uncertainty"] == 0.0)
            after = tie_broken_uncertainty(
                1.0 - s["predicted_quality"], s["mean_entropy"], s["n_nuclei"]
            )
            base["tie_zero_after"].append(has_nuclei and after == 0.0)
            base.setdefault("uncertainty_after", []).append(after)
    data = TrustData(
        image_ids=np.array(ids),
        sources=np.array(sources),
        image_x=np.array(xs),
        scores={"dsb": np.array(dsb), "ap50": np.array(ap50)},
        nucleus_x=np.concatenate(nx),
        nucleus_image=np.concatenate(nimg).astype(np.int64),
        nucleus_correct=np.concatenate(ncorr).astype(bool),
    )
    baselines = {k: np.concatenate([np.asarray(v, np.float64) for v in vals])
                 if k == "nucleus_uncertainty" else np.asarray(vals)
                 for k, vals in base.items()}  # fmt: skip
    return data, baselines


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def loso_row(data: TrustData, base: dict, test_source: str, options: FitOptions, q: float) -> dict:
    """Fit on every source but ``test_source``; every measure on ``test_source``."""
    test = data.sources == test_source
    fit_data, test_data = data.subset(~test), data.subset(test)
    if set(fit_data.image_ids) & set(test_data.image_ids):
        raise AssertionError("a test image is among the fitting images")
    trust = fit_trust(fit_data, options)
    pred, lo, hi = trust.scores["dsb"].predict(test_data.image_x)
    ap, ap_lo, ap_hi = trust.scores["ap50"].predict(test_data.image_x)
    true = test_data.scores["dsb"]
    p_correct = trust.nucleus.predict_proba(test_data.nucleus_x)
    nuc_test = test[data.nucleus_image]
    rule = trust.scores["dsb"].review_rule(q, alpha=0.1, delta=0.1)
    folds = assign_folds(fit_data.sources, options.n_folds, options.seed)
    z_fit = trust.ood.standardizer(fit_data.image_x)
    oof_d = out_of_fold_distances(z_fit, folds, options.shrinkage)
    test_d = trust.ood.distance(test_data.image_x)
    is_test = np.r_[np.zeros(oof_d.size, bool), np.ones(test_d.size, bool)]
    bott = base["bottleneck"]
    b_fit, b_test = bott[~test], bott[test]
    b_mu, b_sd = b_fit.mean(0), b_fit.std(0) + 1e-6
    b_oof = out_of_fold_distances((b_fit - b_mu) / b_sd, folds, 0.5)
    from bayescellseg.trust.ood import Mahalanobis

    b_d = Mahalanobis.fit((b_fit - b_mu) / b_sd, 0.5).distance((b_test - b_mu) / b_sd)
    return {
        "source": test_source,
        "score": score_measures(pred, lo, hi, true),
        "ap50": score_measures(ap, ap_lo, ap_hi, test_data.scores["ap50"]),
        "old_mae": float(np.mean(np.abs(base["predicted_quality"][test] - true))),
        "review": review_measures(pred, true, rule),
        "budget": budget_measures(pred, true, 0.2),
        "budget_old": budget_measures(-base["uncertainty"][test], true, 0.2),
        "nucleus": nucleus_measures(p_correct, test_data.nucleus_correct),
        "nucleus_old_auroc": auroc(
            base["nucleus_uncertainty"][nuc_test], ~data.nucleus_correct[nuc_test]
        ),
        "ood_auroc": auroc(np.r_[oof_d, test_d], is_test),
        "ood_flagged": float(np.mean(test_d > trust.ood.threshold)),
        "ood_flagged_fit_oof": float(np.mean(oof_d > trust.ood.threshold)),
        "ood_auroc_bottleneck": auroc(np.r_[b_oof, b_d], is_test),
        "n_fit": int(fit_data.sources.size),
    }


def print_loso(rows: list[dict], q: float) -> None:
    """Markdown tables of the leave-one-source-out rows."""
    print(
        "\n| left-out source | images | DSB | predicted DSB MAE (old) | Pearson | 90 % coverage | width "
        f"| AP50 MAE / coverage | rule q={q}: unflagged / realised rate | review 0.2: oracle gain share (old) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        s, a, rv, b, bo = r["score"], r["ap50"], r["review"], r["budget"], r["budget_old"]
        print(f"| {r['source']} | {s['n_images']} | {_fmt(b['mean_all'])} | {_fmt(s['mae'])} ({_fmt(r['old_mae'])}) "
              f"| {_fmt(s['pearson'])} | {_fmt(s['coverage'])} | {_fmt(s['mean_width'])} "
              f"| {_fmt(a['mae'])} / {_fmt(a['coverage'])} | {rv['n_unflagged']} / {_fmt(rv['realised_rate'])} "
              f"| {_fmt(b['oracle_gain_share'])} ({_fmt(bo['oracle_gain_share'])}) |")  # fmt: skip
    print(
        "\n| left-out source | nuclei | p_correct ECE | nucleus-error AUROC p_correct (old) "
        "| OOD AUROC image features / bottleneck | OOD flagged: left-out / fitting (oof) |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        n = r["nucleus"]
        print(f"| {r['source']} | {n['n_nuclei']} | {_fmt(n['ece'])} | {_fmt(n['error_auroc'])} "
              f"({_fmt(r['nucleus_old_auroc'])}) | {_fmt(r['ood_auroc'])} / {_fmt(r['ood_auroc_bottleneck'])} "
              f"| {_fmt(r['ood_flagged'])} / {_fmt(r['ood_flagged_fit_oof'])} |")  # fmt: skip


def print_in_distribution(data: TrustData, options: FitOptions, q: float) -> None:
    """Out-of-fold figures with every source in the fitting set (held-out images, no shift)."""
    folds = assign_folds(data.sources, options.n_folds, options.seed)
    oof = out_of_fold_scores(data, "dsb", folds, options.ridge_alpha)
    trust = fit_trust(data, options)
    half = trust.scores["dsb"].half_width
    print(f"\nIn distribution (5-fold out-of-fold, all sources; interval half-width {half:.3f}):")
    print("| source | images | MAE | Pearson | coverage |")
    print("|---|---|---|---|---|")
    for name in [*np.unique(data.sources), None]:
        keep = np.ones(data.sources.size, bool) if name is None else data.sources == name
        p = np.clip(oof[keep], 0, 1)
        m = score_measures(
            p, np.clip(p - half, 0, 1), np.clip(p + half, 0, 1), data.scores["dsb"][keep]
        )
        print(
            f"| {name or 'all'} | {m['n_images']} | {_fmt(m['mae'])} | {_fmt(m['pearson'])} | {_fmt(m['coverage'])} |"
        )
    del q


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--min-quality", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--ship", type=Path, default=None, help="model folder to write trust.json into"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the LOSO rows here")
    args = parser.parse_args()
    options = FitOptions(seed=args.seed)
    data, base = load_cache(args.cache)
    names, counts = np.unique(data.sources, return_counts=True)
    print("images per source:", dict(zip(names.tolist(), counts.tolist(), strict=True)))
    rows = [loso_row(data, base, name, options, args.min_quality) for name in names]
    print_loso(rows, args.min_quality)
    print_in_distribution(data, options, args.min_quality)
    print(f"\nimages with uncertainty exactly 0 and >= 1 nucleus: before {int(base['tie_zero_before'].sum())}, "
          f"after tie-breaking {int(base['tie_zero_after'].sum())} (of {data.sources.size})")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=float) + "\n")
    if args.ship:
        info = json.loads((args.cache / "cache_info.json").read_text())
        trust = fit_trust(data, options, {"command": " ".join(["python", *sys.argv]),
                                          "cache": info, "fitted_on": "held-out images only"})  # fmt: skip
        print(f"wrote {save_trust(trust, args.ship)}")


if __name__ == "__main__":
    main()
