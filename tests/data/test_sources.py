"""Tests for bayescellseg.data.sources: reading training sources, labels, groups and weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from bayescellseg.data.dataset import CropDataset
from bayescellseg.data.sources import (
    SourceSpec,
    build_sources,
    load_source,
    parse_source,
    read_groups,
    source_weights,
)
from bayescellseg.errors import InputError
from tests.synthetic import synthetic_image, synthetic_labels


def write_folder(root: Path, n: int, size: tuple[int, int] = (48, 56), seed: int = 0) -> Path:
    """``root/images/imgK.png`` + ``root/labels/imgK.tif``, ``n`` synthetic pairs."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for k in range(n):
        labels = synthetic_labels(size, n=3, seed=seed + k, radius=(4.0, 7.0))
        image = (synthetic_image(labels, seed=seed + k) * 255).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"img{k}.png")
        tifffile.imwrite(root / "labels" / f"img{k}.tif", labels.astype(np.uint16))
    return root


def write_dsb(root: Path, ids: list[str]) -> Path:
    for i, sample_id in enumerate(ids):
        labels = synthetic_labels((40, 40), n=3, seed=i, radius=(4.0, 7.0))
        image = (synthetic_image(labels, seed=i) * 255).astype(np.uint8)
        (root / sample_id / "images").mkdir(parents=True)
        (root / sample_id / "masks").mkdir()
        Image.fromarray(image).save(root / sample_id / "images" / f"{sample_id}.png")
        for lab in np.unique(labels)[1:]:
            mask = ((labels == lab) * 255).astype(np.uint8)
            Image.fromarray(mask).save(root / sample_id / "masks" / f"m{lab:03d}.png")
    return root


def test_parse_and_build_sources(tmp_path: Path) -> None:
    assert parse_source("some/where/lab1/") == SourceSpec(name="lab1", path="some/where/lab1/")
    assert parse_source("tnbc=../data/x", "val") == SourceSpec("tnbc", "../data/x", role="val")
    specs = build_sources(
        ["a=/d/a", "/d/b"],
        val_data=["/d/c"],
        labels=["a=/fixed"],
        groups=["b=/d/b/index.tsv:patient"],
        weights=["c=0.25"],
    )
    assert [(s.name, s.role) for s in specs] == [("a", "split"), ("b", "split"), ("c", "val")]
    assert specs[0].labels == "/fixed"
    assert (specs[1].groups, specs[1].group_column) == ("/d/b/index.tsv", "patient")
    assert specs[2].weight == 0.25
    with pytest.raises(InputError, match=r"^labels: 'zz=/x': no source is named 'zz'"):
        build_sources(["/d/a"], labels=["zz=/x"])
    with pytest.raises(InputError, match="^weights: 'a' must be given as NAME=VALUE"):
        build_sources(["/d/a"], weights=["a"])
    with pytest.raises(InputError, match="^groups: 'b=x.csv': no source is named 'b'"):
        build_sources(["/d/a"], groups=["b=x.csv"])
    with pytest.raises(InputError, match="weight must be > 0"):
        build_sources(["/d/a"], weights=["a=-1"])


def test_load_folder_source_reads_every_pair(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "lab", 3)
    loaded = load_source(SourceSpec("lab", str(root)))
    assert [s.id for s in loaded.samples] == ["img0", "img1", "img2"]
    assert loaded.problems == [] and loaded.groups is None
    assert loaded.samples[0].image.shape == (48, 56, 3)
    expected = tifffile.imread(root / "labels" / "img0.tif")
    np.testing.assert_array_equal(loaded.samples[0].labels, expected)


def test_label_override_replaces_the_labels(tmp_path: Path) -> None:
    root = write_dsb(tmp_path / "dsb", ["a", "b", "c"])
    fixed = tmp_path / "fixed"
    fixed.mkdir()
    corrected = np.zeros((40, 40), np.uint16)
    corrected[5:15, 5:15] = 1
    tifffile.imwrite(fixed / "a.tif", corrected)
    tifffile.imwrite(fixed / "b.tif", corrected * 2)
    own = load_source(SourceSpec("dsb", str(root)), cache_dir=tmp_path / "cache")
    assert len(own.samples) == 3 and own.samples[0].labels.max() >= 2  # its own masks
    loaded = load_source(SourceSpec("dsb", str(root), labels=str(fixed)))
    assert [s.id for s in loaded.samples] == ["a", "b"]  # c has no corrected label image
    np.testing.assert_array_equal(loaded.samples[0].labels, corrected)
    np.testing.assert_array_equal(loaded.samples[1].labels, corrected * 2)
    assert any("1 images have no label image" in n for n in loaded.notes)
    with pytest.raises(InputError, match="label folder of source 'dsb' not found"):
        load_source(SourceSpec("dsb", str(root), labels=str(tmp_path / "nowhere")))


