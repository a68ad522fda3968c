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
* OOD AUROC of the left-out source against the fitting sources' out-of-fold distances, and
  the combined rule's (image features or bottleneck statistic above its threshold; ranked by
  ``ood_level``, the larger distance over its threshold) AUROC and flagged shares;

then the in-distribution (out-of-fold, all sources) figures, the tie count, and with ``--ship``
fits on all images and writes ``trust.json`` into the model folder (with the bottleneck OOD
model, since every cached image carries its bottleneck statistic). Example::

    python experiments/trust_study.py --cache runs/trust_cache --ship src/bayescellseg/pretrained/nuclei
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from bayescellseg.inference.result import PredictionInfo, Result
from bayescellseg.metrics.uncertainty import auroc
from bayescellseg.postprocess.agreement import tie_broken_uncertainty
from bayescellseg.postprocess.nuclei import NUCLEUS_COLUMNS, ImageSummary, NucleusRecord
from bayescellseg.trust.conformal import conformal_quantile, conformal_selection
from bayescellseg.trust.features import image_features, nucleus_features
from bayescellseg.trust.fit import (
    FitOptions,
    TrustData,
    assign_folds,
    fit_bottleneck_ood,
    fit_trust,
    out_of_fold_p_correct,
    out_of_fold_scores,
)
from bayescellseg.trust.measures import (
    budget_measures,
    nucleus_measures,
    review_measures,
    score_measures,
)
from bayescellseg.trust.model import save_trust
from bayescellseg.trust.ood import Mahalanobis, out_of_fold_distances

SOURCE_LICENCES = {
    "dsb2018": "CC0 (BBBC038)",
    "koyuncu": "none stated; research use, cite Koyuncu et al. (Bilkent)",
    "tnbc": "CC BY 4.0 as far as known (Naylor et al. 2018, Zenodo 1175282)",
    "monuseg": "CC BY-NC-SA 4.0 (fitting on it makes the file inherit that licence)",
}
MAPS = ("probability", "entropy", "aleatoric", "epistemic", "variance", "contour")
INT_COLUMNS = ("label", "area")


def _summary_and_info(stored: dict) -> tuple[ImageSummary, PredictionInfo]:
    """The ImageSummary and PredictionInfo of a cached ``summary_json`` (None: NaN)."""
    values = {f.name: stored[f.name] for f in dataclasses.fields(ImageSummary)}
    values = {k: float("nan") if v is None else tuple(v) if k == "reasons" else v
              for k, v in values.items()}  # fmt: skip
    info = PredictionInfo(n_samples=stored["n_samples"], tta=stored.get("tta", False),
                          diameter=stored.get("diameter"), scale=stored.get("scale", 1.0),
                          precision=stored.get("precision", "fp32"))  # fmt: skip
    return ImageSummary(**values), info


def load_result(path: Path) -> tuple[Result, dict, np.ndarray, dict]:
    """The cached Result, truth scores, nucleus match flags and extras of one image."""
    d = np.load(path)
    summary, info = _summary_and_info(json.loads(str(d["summary_json"])))
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
        summary=summary,
        info=info,
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
            s = result.summary_dict()
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
        bottleneck=np.array(base["bottleneck"], np.float64),
    )
    baselines = {k: np.concatenate([np.asarray(v, np.float64) for v in vals])
                 if k == "nucleus_uncertainty" else np.asarray(vals)
                 for k, vals in base.items()}  # fmt: skip
    return data, baselines


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _pca(z: np.ndarray, k: int) -> np.ndarray:
    """(k, d) top principal directions of centred rows ``z``."""
    _, _, vt = np.linalg.svd(z - z.mean(0), full_matrices=False)
    return vt[:k]


