"""The DSB2018 layout: mask combination, overlaps and every broken-sample case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bayescellseg.errors import InputError
from bayescellseg.io.dsb import list_dsb_ids, mask_paths, read_dsb_sample, read_masks
from tests.io.build import write_dsb_sample
from tests.synthetic import synthetic_labels


def test_round_trip_of_synthetic_labels(tmp_path: Path) -> None:
    labels = synthetic_labels((48, 64), n=6, seed=3)
    write_dsb_sample(tmp_path, "abc", labels)
    sample = read_dsb_sample(tmp_path, "abc")
    assert sample.id == "abc" and sample.source == tmp_path / "abc" and sample.n_overlap_pixels == 0
    assert sample.image.shape == (48, 64, 3) and sample.image.dtype == np.float32
    assert sample.labels.dtype == np.uint32
    # mask files m001.png ... are written in label order, so the labels come back unchanged
    np.testing.assert_array_equal(sample.labels, labels)
    np.testing.assert_allclose(sample.image[..., 0], np.where(labels > 0, 200, 20) / 255, atol=1e-7)


def test_overlap_goes_to_first_mask_in_sorted_order_and_is_counted(tmp_path: Path) -> None:
    folder = tmp_path / "s" / "masks"
    folder.mkdir(parents=True)
    (tmp_path / "s" / "images").mkdir()
    Image.fromarray(np.zeros((3, 4), np.uint8)).save(tmp_path / "s" / "images" / "s.png")
    a = np.zeros((3, 4), np.uint8)
    a[0:2, 0:3] = 255  # 6 pixels
    b = np.zeros((3, 4), np.uint8)
    b[1:3, 2:4] = 1  # 4 pixels, one of them ((1, 2)) shared with a
    Image.fromarray(b).save(folder / "b.png")  # written first, but sorts second
    Image.fromarray(a).save(folder / "a.png")
    sample = read_dsb_sample(tmp_path, "s")
    expected = np.array([[1, 1, 1, 0], [1, 1, 1, 2], [0, 0, 2, 2]], np.uint32)
    np.testing.assert_array_equal(sample.labels, expected)
    assert sample.n_overlap_pixels == 1


def test_rgba_and_16bit_masks_use_the_slow_path(tmp_path: Path) -> None:
    m16 = np.zeros((5, 5), np.uint16)
    m16[1:3, 1:3] = 65535
    rgba = np.zeros((5, 5, 4), np.uint8)
    rgba[4, :, 0] = 255
    rgba[..., 3] = 255
    Image.fromarray(m16).save(tmp_path / "m1.png")
    Image.fromarray(rgba).save(tmp_path / "m2.png")
    labels, overlap = read_masks([tmp_path / "m1.png", tmp_path / "m2.png"], (5, 5))
    assert overlap == 0
    assert (labels == 1).sum() == 4 and (labels == 2).sum() == 5 and labels[4, 0] == 2


def test_list_ids_sorted_and_grey_image_becomes_rgb(tmp_path: Path) -> None:
    for name in ("b", "a", "c"):
        write_dsb_sample(
            tmp_path,
            name,
            synthetic_labels((16, 16), n=1, seed=0, touching_pair=False, radius=(3, 4)),
        )
    (tmp_path / "notes").mkdir()  # no images/: not a sample
    Image.fromarray(np.full((16, 16), 9, np.uint8)).save(tmp_path / "a" / "images" / "a.png")
    assert list_dsb_ids(tmp_path) == ["a", "b", "c"]
    assert read_dsb_sample(tmp_path, "a").image.shape == (16, 16, 3)


def test_differently_named_single_image_is_accepted(tmp_path: Path) -> None:
    labels = synthetic_labels((16, 16), n=1, seed=0, touching_pair=False, radius=(3, 4))
    write_dsb_sample(tmp_path, "x", labels)
    (tmp_path / "x" / "images" / "x.png").rename(tmp_path / "x" / "images" / "other.png")
    assert read_dsb_sample(tmp_path, "x").labels.max() == 1
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "x" / "images" / "third.png")
    with pytest.raises(InputError, match=r"x\.png: image not found"):
        read_dsb_sample(tmp_path, "x")


def _one_sample(tmp_path: Path) -> Path:
    labels = np.zeros((8, 8), np.uint32)
    labels[1:4, 1:4], labels[5:7, 5:7] = 1, 2
    return write_dsb_sample(tmp_path, "s", labels)


def test_missing_masks_folder(tmp_path: Path) -> None:
    folder = _one_sample(tmp_path)
    for p in (folder / "masks").iterdir():
        p.unlink()
    with pytest.raises(InputError, match="masks/ folder holds no PNG masks"):
        read_dsb_sample(tmp_path, "s")
    (folder / "masks").rmdir()
    with pytest.raises(InputError) as err:
        read_dsb_sample(tmp_path, "s")
    assert err.value.path == str(folder / "masks") and "missing masks/ folder" in err.value.problem


def test_empty_mask(tmp_path: Path) -> None:
    folder = _one_sample(tmp_path)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "masks" / "m002.png")
    with pytest.raises(InputError) as err:
        read_dsb_sample(tmp_path, "s")
    assert (
        err.value.path == str(folder / "masks" / "m002.png")
        and "mask is empty" in err.value.problem
    )


def test_mask_size_differs_from_image(tmp_path: Path) -> None:
    folder = _one_sample(tmp_path)
    Image.fromarray(np.full((8, 9), 255, np.uint8)).save(folder / "masks" / "m001.png")
    with pytest.raises(InputError, match=r"m001.png: mask size 9x8 differs from the image's 8x8"):
        read_dsb_sample(tmp_path, "s")


def test_corrupt_mask_and_corrupt_image(tmp_path: Path) -> None:
    folder = _one_sample(tmp_path)
    (folder / "masks" / "m002.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    with pytest.raises(InputError, match=r"m002.png: cannot decode image"):
        read_dsb_sample(tmp_path, "s")
    (folder / "images" / "s.png").write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"s.png: cannot decode image"):
        read_dsb_sample(tmp_path, "s")


def test_grey_alpha_image_is_fine_animated_image_is_refused(tmp_path: Path) -> None:
    folder = _one_sample(tmp_path)
    Image.fromarray(np.full((8, 8), 90, np.uint8)).convert("LA").save(folder / "images" / "s.png")
    assert read_dsb_sample(tmp_path, "s").image.shape == (8, 8, 3)
    frames = [Image.fromarray(np.full((8, 8), v, np.uint8)) for v in (0, 255)]
    frames[0].save(folder / "images" / "s.png", save_all=True, append_images=frames[1:])
    with pytest.raises(InputError, match=r"s.png: image has 2 frames; supported: 2D"):
        read_dsb_sample(tmp_path, "s")


def test_missing_root_or_no_samples(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="dataset folder not found"):
        list_dsb_ids(tmp_path / "absent")
    with pytest.raises(InputError, match="no DSB2018 sample folders"):
        list_dsb_ids(tmp_path)


def test_real_data_counts(dsb_root: Path) -> None:
    ids = list_dsb_ids(dsb_root)
    assert len(ids) == 670
    assert sum(len(mask_paths(dsb_root / i)) for i in ids) == 29_461
    chosen = ids[::134]
    for sample_id in chosen:
        sample = read_dsb_sample(dsb_root, sample_id)
        assert sample.labels.shape == sample.image.shape[:2]
        assert len(np.unique(sample.labels)) - 1 == len(mask_paths(dsb_root / sample_id))
