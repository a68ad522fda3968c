"""The bottleneck OOD model end to end: predict writes its columns, evaluate --pred reads them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bayescellseg.inference.segmenter import Segmenter
from bayescellseg.pipelines.evaluate import evaluate_predictions
from bayescellseg.pipelines.predict import TRUSTED_SUMMARY_COLUMNS, PredictOptions, predict_batch
from bayescellseg.prediction_folder import SUMMARY_CSV
from bayescellseg.trust.fit import fit_trust
from bayescellseg.trust.model import load_trust, save_trust
from tests.pipelines.test_predict import read_csv, write_images
from tests.trust.synthetic_data import synthetic_trust_data


def test_predict_writes_the_bottleneck_columns_and_evaluate_reads_them(
    tmp_path: Path, model_factory
) -> None:
    model = model_factory()  # base 4, depth 2: a bottleneck of 16 channels, a statistic of 32
    save_trust(fit_trust(synthetic_trust_data(60, seed=1, bottleneck_dim=32)), model)
    trust = load_trust(model)
    images = write_images(tmp_path / "in", n=2, corrupt=False)
    out = tmp_path / "out"
    summary = predict_batch(Segmenter.load(model), images, out, PredictOptions(n_samples=2))
    assert summary.n_ok == 2
    assert {"ood_bottleneck_score", "ood_level"} <= set(TRUSTED_SUMMARY_COLUMNS)
    rows = {row["image"]: row for row in read_csv(out / SUMMARY_CSV)}
    for name, row in rows.items():
        stored = json.loads((out / f"{name}_summary.json").read_text())
        d1, d2 = stored["ood_score"], stored["ood_bottleneck_score"]
        assert math.isfinite(d2) and float(row["ood_bottleneck_score"]) == pytest.approx(
            d2, rel=1e-5
        )
        level = max(d1 / trust.ood.threshold, d2 / trust.ood_bottleneck.threshold)
        assert stored["ood_level"] == pytest.approx(level)
        flagged = d1 > trust.ood.threshold or d2 > trust.ood_bottleneck.threshold
        assert stored["ood"] is flagged
    metrics = evaluate_predictions(out, tmp_path / "in", tmp_path / "report")
    per_image = {row["image"]: row for row in read_csv(tmp_path / "report" / "per_image.csv")}
    for name, row in rows.items():
        assert float(per_image[name]["ood_level"]) == pytest.approx(
            float(row["ood_level"]), rel=1e-5
        )
        assert float(per_image[name]["ood_bottleneck_score"]) == pytest.approx(
            float(row["ood_bottleneck_score"]), rel=1e-5
        )
    assert metrics["trust"]["available"]