def ood_variants(data: TrustData, base: dict, test: np.ndarray, folds: np.ndarray) -> dict:
    """OOD AUROC of the left-out source against the fitting images' out-of-fold distances.

    Variants: the image features (shipped, shrinkage 0.1); the bottleneck statistics (mean and
    std of each of the 256 channels, member-averaged; shrinkage 0.5, and diagonal); the image
    features plus the top 10 principal components of the bottleneck statistics (shrinkage 0.1).
    All standardised on the fitting images only.
    """
    is_test = np.r_[np.zeros((~test).sum(), bool), np.ones(test.sum(), bool)]

    def auc(fit_x: np.ndarray, test_x: np.ndarray, shrinkage: float) -> float:
        mu, sd = fit_x.mean(0), fit_x.std(0) + 1e-9
        zf, zt = (fit_x - mu) / sd, (test_x - mu) / sd
        oof = out_of_fold_distances(zf, folds, shrinkage)
        d = Mahalanobis.fit(zf, shrinkage).distance(zt)
        return auroc(np.r_[oof, d], is_test)

    img, bott = data.image_x, base["bottleneck"]
    mu, sd = bott[~test].mean(0), bott[~test].std(0) + 1e-9
    zb = (bott - mu) / sd
    directions = _pca(zb[~test], 10)
    combined = np.column_stack([img, zb @ directions.T])
    return {
        "image": auc(img[~test], img[test], 0.1),
        "bottleneck": auc(bott[~test], bott[test], 0.5),
        "bottleneck_diag": auc(bott[~test], bott[test], 1.0),
        "image+bottleneck_pca10": auc(combined[~test], combined[test], 0.1),
    }


def combined_ood(trust, fit_data: TrustData, test_data: TrustData, folds, options) -> dict:
    """The shipped combined OOD rule: either distance above its threshold; AUROC of
    ``ood_level`` (the larger distance over its threshold) of the left-out images against the
    fitting images' out-of-fold levels, and the flagged shares of both."""
    img = trust.ood
    oof_img = out_of_fold_distances(img.standardizer(fit_data.image_x), folds, options.shrinkage)
    test_img = img.distance(test_data.image_x)
    second = trust.ood_bottleneck
    oof_b = fit_bottleneck_ood(fit_data, folds, options)[1]
    test_b = second.distance(test_data.bottleneck)
    fit_level = np.maximum(oof_img / img.threshold, oof_b / second.threshold)
    test_level = np.maximum(test_img / img.threshold, test_b / second.threshold)
    fit_flag = (oof_img > img.threshold) | (oof_b > second.threshold)
    test_flag = (test_img > img.threshold) | (test_b > second.threshold)
    is_test = np.r_[np.zeros(fit_level.size, bool), np.ones(test_level.size, bool)]
    return {"auroc": auroc(np.r_[fit_level, test_level], is_test),
            "flagged": float(np.mean(test_flag)), "flagged_fit_oof": float(np.mean(fit_flag)),
            "bottleneck_threshold": float(second.threshold)}  # fmt: skip


