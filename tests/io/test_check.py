"""``check_dataset`` lists every problem and keeps going; ``format_report`` summarises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from bayescellseg.io.check import check_dataset, format_report
from bayescellseg.samples import sample_ids, sample_root
from tests.io.build import png_header_only, write_dsb_sample


def _labels(shape: tuple[int, int] = (12, 12)) -> np.ndarray:
    labels = np.zeros(shape, np.uint32)
    labels[1:4, 1:4], labels[6:9, 6:10] = 1, 2
    return labels


def _broken_dsb(root: Path) -> None:
    write_dsb_sample(root, "good", _labels())
    (write_dsb_sample(root, "nomasks", _labels()) / "masks").rename(root / "nomasks" / "masks_old")
    bad = write_dsb_sample(root, "badmasks", _labels())
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(bad / "masks" / "m003.png")  # empty
    Image.fromarray(np.full((12, 13), 255, np.uint8)).save(bad / "masks" / "m004.png")  # wrong size
    (bad / "masks" / "m005.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")  # corrupt
    (write_dsb_sample(root, "badimage", _labels()) / "images" / "badimage.png").write_bytes(b"junk")
    (write_dsb_sample(root, "bomb", _labels()) / "images" / "bomb.png").write_bytes(
        png_header_only(50_000, 50_000)
    )
    covered = write_dsb_sample(root, "covered", _labels())
    whole = np.full((12, 12), 255, np.uint8)
    Image.fromarray(whole).save(covered / "masks" / "a_all.png")  # sorts first, covers both others
    (root / "stray").mkdir()


def test_dsb_check_lists_every_problem(tmp_path: Path) -> None:
    _broken_dsb(tmp_path)
    report = check_dataset(tmp_path)
    text = "\n".join(report.problems)
    assert report.layout == "dsb" and report.n_images == 6 and report.n_readable == 2
    expected = [
        f"{tmp_path / 'stray'}: folder has no images/ subfolder",
        f"{tmp_path / 'nomasks' / 'masks'}: missing masks/ folder",
        f"{tmp_path / 'badmasks' / 'masks' / 'm003.png'}: mask is empty",
        f"{tmp_path / 'badmasks' / 'masks' / 'm004.png'}: mask size 13x12 differs from the image's 12x12",
        f"{tmp_path / 'badmasks' / 'masks' / 'm005.png'}: cannot decode image",
        f"{tmp_path / 'badimage' / 'images' / 'badimage.png'}: cannot decode image",
        f"{tmp_path / 'bomb' / 'images' / 'bomb.png'}: declared image size",
        f"{tmp_path / 'covered' / 'masks' / 'm001.png'}: mask lies entirely under earlier masks",
        f"{tmp_path / 'covered' / 'masks' / 'm002.png'}: mask lies entirely under earlier masks",
    ]
    for line in expected:
        assert line in text, line
    assert len(report.problems) == len(expected)
    # good: 2 nuclei; covered: only a_all survives -> 1 nucleus, 9 + 12 overlapping pixels
    assert report.nuclei_per_image == {"covered": 1, "good": 2}
    assert report.nuclei_stats() == {"min": 1, "median": 1.5, "max": 2, "total": 3}
    assert report.n_overlap_pixels == 21 and report.n_images_with_overlap == 1
    assert report.sizes == {"12x12": 2} and sum(report.imaging_types.values()) == 2
    out = format_report(report)
    assert "6 (4 unusable, see problems)" in out and "Problems (9):" in out
    assert "min 1, median 1.5, max 2, total 3" in out and "21 in 1 image(s)" in out


def test_folder_check_lists_every_problem(tmp_path: Path) -> None:
    labels = _labels()
    Image.fromarray(np.full((12, 12), 40, np.uint8)).save(tmp_path / "ok.png")
    tifffile.imwrite(tmp_path / "ok_labels.tif", labels.astype(np.uint16))
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(tmp_path / "nolabel.png")
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(tmp_path / "ghost_labels.png")
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(tmp_path / "binary.png")
    Image.fromarray(((labels > 0) * 255).astype(np.uint8)).save(tmp_path / "binary_labels.png")
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(tmp_path / "small.png")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "small_labels.png")
    (tmp_path / "broken.png").write_bytes(b"junk")
    (tmp_path / "broken_labels.png").write_bytes(b"junk too")
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(tmp_path / "ok.jpg")
    report = check_dataset(tmp_path)
    text = "\n".join(report.problems)
    expected = [
        f"{tmp_path / 'ok.png'}: same name as ok.jpg; keep only one of them",
        f"{tmp_path / 'nolabel.png'}: image has no label image",
        f"{tmp_path / 'ghost_labels.png'}: label image has no matching image",
        f"{tmp_path / 'binary_labels.png'}: looks like a binary mask (one value, 255, for 2 separate objects)",
        f"{tmp_path / 'small_labels.png'}: label image size 5x5 differs",
        f"{tmp_path / 'broken.png'}: cannot decode image",
        f"{tmp_path / 'broken_labels.png'}: cannot decode image",
    ]
    for line in expected:
        assert line in text, line
    assert len(report.problems) == len(expected)
    # ok.jpg sorts before ok.png, so it is the one paired with ok_labels.tif
    assert report.layout == "folder" and report.n_readable == 2  # ok (.jpg) and binary
    assert report.n_images == 5  # ok, nolabel, binary, small, broken
    assert report.nuclei_per_image == {"ok": 2, "binary": 1}


def test_unknown_layout_and_missing_folder_do_not_raise(tmp_path: Path) -> None:
    report = check_dataset(tmp_path)
    assert report.layout == "unknown" and len(report.problems) == 1
    assert "supported layouts" in report.problems[0]
    assert "No problems found" not in format_report(report)
    missing = check_dataset(tmp_path / "absent")
    assert missing.problems == [f"{tmp_path / 'absent'}: dataset folder not found"]
    assert "Nuclei per image         -" in format_report(missing)


def test_bundled_samples_are_clean() -> None:
    report = check_dataset(sample_root())
    assert report.problems == []
    assert report.n_images == report.n_readable == len(sample_ids()) == 6
    assert report.nuclei_total == 218
    assert report.imaging_types["brightfield"] >= 1 and report.imaging_types["fluorescence"] >= 3
    assert "No problems found." in format_report(report)


def test_multichannel_files_are_refused_without_a_channel_flag(tmp_path: Path) -> None:
    labels = _labels()
    tifffile.imwrite(
        tmp_path / "cyx.tif", np.zeros((3, 12, 12), np.uint16), photometric="minisblack",
        metadata={"axes": "CYX"},
    )  # fmt: skip
    tifffile.imwrite(tmp_path / "cyx_labels.tif", labels.astype(np.uint16))
    Image.fromarray(np.full((12, 12), 40, np.uint8)).save(tmp_path / "ok.png")
    tifffile.imwrite(
        tmp_path / "ok_labels.tif", np.zeros((2, 12, 12), np.uint16), photometric="minisblack",
        metadata={"axes": "CYX"},
    )  # fmt: skip
    problems = check_dataset(tmp_path).problems
    assert problems == [
        f"{tmp_path / 'cyx.tif'}: image has 3 channels; training and 'data check' read one grey "
        "or RGB image per sample; save the nuclear channel as an image of its own (in Fiji: "
        "Image > Color > Split Channels)",
        f"{tmp_path / 'ok_labels.tif'}: label image has 2 channels or planes; expected one 2-D "
        "image with an integer label per pixel",
    ]
    assert not any("channel=" in p for p in problems)
