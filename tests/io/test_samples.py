"""The bundled DSB2018 samples: present, unchanged layout, from the validation split."""

from __future__ import annotations

import json
from pathlib import Path

from bayescellseg.data.normalize import imaging_type, is_colour
from bayescellseg.io.dsb import mask_paths, read_dsb_sample
from bayescellseg.samples import sample_ids, sample_root

SPLIT = (
    Path(__file__).resolve().parents[2]
    / "src"
    / "bayescellseg"
    / "data"
    / "splits"
    / "dsb2018_stage1.json"
)


def test_six_samples_in_dsb_layout_and_small() -> None:
    ids = sample_ids()
    assert len(ids) == 6 and ids == sorted(ids)
    total = sum(p.stat().st_size for p in sample_root().rglob("*") if p.is_file())
    assert total < 6_000_000
    for i in ids:
        assert (sample_root() / i / "images" / f"{i}.png").is_file()
        assert mask_paths(sample_root() / i)
    readme = (sample_root().parent / "README.md").read_text()
    assert "CC0" in readme and "BBBC038" in readme and all(i in readme for i in ids)


def test_samples_cover_colour_large_and_grey_fluorescence() -> None:
    samples = [read_dsb_sample(sample_root(), i) for i in sample_ids()]
    assert any(is_colour(s.image) for s in samples)
    assert any(max(s.labels.shape) >= 1000 for s in samples)
    grey_fluo = {
        s.labels.shape
        for s in samples
        if not is_colour(s.image) and imaging_type(s.image) == "fluorescence"
    }
    assert len(grey_fluo) >= 3  # different sizes
    for s in samples:
        assert s.labels.max() == len(mask_paths(s.source))


def test_samples_are_validation_images() -> None:
    split = json.loads(SPLIT.read_text())
    assert set(sample_ids()) <= set(split["val"])
    assert not set(sample_ids()) & set(split["train"])