def loso_row(
    data: TrustData, base: dict, test_source: str, options: FitOptions, qs: list[float]
) -> dict:
    """Fit on every source but ``test_source``; every measure on ``test_source``."""
    test = data.sources == test_source
    fit_data, test_data = data.subset(~test), data.subset(test)
    if set(fit_data.image_ids) & set(test_data.image_ids):
        raise AssertionError("a test image is among the fitting images")
    trust = fit_trust(fit_data, options)
    pred, lo, hi = trust.scores["dsb"].predict(test_data.image_x)
    ap, ap_lo, ap_hi = trust.scores["ap50"].predict(test_data.image_x)
    true = test_data.scores["dsb"]
    cal = trust.scores["dsb"]
    p_correct = trust.nucleus.predict_proba(test_data.nucleus_x)
    nuc_test = test[data.nucleus_image]
    folds = assign_folds(fit_data.sources, options.n_folds, options.seed)
    oof_d = out_of_fold_distances(
        trust.ood.standardizer(fit_data.image_x), folds, options.shrinkage
    )
    test_d = trust.ood.distance(test_data.image_x)
    ood = ood_variants(data, base, test, folds)
    return {
        "source": test_source,
        "score": score_measures(pred, lo, hi, true),
        "ap50": score_measures(ap, ap_lo, ap_hi, test_data.scores["ap50"]),
        "old_mae": float(np.mean(np.abs(base["predicted_quality"][test] - true))),
        "review": {
            q: review_measures(cal.review_rule(q, 0.1, 0.1).flags(pred), true, q, 0.1) for q in qs
        },
        "selection": {
            q: review_measures(
                conformal_selection(pred, cal.calibration_predicted, cal.calibration_true, q, 0.1),
                true,
                q,
                0.1,
            )
            for q in qs
        },  # fmt: skip
        "budget": budget_measures(pred, true, 0.2),
        "budget_old": budget_measures(-base["uncertainty"][test], true, 0.2),
        "nucleus": nucleus_measures(p_correct, test_data.nucleus_correct),
        "nucleus_old_auroc": auroc(
            base["nucleus_uncertainty"][nuc_test], ~data.nucleus_correct[nuc_test]
        ),
        "ood_auroc": ood,
        "ood_combined": combined_ood(trust, fit_data, test_data, folds, options),
        "ood_flagged": float(np.mean(test_d > trust.ood.threshold)),
        "ood_flagged_fit_oof": float(np.mean(oof_d > trust.ood.threshold)),
        "n_fit": int(fit_data.sources.size),
        "model": {
            k: (v["features"], v["ridge_alpha"])
            for k, v in trust.provenance["score_model_selection"].items()
        },  # fmt: skip
    }


