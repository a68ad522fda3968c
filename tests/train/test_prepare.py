"""Tests for bayescellseg.train.prepare: sources read, split, weighted, and split.json."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile

from bayescellseg.data.split import SPLIT_FILE
from bayescellseg.errors import InputError
from bayescellseg.train.prepare import prepare_data
from tests.data.test_sources import write_folder
from tests.train.helpers import tiny_config


def _sources(*specs: tuple[str, Path, str]) -> list[dict]:
    return [{"name": n, "path": str(p), "role": r} for n, p, r in specs]


def test_two_sources_split_weighted_and_recorded(tmp_path: Path, caplog) -> None:
    lab = write_folder(tmp_path / "lab", 10)
    one = write_folder(tmp_path / "one", 1, seed=40)
    config = tiny_config(sources=_sources(("lab", lab, "split"), ("one", one, "split")))
    out = tmp_path / "model"
    with caplog.at_level(logging.INFO, logger="bayescellseg.train.prepare"):
        data = prepare_data(config, out, resume=False)
    assert [s.id for s in data.val["lab"]] and data.val["one"] == []
    assert "source one: 1 image(s), none left for validation" in caplog.text
    assert len(data.train) == 8 + 1 and len(data.val["lab"]) == 2
    assert data.weights is not None and sum(data.weights) == pytest.approx(1.0)
    w_one = data.weights[-1]
    assert w_one == pytest.approx(1 / (1 + np.sqrt(8)))  # sqrt(1) : sqrt(8)
    doc = json.loads((out / SPLIT_FILE).read_text())
    assert doc["sources"]["lab"]["n_val"] == 2 and doc["sources"]["one"]["n_val"] == 0
    assert doc["sources"]["one"]["crop_share"] == pytest.approx(w_one, abs=1e-6)
    assert doc["sources"]["lab"]["path"] == str(lab.resolve())
    assert data.provenance["split_file"] == SPLIT_FILE
    assert set(data.provenance["sources"]) == {"lab", "one"}
    # deterministic: the same config gives the same split
    again = prepare_data(config, tmp_path / "model2", resume=False)
    assert [s.id for s in again.val["lab"]] == [s.id for s in data.val["lab"]]


def test_validation_and_training_only_sources(tmp_path: Path) -> None:
    lab = write_folder(tmp_path / "lab", 3)
    extra = write_folder(tmp_path / "extra", 2, seed=20)
    config = tiny_config(sources=_sources(("lab", lab, "train"), ("extra", extra, "val")))
    data = prepare_data(config, tmp_path / "m", resume=False)
    assert len(data.train) == 3 and data.val["lab"] == []
    assert [s.id for s in data.val["extra"]] == ["img0", "img1"]


def test_bad_samples_stop_training_unless_skip_bad(tmp_path: Path) -> None:
    lab = write_folder(tmp_path / "lab", 4)
    tifffile.imwrite(lab / "labels" / "img2.tif", np.zeros((48, 56), np.uint16))
    tifffile.imwrite(lab / "labels" / "img3.tif", np.ones((5, 5), np.uint16))
    config = tiny_config(sources=_sources(("lab", lab, "split")))
    with pytest.raises(InputError) as err:
        prepare_data(config, tmp_path / "m", resume=False)
    text = str(err.value)
    assert "2 sample(s) cannot be used" in text and "skip_bad=True" in text
    assert "img2.tif" in text and "img3.tif" in text
    data = prepare_data(tiny_config(sources=config.sources, skip_bad=True), tmp_path / "m", False)
    ids = {s.id for s in data.train} | {s.id for v in data.val.values() for s in v}
    assert ids == {"img0", "img1"}


def test_resume_reuses_the_stored_split_and_a_given_split_must_match(tmp_path: Path) -> None:
    lab = write_folder(tmp_path / "lab", 6)
    config = tiny_config(sources=_sources(("lab", lab, "split")))
    out = tmp_path / "m"
    first = prepare_data(config, out, resume=False)
    doc = json.loads((out / SPLIT_FILE).read_text())
    doc["sources"]["lab"]["train"], doc["sources"]["lab"]["val"] = ["img0"], ["img1", "img2"]
    (out / SPLIT_FILE).write_text(json.dumps(doc))
    resumed = prepare_data(config, out, resume=True)
    assert [s.id for s in resumed.train] == ["img0"] != [s.id for s in first.train]
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"train": ["img0", "nope"], "val": ["img1"]}))
    with pytest.raises(InputError, match="image IDs of the split plain.json are missing"):
        prepare_data(tiny_config(sources=config.sources, split=str(plain)), tmp_path / "x", False)


def test_no_sources_and_doubled_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no training data; give data=FOLDER"):
        prepare_data(tiny_config(), tmp_path / "m", resume=False)
    lab = write_folder(tmp_path / "lab", 2)
    doubled = _sources(("lab", lab, "split"), ("lab", lab, "val"))
    with pytest.raises(InputError, match="^data: two sources are named 'lab'"):
        prepare_data(tiny_config(sources=doubled), tmp_path / "m", resume=False)


def test_resume_rewrites_split_json_unchanged(tmp_path: Path) -> None:
    lab = write_folder(tmp_path / "lab", 6)
    config = tiny_config(sources=_sources(("lab", lab, "split")))
    out = tmp_path / "m"
    first = prepare_data(config, out, resume=False)
    before = (out / SPLIT_FILE).read_text()
    again = prepare_data(config, out, resume=True)
    assert (out / SPLIT_FILE).read_text() == before
    assert again.provenance["split_sha256"] == first.provenance["split_sha256"]
