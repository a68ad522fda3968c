"""evaluate measures the trust signals against truth (``metrics.json["trust"]``, report, CSV)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from bayescellseg.evaluation.run import EvaluateOptions
from bayescellseg.inference.segmenter import Segmenter
from bayescellseg.model.store import bundled_model_path
from bayescellseg.pipelines.evaluate import evaluate_model, evaluate_predictions
from bayescellseg.trust.model import load_trust
from bayescellseg.trust.signals import review_batch
from tests.pipelines.test_evaluate import read_rows, square, write_dsb, write_prediction

SIGNALS = {
    # good: perfect prediction (true DSB 1.0, inside its interval); bad: its one nucleus misses
    # the true one (true DSB 0.0, below its interval)
    "good": {"predicted_score": 0.8, "predicted_score_low": 0.6, "predicted_score_high": 1.0,
             "ood_score": 1.5, "ood": False},
    "bad": {"predicted_score": 0.3, "predicted_score_low": 0.1, "predicted_score_high": 0.5,
            "ood_score": 7.0, "ood": True},
}  # fmt: skip
P_CORRECT = {"good": {1: 0.9, 2: 0.7, 3: 0.8}, "bad": {1: 0.4}}


def _nuclei_csv(path: Path, p_correct: dict[int, float]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["label", "area", "uncertainty", "p_correct"])
        for label, p in p_correct.items():
            writer.writerow([label, 16, 1 - p, p])


def trusted_folder(root: Path, signals: bool = True) -> tuple[Path, Path]:
    """Truth and a predict folder of two 40x40 images, with or without the trust fields."""
    truth, pred = root / "truth", root / "pred"
    shape = (40, 40)
    good = square(shape, 2, 2, 6, 1)
    good = square(shape, 20, 4, 6, 2, into=good)
    good = square(shape, 10, 25, 6, 3, into=good)
    write_dsb(truth, "good", good)
    write_prediction(pred, "good", good, (good > 0).astype(np.float32))
    truth_bad = square(shape, 2, 2, 6, 1)
    write_dsb(truth, "bad", truth_bad)
    write_prediction(pred, "bad", square(shape, 25, 25, 6, 1), np.zeros(shape, np.float32))
    for name in ("good", "bad"):
        if signals:
            path = pred / f"{name}_summary.json"
            path.write_text(json.dumps({**json.loads(path.read_text()), **SIGNALS[name]}))
            _nuclei_csv(pred / f"{name}_nuclei.csv", P_CORRECT[name])
    return truth, pred


def test_pred_folder_trust_fields_give_the_hand_computed_measures(tmp_path):
    truth, pred = trusted_folder(tmp_path)
    out = tmp_path / "report"
    metrics = evaluate_predictions(pred, truth, out, EvaluateOptions(review_fraction=0.5))
    trust = metrics["trust"]
    assert trust["available"] and trust["n_images"] == 2
    score = trust["overall"]["score"]
    assert score["mae"] == pytest.approx((0.2 + 0.3) / 2)
    assert score["bias"] == pytest.approx((-0.2 + 0.3) / 2)
    assert score["coverage"] == pytest.approx(0.5)
    assert score["mean_width"] == pytest.approx(0.4)
    nucleus = trust["overall"]["nucleus"]
    assert nucleus["n_nuclei"] == 4 and nucleus["accuracy"] == pytest.approx(0.75)
    assert nucleus["ece"] == pytest.approx((0.1 + 0.3 + 0.2 + 0.4) / 4)  # one nucleus per bin
    assert nucleus["error_auroc"] == pytest.approx(1.0)
    assert trust["overall"]["ood_flagged"] == pytest.approx(0.5)
    assert trust["overall"]["budget"]["oracle_gain_share"] == pytest.approx(1.0)
    assert trust["ood_threshold"] is None  # no run_config.json: the trust model is unknown
    rows = {r["image"]: r for r in read_rows(out / "per_image.csv")}
    assert float(rows["bad"]["predicted_score_low"]) == pytest.approx(0.1)
    assert float(rows["good"]["ood_score"]) == pytest.approx(1.5)
    assert rows["bad"]["ood"] == "True" and float(rows["bad"]["dsb"]) == 0.0
    html = (out / "report.html").read_text()
    assert "Trust signals against truth" in html and "Reliability of the nucleus p_correct" in html
    assert "predicted DSB score 0.300 [0.100, 0.500]; OOD" in html  # the gallery's subtitle
    for name in ("trust_scores.png", "trust_reliability.png", "trust_ood.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_min_quality_rule_uses_the_trust_file_of_the_predicting_model(tmp_path):
    truth, pred = trusted_folder(tmp_path)
    (pred / "run_config.json").write_text(json.dumps({"model": str(bundled_model_path())}))
    options = EvaluateOptions(min_quality=0.5, review_alpha=0.2)
    metrics = evaluate_predictions(pred, truth, tmp_path / "report", options)
    trust = load_trust(bundled_model_path())
    flags = review_batch(np.array([0.3, 0.8]), trust, min_quality=0.5, alpha=0.2).flagged
    np.testing.assert_array_equal(flags, [True, False])  # bad flagged, good certified
    review = metrics["trust"]["overall"]["review"]
    assert (review["n_flagged"], review["n_unflagged"]) == (1, 1)
    assert review["realised_rate"] == 1.0  # the unflagged image scores 1.0 >= 0.5
    assert metrics["trust"]["ood_threshold"] == pytest.approx(trust.ood.threshold)
    assert "DSB score >= 0.5" in metrics["trust"]["review_statement"]


def test_without_trust_fields_the_report_says_they_are_absent(tmp_path):
    truth, pred = trusted_folder(tmp_path, signals=False)
    out = tmp_path / "report"
    metrics = evaluate_predictions(pred, truth, out)
    assert metrics["trust"]["available"] is False
    assert "predicted_score" not in read_rows(out / "per_image.csv")[0]
    assert "Trust signals are absent" in (out / "report.html").read_text()
    assert not (out / "trust_scores.png").exists()


def test_model_run_on_two_bundled_samples_writes_the_trust_block(tmp_path):
    samples = Path(__file__).resolve().parents[2] / "src" / "bayescellseg" / "samples" / "dsb2018"
    out = tmp_path / "report"
    options = EvaluateOptions(limit=2, min_quality=0.5)
    metrics = evaluate_model(Segmenter.load(None), [samples], out, options)
    trust = metrics["trust"]
    assert trust["available"] and trust["n_images"] == 2 and trust["n_images_without"] == 0
    rows = read_rows(out / "per_image.csv")
    predicted = np.array([float(r["predicted_score"]) for r in rows])
    low = np.array([float(r["predicted_score_low"]) for r in rows])
    high = np.array([float(r["predicted_score_high"]) for r in rows])
    dsb = np.array([float(r["dsb"]) for r in rows])
    score = trust["overall"]["score"]
    assert score["mae"] == pytest.approx(np.mean(np.abs(predicted - dsb)), abs=1e-5)
    assert score["coverage"] == np.mean((dsb >= low) & (dsb <= high))
    assert np.all((low <= predicted) & (predicted <= high))
    assert trust["overall"]["nucleus"]["n_nuclei"] == sum(int(r["n_pred"]) for r in rows)
    assert trust["overall"]["review"]["n_flagged"] + trust["overall"]["review"]["n_unflagged"] == 2
    config = json.loads((out / "evaluate_config.json").read_text())
    assert config["trust"].endswith("trust.json")


def test_cli_flags_reach_the_trust_block(tmp_path, capsys):
    from bayescellseg.cli import main

    truth, pred = trusted_folder(tmp_path)
    (pred / "run_config.json").write_text(json.dumps({"model": str(bundled_model_path())}))
    out = tmp_path / "r"
    base = ["evaluate", "--pred", str(pred), "--truth", str(truth), "--out", str(out)]
    assert main([*base, "--min-quality", "0.5", "--review-alpha", "0.2",
                 "--review-fraction", "0.5"]) == 0  # fmt: skip
    trust = json.loads((out / "metrics.json").read_text())["trust"]
    assert (trust["min_quality"], trust["alpha"], trust["review_fraction"]) == (0.5, 0.2, 0.5)
    assert trust["overall"]["review"]["n_flagged"] == 1
    with pytest.raises(SystemExit):
        main([*base, "--overwrite", "--review-alpha", "1.5"])
    assert "--review-alpha" in capsys.readouterr().err
