"""Tests for bayescellseg.data.dataset (cached loading and training crops)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from bayescellseg.data import dataset as ds
from bayescellseg.data.dataset import (
    CropDataset,
    crop_window,
    default_cache_dir,
    imaging_type_weights,
    load_samples,
    pad_mirrored,
)
from bayescellseg.data.normalize import normalization_params
from bayescellseg.errors import InputError
from bayescellseg.io.dsb import Sample
from tests.synthetic import synthetic_image, synthetic_labels

torch.set_num_threads(1)


def _write_dsb_sample(root: Path, sample_id: str, labels: np.ndarray, image: np.ndarray) -> None:
    (root / sample_id / "images").mkdir(parents=True)
    (root / sample_id / "masks").mkdir()
    rgba = np.dstack([np.rint(image * 255).astype(np.uint8), np.full(labels.shape, 255, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(root / sample_id / "images" / f"{sample_id}.png")
    for k in np.unique(labels[labels > 0]):
        mask = np.where(labels == k, 255, 0).astype(np.uint8)
        Image.fromarray(mask).save(root / sample_id / "masks" / f"m{int(k):03d}.png")


@pytest.fixture
def fake_dsb(tmp_path: Path) -> Path:
    root = tmp_path / "stage_fake"
    for j, shape in enumerate([(40, 48), (32, 32), (50, 36), (36, 40), (32, 44)]):
        labels = synthetic_labels(shape, n=3, seed=j, touching_pair=False, radius=(3.0, 6.0))
        _write_dsb_sample(
            root, f"id{j}", labels, synthetic_image(labels, seed=j, brightfield=j == 1)
        )
    return root


def _same(a: list[Sample], b: list[Sample]) -> None:
    assert [s.id for s in a] == [s.id for s in b]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.image, y.image)
        np.testing.assert_array_equal(x.labels, y.labels)
        assert x.image.dtype == y.image.dtype == np.float32
        assert x.labels.dtype == y.labels.dtype == np.uint32
        assert x.n_overlap_pixels == y.n_overlap_pixels and x.source == y.source


def test_cache_round_trip(fake_dsb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    cold = load_samples(fake_dsb, cache_dir=cache, workers=1)
    assert sorted(p.name for p in cache.iterdir()) == [f"id{j}.npz" for j in range(5)]
    uncached = load_samples(fake_dsb, use_cache=False, workers=1)
    _same(cold, uncached)

    def refuse(*args: object) -> Sample:
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(ds, "read_dsb_sample", refuse)
    warm = load_samples(fake_dsb, ids=["id3", "id0"], cache_dir=cache, workers=1)
    assert [s.id for s in warm] == ["id3", "id0"]
    _same(warm, [cold[3], cold[0]])


def test_stale_and_corrupt_entries_rebuilt(fake_dsb: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    load_samples(fake_dsb, cache_dir=cache, workers=1)
    # stale: a mask of id0 changes
    mask_path = sorted((fake_dsb / "id0" / "masks").iterdir())[0]
    mask = np.asarray(Image.open(mask_path)).copy()
    mask[:] = 0
    mask[0:3, 0:3] = 255
    Image.fromarray(mask).save(mask_path)
    os.utime(mask_path, ns=(1, 1))
    # corrupt: id1's cache entry is garbage
    (cache / "id1.npz").write_bytes(b"not a zip file")
    again = load_samples(fake_dsb, cache_dir=cache, workers=1)
    fresh = load_samples(fake_dsb, use_cache=False, workers=1)
    _same(again, fresh)
    assert again[0].labels[0:3, 0:3].all()
    with np.load(cache / "id1.npz") as z:  # rewritten as a valid entry
        assert z["image"].dtype == np.uint8 and z["labels"].dtype == np.uint16


def test_parallel_decode_matches_serial(fake_dsb: Path, tmp_path: Path) -> None:
    par = load_samples(fake_dsb, cache_dir=tmp_path / "c2", workers=2)
    ser = load_samples(fake_dsb, use_cache=False, workers=1)
    _same(par, ser)
    assert len(list((tmp_path / "c2").glob("*.npz"))) == 5


def test_unknown_id_and_missing_root(fake_dsb: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such sample folder") as err:
        load_samples(fake_dsb, ids=["id0", "nope"], cache_dir=tmp_path / "c", workers=1)
    assert err.value.path == str(fake_dsb / "nope")
    with pytest.raises(InputError):
        load_samples(tmp_path / "missing", cache_dir=tmp_path / "c")


def test_default_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    a = default_cache_dir(tmp_path / "stage1_train", 670)
    assert a.parent == tmp_path / "bayescellseg" and a.name.startswith("stage1_train-")
    assert default_cache_dir(tmp_path / "stage1_train", 671) != a
    assert default_cache_dir(tmp_path / "x" / "stage1_train", 670) != a
    assert default_cache_dir(tmp_path / "stage1_train", 670) == a


def test_pad_mirrored_hand_computed() -> None:
    labels = np.array([[1, 0], [0, 2]], np.uint32)
    image = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    img, lab = pad_mirrored(image, labels, ((0, 0), (0, 2)))
    # symmetric: columns 2, 3 mirror columns 1, 0; mirrored IDs shifted by (tile code + 1) * max
    np.testing.assert_array_equal(lab, [[1, 0, 0, 1 + 2 * 2], [0, 2, 2 + 2 * 2, 0]])
    np.testing.assert_array_equal(img[:, 2], image[:, 1])
    np.testing.assert_array_equal(img[:, 3], image[:, 0])


def _sample(
    shape: tuple[int, int],
    seed: int,
    n: int = 6,
    brightfield: bool = False,
    radius: tuple[float, float] = (5.0, 10.0),
) -> Sample:
    labels = synthetic_labels(shape, n=n, seed=seed, radius=radius)
    image = synthetic_image(labels, seed=seed, brightfield=brightfield)
    return Sample(id=f"s{seed}", image=image, labels=labels, source=Path(f"s{seed}"))


def test_crop_dataset_shapes_and_determinism() -> None:
    samples = [_sample((120, 140), 1), _sample((90, 100), 2, brightfield=True)]
    data = CropDataset(samples, crop=64, seed=3, length=6)
    assert len(data) == 6
    x, y = data[1]
    assert x.shape == (3, 64, 64) and y.shape == (2, 64, 64)
    assert x.dtype == torch.float32 and y.dtype == torch.float32
    assert set(np.unique(y.numpy())) <= {0.0, 1.0}
    assert bool(((y[1] > 0) <= (y[0] > 0)).all())
    again = CropDataset(samples, crop=64, seed=3, length=6)
    for i in range(6):
        torch.testing.assert_close(data[i][0], again[i][0], rtol=0, atol=0)
        torch.testing.assert_close(data[i][1], again[i][1], rtol=0, atol=0)
    first = [data[i][0] for i in range(6)]
    data.set_epoch(1)
    assert not any(torch.equal(first[i], data[i][0]) for i in range(6))
    data.set_epoch(0)
    assert all(torch.equal(first[i], data[i][0]) for i in range(6))
    with pytest.raises(IndexError):
        data[6]


def test_small_image_padded_to_crop() -> None:
    sample = _sample((100, 80), 4)
    data = CropDataset([sample], crop=256, augment=False, seed=0, fg_bias=0.0)
    x, y = data[0]
    assert x.shape == (3, 256, 256) and y.shape == (2, 256, 256)
    # mirrored copies of the nuclei are foreground too, separated from each other by contours
    assert y[0].sum() > 4 * (sample.labels > 0).sum()
    interior = (y[0] > 0) & (y[1] == 0)
    n_mirror_instances = ndimage.label(interior.numpy())[1]
    assert n_mirror_instances >= 6 * len(np.unique(sample.labels[sample.labels > 0]))
    assert np.isfinite(x.numpy()).all() and x.std() > 0.05


def test_fg_bias_finds_sparse_nuclei() -> None:
    labels = np.zeros((512, 512), np.uint32)
    rr, cc = np.mgrid[:512, :512]
    labels[(rr - 400) ** 2 + (cc - 90) ** 2 <= 36] = 1
    image = synthetic_image(labels, seed=0)
    sample = Sample(id="sparse", image=image, labels=labels, source=Path("sparse"))
    rng = np.random.default_rng(0)
    hits_fg = sum(crop_window(image, labels, 64, rng, fg_bias=1.0)[1].any() for _ in range(100))
    hits_rand = sum(crop_window(image, labels, 64, rng, fg_bias=0.0)[1].any() for _ in range(100))
    assert hits_fg == 100 and hits_rand < 15
    data = CropDataset([sample], crop=64, seed=0, length=60, fg_bias=0.7)
    frac = np.mean([bool(data[i][1][0].any()) for i in range(60)])
    assert 0.5 < frac < 0.95  # about 0.7 + chance (~3 %)


def test_weights_and_validation() -> None:
    full = _sample((64, 64), 5)
    empty = Sample(
        id="empty", image=full.image, labels=np.zeros((64, 64), np.uint32), source=Path("empty")
    )
    only_full = CropDataset(
        [empty, full], crop=32, seed=0, length=10, weights=[0.0, 1.0], augment=False, fg_bias=1.0
    )
    assert all(bool(only_full[i][1][0].any()) for i in range(10))
    only_empty = CropDataset(
        [empty, full], crop=32, seed=0, length=10, weights=[1.0, 0.0], augment=False, fg_bias=1.0
    )
    assert not any(bool(only_empty[i][1][0].any()) for i in range(10))
    with pytest.raises(ValueError, match="weights"):
        CropDataset([full], weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="fg_bias"):
        CropDataset([full], fg_bias=2.0)
    with pytest.raises(ValueError, match="at least one"):
        CropDataset([])


def test_imaging_type_weights_hand_computed() -> None:
    kinds = ["fluorescence", "brightfield", "fluorescence", "fluorescence"]
    np.testing.assert_allclose(imaging_type_weights(kinds, 0.4), [0.2, 0.4, 0.2, 0.2])
    np.testing.assert_allclose(imaging_type_weights(["fluorescence"] * 4, 0.4), [0.25] * 4)
    with pytest.raises(ValueError, match=r"brightfield_share must be in \(0, 1\), got 1.0"):
        imaging_type_weights(kinds, 1.0)
    with pytest.raises(ValueError, match="at least one"):
        imaging_type_weights([], 0.5)


def test_brightfield_share_draws_that_fraction_of_crops() -> None:
    """One brightfield image among four fluorescence ones gets half the draws. Its labels are
    emptied, so a crop with an empty target came from it (the others always contain nuclei)."""
    fluo = [_sample((64, 64), 10 + k) for k in range(4)]
    bf = _sample((64, 64), 20, brightfield=True)
    bright = Sample(id="bf", image=bf.image, labels=np.zeros_like(bf.labels), source=Path("bf"))
    kinds = [normalization_params(s.image)[2] for s in [*fluo, bright]]
    assert kinds == ["fluorescence"] * 4 + ["brightfield"]
    weights = imaging_type_weights(kinds, 0.5)
    data = CropDataset(
        [*fluo, bright], crop=32, seed=0, length=300, augment=False, fg_bias=1.0, weights=weights
    )
    np.testing.assert_allclose(data.probabilities, [0.125] * 4 + [0.5])
    from_bright = np.mean([not bool(data[i][1][0].any()) for i in range(300)])
    assert 0.4 < from_bright < 0.6, from_bright
    round_robin = CropDataset(
        [*fluo, bright], crop=32, seed=0, length=300, augment=False, fg_bias=1.0
    )
    assert np.mean([not bool(round_robin[i][1][0].any()) for i in range(300)]) == 0.2


def test_dataloader_workers_reproduce_items() -> None:
    samples = [_sample((80, 80), 7), _sample((70, 90), 8)]
    data = CropDataset(samples, crop=48, seed=1, length=4)
    ref = torch.stack([data[i][0] for i in range(4)])
    loader = torch.utils.data.DataLoader(data, batch_size=2, num_workers=2)
    got = torch.cat([xb for xb, _ in loader])
    torch.testing.assert_close(got, ref, rtol=0, atol=0)


def test_real_dsb_samples_through_cache(dsb_root: Path, tmp_path: Path) -> None:
    from bayescellseg.data.split import load_split
    from bayescellseg.io.dsb import read_dsb_sample

    ids = load_split()["val"][:1]
    cold = load_samples(dsb_root, ids=ids, cache_dir=tmp_path, workers=1)
    warm = load_samples(dsb_root, ids=ids, cache_dir=tmp_path, workers=1)
    _same(cold, warm)
    _same(warm, [read_dsb_sample(dsb_root, i) for i in ids])
    x, y = CropDataset(warm, crop=128, seed=0, length=2)[1]
    assert x.shape == (3, 128, 128) and y.shape == (2, 128, 128)