def test_bad_pairs_are_problems_naming_the_file(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "lab", 4)
    tifffile.imwrite(root / "labels" / "img1.tif", np.ones((10, 10), np.uint16))  # wrong shape
    tifffile.imwrite(root / "labels" / "img2.tif", np.full((48, 56), 0.5, np.float32))
    tifffile.imwrite(root / "labels" / "img3.tif", np.zeros((48, 56), np.uint16))  # empty
    loaded = load_source(SourceSpec("lab", str(root)))
    assert [s.id for s in loaded.samples] == ["img0"]
    text = "\n".join(loaded.problems)
    assert len(loaded.problems) == 3
    assert "img1.tif" in text and "differs from the image's 56x48" in text
    assert "img2.tif" in text and "non-integer" in text
    assert "img3.tif" in text and "holds no nuclei" in text


def test_a_source_without_images_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "labels").mkdir()
    with pytest.raises(InputError, match="no dataset found|holds no image"):
        load_source(SourceSpec("empty", str(tmp_path / "empty")))
    with pytest.raises(InputError, match="not found"):
        load_source(SourceSpec("gone", str(tmp_path / "gone")))


def test_groups_from_index_tsv_and_from_a_user_csv(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "tnbc", 4)
    (root / "index.tsv").write_text(
        "id\theight\tpatient\nimg0\t48\tp1\nimg1\t48\tp1\nimg2\t48\tp2\nimg3\t48\tp3\n"
    )
    loaded = load_source(SourceSpec("tnbc", str(root)))
    assert loaded.groups == {"img0": "p1", "img1": "p1", "img2": "p2", "img3": "p3"}
    assert any("grouped by 'patient'" in n for n in loaded.notes)
    table = tmp_path / "slides.csv"
    table.write_text("image,slide\nimg0,s1\nimg3,s1\n")
    groups, column = read_groups(table, "slide", ["img0", "img1", "img3"])
    assert column == "slide" and groups["img0"] == groups["img3"] == "s1"
    assert groups["img1"] != "s1"  # not in the table: a group of its own
    with pytest.raises(InputError, match="needs a column"):
        read_groups(table, "patient", ["img0"])


def test_source_weights_default_sqrt_and_explicit_shares() -> None:
    w = source_weights({"big": 600, "small": 30})
    assert w["small"] == pytest.approx(np.sqrt(30) / (np.sqrt(30) + np.sqrt(600)))
    assert sum(w.values()) == pytest.approx(1.0)
    w = source_weights({"big": 600, "small": 30, "mid": 100}, {"small": 0.3})
    assert w["small"] == pytest.approx(0.3)
    assert w["big"] / w["mid"] == pytest.approx(np.sqrt(6))
    assert source_weights({"a": 10, "b": 10}, {"a": 2.0, "b": 1.0}) == pytest.approx(
        {"a": 2 / 3, "b": 1 / 3}
    )
    assert source_weights({"a": 10, "val_only": 0})["val_only"] == 0.0
    with pytest.raises(ValueError, match="no source"):
        source_weights({"a": 0})


def test_drawn_crops_follow_the_source_weights(tmp_path: Path) -> None:
    big = load_source(SourceSpec("big", str(write_folder(tmp_path / "big", 12)))).samples
    small = load_source(SourceSpec("small", str(write_folder(tmp_path / "s", 2, seed=50)))).samples
    share = source_weights({"big": len(big), "small": len(small)}, {"small": 0.4})
    weights = [share["big"] / len(big)] * len(big) + [share["small"] / len(small)] * len(small)
    data = CropDataset([*big, *small], crop=32, seed=3, length=4000, weights=weights)
    drawn = np.array([data.image_index(i) for i in range(4000)])
    from_small = np.mean(drawn >= len(big))
    assert abs(from_small - 0.4) < 3 * np.sqrt(0.4 * 0.6 / 4000)  # within 3 standard errors
    # the crop an index gives comes from the image image_index names
    item = data[7]
    assert item[0].shape == (3, 32, 32)


def test_a_multichannel_training_image_names_no_channel_flag(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "lab", 2)
    image = next((root / "images").glob("img1.*"))
    image.unlink()
    tifffile.imwrite(
        root / "images" / "img1.tif", np.zeros((2, 48, 56), np.uint16), metadata={"axes": "CYX"}
    )
    loaded = load_source(SourceSpec("lab", str(root)))
    assert [s.id for s in loaded.samples] == ["img0"]
    (problem,) = loaded.problems
    assert problem.startswith(f"{root / 'images' / 'img1.tif'}: image has 2 channels; training")
    assert "save the nuclear channel as an image of its own" in problem
    assert "channel=" not in problem and "--channel" not in problem
