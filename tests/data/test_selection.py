"""One selection rule for evaluate and calibrate: the model's own split part, or every image."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from bayescellseg.data.selection import select_refs
from bayescellseg.errors import InputError
from bayescellseg.evaluation.run import EvaluateOptions
from bayescellseg.inference.segmenter import Segmenter
from bayescellseg.model.build import build_model
from bayescellseg.model.config import ModelConfig
from bayescellseg.model.store import save_model
from bayescellseg.pipelines.calibrate import CalibrateOptions, calibrate_model
from bayescellseg.pipelines.evaluate import evaluate_model
from tests.data.test_sources import write_dsb

IDS = ["s0", "s1", "s2", "s3", "s4"]


@pytest.fixture
def trained_on_a_split(tmp_path: Path) -> tuple[Path, Path]:
    """A model folder whose split.json (written by training) keeps s1 and s3 for validation."""
    root = write_dsb(tmp_path / "data", IDS)
    config = ModelConfig(base_channels=4, depth=2, n_samples=2)
    split = {"format": 2, "sources": {"data": {"path": str(root), "role": "split",
             "train": ["s0", "s2", "s4"], "val": ["s1", "s3"]}}}  # fmt: skip
    text = json.dumps(split)
    training = {"split_sha256": hashlib.sha256(text.encode()).hexdigest()}
    model = save_model(tmp_path / "model", build_model(config), config, {"training": training})
    (model / "split.json").write_text(text)
    return model, root


def test_val_is_the_models_own_validation_split(trained_on_a_split) -> None:
    model, root = trained_on_a_split
    training = Segmenter.load(model).extras["training"]
    assert [r.id for r in select_refs(root, "val", model, training)] == ["s1", "s3"]
    assert [r.id for r in select_refs(root, "train", model, training, limit=2)] == ["s0", "s2"]
    assert [r.id for r in select_refs(root, None, model, training)] == IDS
    other = model.parent / "other.json"
    other.write_text(json.dumps({"train": IDS[:3], "val": IDS[3:]}))
    with pytest.raises(InputError, match="trained with another split"):
        select_refs(root, "val", model, training, split_file=other)
    with pytest.raises(InputError, match="^split: unknown split 'test'"):
        select_refs(root, "test", model, training)
    with pytest.raises(InputError, match="^limit: must be at least 1"):
        select_refs(root, None, model, training, limit=0)


def test_evaluate_and_calibrate_score_the_same_validation_images(trained_on_a_split) -> None:
    model, root = trained_on_a_split
    seg = Segmenter.load(model)
    out = model.parent / "report"
    evaluate_model(seg, [root], out, EvaluateOptions(split="val"))
    rows = (out / "per_image.csv").read_text().splitlines()[1:]
    assert sorted(r.split(",")[1] for r in rows) == ["s1", "s3"]
    report = calibrate_model(seg, root, CalibrateOptions(split="val", write=False))
    assert report.n_images == 2 and report.split == "val"
    expected = hashlib.sha256(b"s1\ns3").hexdigest()
    assert report.to_extras()["image_ids_sha256"] == expected