def print_loso(rows: list[dict], qs: list[float]) -> None:
    """Markdown tables of the leave-one-source-out rows."""
    rule_heads = " | ".join(f"q={q} {k}: unflagged / realised" for q in qs
                            for k in ("LTT rule", "selection"))  # fmt: skip
    print("\n| left-out source | images | DSB | predicted DSB MAE (old) | Pearson | 90 % coverage "
          f"| width | AP50 MAE / coverage | {rule_heads} | review 0.2: oracle gain share (old) "
          "| score model |")  # fmt: skip
    print("|---" * (9 + 2 * len(qs)) + "|")
    for r in rows:
        s, a, b, bo = r["score"], r["ap50"], r["budget"], r["budget_old"]
        rules = " | ".join(
            f"{r[k][q]['n_unflagged']} / {_fmt(r[k][q]['realised_rate'])}"
            for q in qs for k in ("review", "selection"))  # fmt: skip
        sel = r["model"]["dsb"]
        print(f"| {r['source']} | {s['n_images']} | {_fmt(b['mean_all'])} | {_fmt(s['mae'])} ({_fmt(r['old_mae'])}) "
              f"| {_fmt(s['pearson'])} | {_fmt(s['coverage'])} | {_fmt(s['mean_width'])} "
              f"| {_fmt(a['mae'])} / {_fmt(a['coverage'])} | {rules} "
              f"| {_fmt(b['oracle_gain_share'])} ({_fmt(bo['oracle_gain_share'])}) | {sel[0]}, alpha {sel[1]:g} |")  # fmt: skip
    print(
        "\n| left-out source | nuclei | p_correct ECE | nucleus-error AUROC p_correct (old) "
        "| OOD AUROC: image features / bottleneck / bottleneck diagonal / image + bottleneck PCA "
        "| OOD flagged (image features): left-out / fitting (oof) "
        "| combined rule (shipped): OOD AUROC / flagged left-out / fitting (oof) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        n, o, c = r["nucleus"], r["ood_auroc"], r["ood_combined"]
        print(f"| {r['source']} | {n['n_nuclei']} | {_fmt(n['ece'])} | {_fmt(n['error_auroc'])} "
              f"({_fmt(r['nucleus_old_auroc'])}) | {_fmt(o['image'])} / {_fmt(o['bottleneck'])} / "
              f"{_fmt(o['bottleneck_diag'])} / {_fmt(o['image+bottleneck_pca10'])} "
              f"| {_fmt(r['ood_flagged'])} / {_fmt(r['ood_flagged_fit_oof'])} "
              f"| {_fmt(c['auroc'])} / {_fmt(c['flagged'])} / {_fmt(c['flagged_fit_oof'])} |")  # fmt: skip


def print_in_distribution(data: TrustData, base: dict, options: FitOptions) -> None:
    """Out-of-fold figures with every source among the fitting images (5 random folds).

    The score model is the one selected for shipping (on all four sources); its interval is
    calibrated on the same random folds, i.e. on images of the same sources.
    """
    trust = fit_trust(data, options)
    selected = trust.provenance["score_model_selection"]["dsb"]
    folds = assign_folds(data.sources, options.n_folds, options.seed)
    oof = np.clip(out_of_fold_scores(data, "dsb", folds, selected["ridge_alpha"],
                                     trust.scores["dsb"].features), 0, 1)  # fmt: skip
    y = data.scores["dsb"]
    half = conformal_quantile(np.abs(y - oof), options.alpha)
    p_oof = out_of_fold_p_correct(data, folds, options.logistic_alpha)
    print(f"\nIn distribution (5 random folds over all sources; score model {selected['features']}, "
          f"alpha {selected['ridge_alpha']:g}; interval half-width {half:.3f}):")  # fmt: skip
    print("| source | images | MAE (old) | Pearson | 90 % coverage | review 0.2: oracle gain share (old) "
          "| p_correct ECE | nucleus-error AUROC p_correct (old) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name in [*np.unique(data.sources), None]:
        keep = np.ones(y.size, bool) if name is None else data.sources == name
        nuc = keep[data.nucleus_image]
        m = score_measures(
            oof[keep], np.clip(oof[keep] - half, 0, 1), np.clip(oof[keep] + half, 0, 1), y[keep]
        )
        b = budget_measures(oof[keep], y[keep], 0.2)["oracle_gain_share"]
        bo = budget_measures(-base["uncertainty"][keep], y[keep], 0.2)["oracle_gain_share"]
        n = nucleus_measures(p_oof[nuc], data.nucleus_correct[nuc])
        old_auc = auroc(base["nucleus_uncertainty"][nuc], ~data.nucleus_correct[nuc])
        old_mae = np.mean(np.abs(base["predicted_quality"][keep] - y[keep]))
        print(f"| {name or 'all'} | {m['n_images']} | {_fmt(m['mae'])} ({_fmt(old_mae)}) | {_fmt(m['pearson'])} "
              f"| {_fmt(m['coverage'])} | {_fmt(b)} ({_fmt(bo)}) | {_fmt(n['ece'])} "
              f"| {_fmt(n['error_auroc'])} ({_fmt(old_auc)}) |")  # fmt: skip


def half_split_rules(data: TrustData, options: FitOptions, qs: list[float], repeats: int) -> None:
    """The shipped procedure on held-out images of the same sources: fit on a random half of
    every source, test on the other half; ``repeats`` splits (seeds 0..repeats-1)."""
    rows = {q: [] for q in qs}
    cover, mae = [], []
    for r in range(repeats):
        rng = np.random.default_rng(1000 + r)
        half = np.zeros(data.sources.size, bool)
        for name in np.unique(data.sources):
            idx = np.flatnonzero(data.sources == name)
            half[rng.permutation(idx)[: idx.size // 2]] = True
        fit_data, test_data = data.subset(half), data.subset(~half)
        cal = fit_trust(fit_data, options).scores["dsb"]
        pred, lo, hi = cal.predict(test_data.image_x)
        true = test_data.scores["dsb"]
        cover.append(np.mean((true >= lo) & (true <= hi)))
        mae.append(np.mean(np.abs(pred - true)))
        for q in qs:
            sel = conformal_selection(pred, cal.calibration_predicted, cal.calibration_true, q, 0.1)
            ltt = cal.review_rule(q, 0.1, 0.1).flags(pred)
            rows[q].append((review_measures(sel, true, q, 0.1), review_measures(ltt, true, q, 0.1)))
    print(f"\nHalf splits ({repeats} random halves of every source; fit on one, test on the other, "
          f"{(~half).sum()} test images): MAE {np.mean(mae):.3f}, 90 % coverage {np.mean(cover):.3f}")  # fmt: skip
    print(
        "| q | selection: mean unflagged / realised rate (pooled) / splits >= 0.88 | LTT rule: mean unflagged / realised rate (pooled) |"
    )
    print("|---|---|---|")
    for q in qs:
        sel = [a for a, _ in rows[q]]
        ltt = [b for _, b in rows[q]]

        def pooled(ms: list[dict]) -> float:
            kept = sum(m["n_unflagged"] for m in ms)
            good = sum(
                m["n_unflagged"] * (m["realised_rate"] if m["n_unflagged"] else 0) for m in ms
            )
            return good / kept if kept else float("nan")

        ok = (
            np.mean([m["realised_rate"] >= 0.88 for m in sel if m["n_unflagged"]])
            if any(m["n_unflagged"] for m in sel)
            else float("nan")
        )
        print(f"| {q} | {np.mean([m['n_unflagged'] for m in sel]):.1f} / {_fmt(pooled(sel))} / {_fmt(ok)} "
              f"| {np.mean([m['n_unflagged'] for m in ltt]):.1f} / {_fmt(pooled(ltt))} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--min-quality", type=float, nargs="+", default=[0.4, 0.6])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=20, help="random half splits")
    parser.add_argument("--calibration", choices=("fold", "source"), default="fold",
                        help="calibration predictions from random folds or other sources")  # fmt: skip
    parser.add_argument(
        "--ship", type=Path, default=None, help="model folder to write trust.json into"
    )
    parser.add_argument("--ship-sources", nargs="+", default=["dsb2018", "koyuncu", "tnbc"],
                        help="sources the shipped trust.json is fitted on (default leaves out "
                        "MoNuSeg, CC BY-NC-SA: see ../shared/data/README.md)")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="write the LOSO rows here")
    args = parser.parse_args()
    options = FitOptions(seed=args.seed, calibration=args.calibration)
    data, base = load_cache(args.cache)
    names, counts = np.unique(data.sources, return_counts=True)
    print("images per source:", dict(zip(names.tolist(), counts.tolist(), strict=True)))
    rows = [loso_row(data, base, name, options, args.min_quality) for name in names]
    print_loso(rows, args.min_quality)
    print_in_distribution(data, base, options)
    half_split_rules(data, options, args.min_quality, args.repeats)
    print(f"\nimages with uncertainty exactly 0 and >= 1 nucleus: before {int(base['tie_zero_before'].sum())}, "
          f"after tie-breaking {int(base['tie_zero_after'].sum())} (of {data.sources.size})")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=float) + "\n")
    if args.ship:
        ship(data, args, options)


def ship(data: TrustData, args: argparse.Namespace, options: FitOptions) -> None:
    """Fit on the held-out images of ``--ship-sources`` and write ``trust.json``."""
    info = json.loads((args.cache / "cache_info.json").read_text())
    info["model"] = Path(info["model"]).name
    keep = np.isin(data.sources, args.ship_sources)
    record = {"command": " ".join(["python", *sys.argv]), "cache": info,
              "fitted_on": "held-out images only",
              "licences": {k: SOURCE_LICENCES[k] for k in args.ship_sources}}  # fmt: skip
    trust = fit_trust(data.subset(keep), options, record)
    print(f"wrote {save_trust(trust, args.ship)} (fitted on {int(keep.sum())} images of "
          f"{', '.join(args.ship_sources)})")  # fmt: skip


if __name__ == "__main__":
    main()
