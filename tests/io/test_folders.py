"""Plain image + label-image folders and layout detection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from bayescellseg.errors import InputError
from bayescellseg.io.datasets import SampleRef, detect_layout, list_samples
from bayescellseg.io.folders import find_image_label_pairs, read_folder_sample, scan_folder
from tests.io.build import write_dsb_sample
from tests.synthetic import synthetic_image, synthetic_labels


def _write_pair(
    image_path: Path, label_path: Path, seed: int = 0, shape: tuple[int, int] = (24, 32)
) -> np.ndarray:
    labels = synthetic_labels(shape, n=3, seed=seed, touching_pair=False, radius=(3, 5))
    image = (synthetic_image(labels, seed=seed)[..., 0] * 255).astype(np.uint8)
    image_path.parent.mkdir(parents=True, exist_ok=True)
    label_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(image_path)
    if label_path.suffix.lower() == ".png":
        Image.fromarray(labels.astype(np.uint16)).save(label_path)
    else:
        tifffile.imwrite(label_path, labels.astype(np.uint16))
    return labels


def test_side_by_side_rule(tmp_path: Path) -> None:
    a = _write_pair(tmp_path / "a.png", tmp_path / "a_labels.tif", seed=1)
    _write_pair(tmp_path / "B.TIF", tmp_path / "B_labels.png", seed=2)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "lonely.jpg")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "orphan_labels.png")
    (tmp_path / ".hidden.png").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("ignored")
    scan = scan_folder(tmp_path)
    assert [(i.name, lab.name) for i, lab in scan.pairs] == [
        ("B.TIF", "B_labels.png"),
        ("a.png", "a_labels.tif"),
    ]
    assert [p.name for p in scan.unlabelled] == ["lonely.jpg"]
    assert [p.name for p in scan.orphan_labels] == ["orphan_labels.png"]
    assert scan.problems == []
    sample = read_folder_sample(tmp_path / "a.png", tmp_path / "a_labels.tif")
    assert sample.id == "a" and sample.source == tmp_path / "a.png" and sample.n_overlap_pixels == 0
    np.testing.assert_array_equal(sample.labels, a)
    assert sample.image.shape == (24, 32, 3)


def test_images_and_labels_subfolders(tmp_path: Path) -> None:
    x = _write_pair(tmp_path / "images" / "x.tif", tmp_path / "labels" / "x.tif")
    _write_pair(tmp_path / "images" / "y.png", tmp_path / "labels" / "y_labels.tif", seed=3)
    assert [(i.name, lab.name) for i, lab in find_image_label_pairs(tmp_path)] == [
        ("x.tif", "x.tif"),
        ("y.png", "y_labels.tif"),
    ]
    assert detect_layout(tmp_path) == "folder"
    refs = list_samples(tmp_path)
    assert [r.id for r in refs] == ["x", "y"] and isinstance(refs[0], SampleRef)
    np.testing.assert_array_equal(refs[0].load().labels, x)


def test_duplicate_names_are_ambiguous(tmp_path: Path) -> None:
    _write_pair(tmp_path / "a.png", tmp_path / "a_labels.png")
    Image.fromarray(np.zeros((24, 32), np.uint8)).save(tmp_path / "a.tif")
    assert any("a.tif: same name as a.png" in p for p in scan_folder(tmp_path).problems)
    with pytest.raises(InputError, match="ambiguous file names"):
        find_image_label_pairs(tmp_path)


def test_size_mismatch_and_no_pairs(tmp_path: Path) -> None:
    _write_pair(tmp_path / "a.png", tmp_path / "a_labels.tif")
    tifffile.imwrite(tmp_path / "a_labels.tif", np.zeros((10, 10), np.uint16))
    with pytest.raises(
        InputError, match=r"a_labels.tif: label image size 10x10 differs from the image's 32x24"
    ):
        read_folder_sample(tmp_path / "a.png", tmp_path / "a_labels.tif")
    empty = tmp_path / "only_images"
    empty.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(empty / "z.png")
    with pytest.raises(InputError, match="no image/label pairs found; expected name"):
        find_image_label_pairs(empty)
    with pytest.raises(InputError, match="dataset folder not found"):
        scan_folder(tmp_path / "absent")


def test_detect_layout_dsb_and_unknown(tmp_path: Path) -> None:
    labels = synthetic_labels((16, 16), n=1, seed=0, touching_pair=False, radius=(3, 4))
    write_dsb_sample(tmp_path / "dsb", "id1", labels)
    assert detect_layout(tmp_path / "dsb") == "dsb"
    refs = list_samples(tmp_path / "dsb")
    assert [r.id for r in refs] == ["id1"] and refs[0].load().labels.max() == 1
    # a single sample folder gets a hint
    with pytest.raises(InputError, match="single DSB sample folder"):
        detect_layout(tmp_path / "dsb" / "id1")
    (tmp_path / "void").mkdir()
    with pytest.raises(InputError) as err:
        list_samples(tmp_path / "void")
    assert "supported layouts: DSB2018" in str(err.value) and "name_labels" in str(err.value)
    with pytest.raises(InputError, match="dataset folder not found"):
        detect_layout(tmp_path / "absent")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(InputError, match="not a folder"):
        detect_layout(tmp_path / "file.png")
