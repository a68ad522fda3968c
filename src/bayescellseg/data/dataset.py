"""Cached loading of DSB-layout training data and a dataset of random training crops."""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import warnings
import zipfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from bayescellseg.data.augment import SCALE_RANGE, random_scale
from bayescellseg.data.augment import augment as augment_pair
from bayescellseg.data.normalize import apply_normalization, is_colour, normalization_params
from bayescellseg.data.targets import make_targets
from bayescellseg.errors import InputError
from bayescellseg.io import dsb, images
from bayescellseg.io.atomic import atomic_path
from bayescellseg.io.dsb import Sample, list_dsb_ids, read_dsb_sample

CACHE_VERSION = 1


# ----------------------------------------------------------------------------- cache


def default_cache_dir(root: str | Path, n_files: int) -> Path:
    """``$XDG_CACHE_HOME`` (or ``~/.cache``) ``/bayescellseg/<root name>-<hash>``.

    The hash covers the absolute root path and ``n_files`` (the number of samples), so two data
    folders with the same name, or a folder that gained samples, get separate caches.
    """
    root = Path(root).resolve()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha1(f"{root}\n{n_files}".encode()).hexdigest()[:10]
    return base / "bayescellseg" / f"{root.name}-{digest}"


@functools.cache
def _reader_fingerprint() -> str:
    """Hash of the decoding code, so that a changed reader invalidates old cache entries."""
    code = "".join(Path(inspect.getfile(m)).read_text(encoding="utf-8") for m in (dsb, images))
    return f"v{CACHE_VERSION}:" + hashlib.sha1(code.encode()).hexdigest()


def source_stamp(folder: Path) -> str:
    """Fingerprint of a sample's files (names, sizes, modification times) and of the reader."""
    entries: list[str] = []
    pending = [(str(folder), "")]
    while pending:
        path, prefix = pending.pop()
        with os.scandir(path) as it:
            for entry in it:
                if entry.is_dir():
                    pending.append((entry.path, f"{prefix}{entry.name}/"))
                else:
                    st = entry.stat()
                    entries.append(f"{prefix}{entry.name}\t{st.st_size}\t{st.st_mtime_ns}")
    entries.sort()
    entries.append(_reader_fingerprint())
    return hashlib.sha1("\n".join(entries).encode()).hexdigest()


_SCALES = {np.dtype(np.uint8): np.float32(255), np.dtype(np.uint16): np.float32(65535)}


def _decode_image(stored: np.ndarray) -> np.ndarray:
    """Back to float32 [0, 1], with the same arithmetic as ``io.images.read_image``."""
    scale = _SCALES.get(stored.dtype)
    out = stored.astype(np.float32)
    if scale is not None:
        np.divide(out, scale, out=out)
    return out


def _encode_image(image: np.ndarray) -> np.ndarray:
    """Smallest lossless dtype for a [0, 1] float image read from 8- or 16-bit files."""
    for dtype, scale in _SCALES.items():
        q = np.rint(image * scale).astype(dtype)
        if np.array_equal(_decode_image(q), image):
            return q
    return image.astype(np.float32)


def _encode_labels(labels: np.ndarray) -> np.ndarray:
    return labels.astype(np.uint16) if labels.max(initial=0) < 2**16 else labels.astype(np.uint32)


def _write_cache(path: Path, sample: Sample, stamp: str) -> None:
    with atomic_path(path, overwrite=True) as tmp, open(tmp, "wb") as fh:
        np.savez(
            fh,
            version=np.int64(CACHE_VERSION),
            stamp=np.str_(stamp),
            id=np.str_(sample.id),
            source=np.str_(str(sample.source)),
            n_overlap_pixels=np.int64(sample.n_overlap_pixels),
            image=_encode_image(sample.image),
            labels=_encode_labels(sample.labels),
        )


def _read_cache(path: Path, stamp: str) -> Sample | None:
    """The cached sample, or None when missing, corrupt, from another version, or stale."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["version"]) != CACHE_VERSION or str(z["stamp"]) != stamp:
                return None
            return Sample(
                id=str(z["id"]),
                image=_decode_image(z["image"]),
                labels=z["labels"].astype(np.uint32),
                source=Path(str(z["source"])),
                n_overlap_pixels=int(z["n_overlap_pixels"]),
            )
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def _cached(root: Path, sample_id: str, cache_dir: Path) -> tuple[Sample | None, str]:
    """The valid cache entry of a sample (or None) and the sample's current source stamp."""
    stamp = source_stamp(root / sample_id)
    return _read_cache(cache_dir / f"{sample_id}.npz", stamp), stamp


def _decode(root: Path, sample_id: str, cache_dir: Path | None, stamp: str) -> Sample:
    """Decode one sample and, with a cache folder, (re)write its cache entry."""
    sample = read_dsb_sample(root, sample_id)
    if cache_dir is not None:
        path = cache_dir / f"{sample_id}.npz"
        try:
            _write_cache(path, sample, stamp)
        except OSError as err:
            warnings.warn(f"{path}: cannot write cache entry ({err})", RuntimeWarning, stacklevel=2)
    return sample


def load_samples(
    root: str | Path,
    ids: Sequence[str] | None = None,
    cache_dir: str | Path | None = None,
    workers: int = 2,
    use_cache: bool = True,
) -> list[Sample]:
    """Read DSB-layout samples, decoding each at most once thanks to an on-disk cache.

    Each sample is cached as one uncompressed ``<id>.npz`` (image as uint8 / uint16 when that
    is lossless, labels as uint16 / uint32), written atomically. An entry is rebuilt when it
    is unreadable, from another cache version, or stale (a file under ``<root>/<id>`` changed
    size or modification time, or the decoding code in ``io/dsb.py`` / ``io/images.py``
    changed).

    Args:
        root: DSB2018-layout folder (``<id>/images/<id>.png`` + ``<id>/masks/*.png``).
        ids: Sample IDs to load, in this order; None = all (sorted).
        cache_dir: Cache folder; None = :func:`default_cache_dir`.
        workers: Processes used to decode samples missing from the cache (1 = in-process);
            cached samples are always read in-process.
        use_cache: False = always decode, never read or write the cache.

    Returns:
        Samples in the order of ``ids`` (float32 (H, W, 3) images, uint32 labels).

    Raises:
        InputError: ``root`` is not a DSB folder, an ID is unknown, or a sample cannot be read.
    """
    root = Path(root)
    all_ids = list_dsb_ids(root)
    ids = list(all_ids if ids is None else ids)
    unknown = sorted(set(ids) - set(all_ids))
    if unknown:
        raise InputError(root / unknown[0], f"no such sample folder ({len(unknown)} unknown IDs)")
    cache: Path | None = None
    if use_cache:
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir(root, len(all_ids))
    found: dict[str, Sample] = {}
    stamps: dict[str, str] = {i: "" for i in ids}
    if cache is not None:
        # reading the cache is I/O and numpy copies, which release the GIL: threads suffice
        with ThreadPoolExecutor(max_workers=max(1, workers)) as threads:
            looked_up = threads.map(lambda i: (i, *_cached(root, i, cache)), list(stamps))
            for sample_id, sample, stamp in looked_up:
                stamps[sample_id] = stamp
                if sample is not None:
                    found[sample_id] = sample
    missing = [i for i in stamps if i not in found]
    if workers <= 1 or len(missing) < 2 * workers:
        found.update({i: _decode(root, i, cache, stamps[i]) for i in missing})
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {i: pool.submit(_decode, root, i, cache, stamps[i]) for i in missing}
            found.update({i: f.result() for i, f in futures.items()})
    return [found[i] for i in ids]


# ----------------------------------------------------------------------------- crops


def pad_mirrored(
    image: np.ndarray, labels: np.ndarray, pad: tuple[tuple[int, int], tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Mirror-pad an image and its labels; mirrored nuclei get new, distinct label IDs.

    Uses ``numpy.pad(mode="symmetric")`` for both, so padded areas look like real data rather
    than empty background (a zero-padded label map would teach the network that mirrored nuclei
    are background). Every mirrored copy of a nucleus becomes its own instance, so a nucleus
    touching the image edge and its mirror image are separated by a contour.

    Args:
        image: (H, W, C) image.
        labels: (H, W) labels.
        pad: ``((top, bottom), (left, right))`` in pixels (any size; mirrored repeatedly).

    Returns:
        Padded ``(image, labels)``; labels are uint32.
    """
    h, w = labels.shape
    img = np.pad(image, (*pad, (0, 0)), mode="symmetric")
    lab = np.pad(labels.astype(np.uint32), pad, mode="symmetric")
    tile_r = np.floor_divide(np.arange(lab.shape[0]) - pad[0][0], h)
    tile_c = np.floor_divide(np.arange(lab.shape[1]) - pad[1][0], w)
    n_c = int(tile_c.max() - tile_c.min() + 1)
    code = (tile_r - tile_r.min())[:, None] * n_c + (tile_c - tile_c.min())[None, :]
    home = int((0 - tile_r.min()) * n_c + (0 - tile_c.min()))
    step = np.uint32(labels.max(initial=0))
    shift = np.where(code == home, 0, code + 1).astype(np.uint32) * step
    lab = np.where(lab > 0, lab + shift, 0).astype(np.uint32)
    return img, lab


def crop_window(
    image: np.ndarray,
    labels: np.ndarray,
    size: int,
    rng: np.random.Generator,
    fg_bias: float = 0.7,
) -> tuple[np.ndarray, np.ndarray]:
    """A random ``size`` x ``size`` window, near a random nucleus pixel with probability ``fg_bias``.

    Images smaller than the window are mirror-padded (:func:`pad_mirrored`) at a random offset.
    A foreground-centred window is centred on a random foreground pixel, jittered by up to a
    quarter of the window, then shifted to lie inside the (padded) image.
    """
    h, w = labels.shape
    if h < size or w < size:
        extra = (max(0, size - h), max(0, size - w))
        before = (int(rng.integers(extra[0] + 1)), int(rng.integers(extra[1] + 1)))
        pad = ((before[0], extra[0] - before[0]), (before[1], extra[1] - before[1]))
        image, labels = pad_mirrored(image, labels, pad)
        h, w = labels.shape
    use_fg = rng.random() < fg_bias
    fg = np.flatnonzero(labels) if use_fg else np.empty(0, np.int64)
    if fg.size:
        r, c = divmod(int(fg[rng.integers(fg.size)]), w)
        jitter = rng.integers(-(size // 4), size // 4 + 1, size=2)
        top = int(np.clip(r + jitter[0] - size // 2, 0, h - size))
        left = int(np.clip(c + jitter[1] - size // 2, 0, w - size))
    else:
        top, left = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
    window = (slice(top, top + size), slice(left, left + size))
    return image[window].copy(), labels[window].copy()


def imaging_type_weights(kinds: Sequence[str], brightfield_share: float) -> np.ndarray:
    """Sampling probabilities giving brightfield/H&E images ``brightfield_share`` of the draws.

    Brightfield images are rare in nucleus datasets (99 of the 536 DSB2018 training images);
    drawing them more often than their count is a way to train on them more.

    Args:
        kinds: The imaging type of each sample (``"brightfield"`` or ``"fluorescence"``).
        brightfield_share: Fraction of draws for all brightfield images together, in (0, 1).

    Returns:
        (N,) probabilities summing to 1, equal within a type. Where one type is absent, every
        sample gets ``1 / N`` (there is nothing to balance).

    Raises:
        ValueError: ``brightfield_share`` outside (0, 1), or no samples.
    """
    if not 0.0 < brightfield_share < 1.0:
        raise ValueError(f"brightfield_share must be in (0, 1), got {brightfield_share}")
    if len(kinds) == 0:
        raise ValueError("imaging_type_weights needs at least one sample")
    bright = np.array([k == "brightfield" for k in kinds])
    n_bright = int(bright.sum())
    if n_bright in (0, len(kinds)):
        return np.full(len(kinds), 1.0 / len(kinds))
    return np.where(
        bright, brightfield_share / n_bright, (1.0 - brightfield_share) / (len(kinds) - n_bright)
    )


class CropDataset(Dataset):
    """Random, augmented, normalised training crops with their [foreground, contour] targets.

    Item ``index`` of epoch ``e`` is fully determined by ``(seed, e, index)``: a
    ``np.random.Generator`` seeded with ``[seed, epoch, index]`` draws every random choice, so
    runs are reproducible and resumable, different epochs see different crops (call
    :meth:`set_epoch` before each epoch), and DataLoader workers need no seeding. With
    ``DataLoader(persistent_workers=True)`` the workers keep the epoch they were started
    with, so leave it False (the default) or create the loader per epoch.

    Per item: the image is ``samples[index % len(samples)]`` (every image once per
    ``len(samples)`` items) or, with ``weights``, drawn at random; a zoom ``s`` is drawn and a
    ``crop / s`` window cut (foreground-biased, mirror-padded when the image is smaller); the
    window is flipped / rotated, resampled to ``crop`` x ``crop`` and photometrically augmented
    (raw intensities); then the whole image's normalisation (percentiles and imaging type from
    ``normalization_params``, as at inference) is applied to the crop, and targets are made from the crop's labels.

    Args:
        samples: Training samples.
        crop: Output side length in pixels.
        augment: Random zoom, flips, rotations and intensity / colour changes.
        seed: Base seed.
        length: Items per epoch; None = ``len(samples)``.
        fg_bias: Probability that a crop is centred near a random nucleus pixel.
        weights: Optional per-sample sampling weights (e.g. source shares, or
            :func:`imaging_type_weights` for a brightfield share); None = round robin.
        scale_range: Range of the random zoom ``s`` (log-uniform; > 1 enlarges nuclei).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        crop: int = 256,
        augment: bool = True,
        seed: int = 0,
        length: int | None = None,
        fg_bias: float = 0.7,
        weights: Sequence[float] | None = None,
        scale_range: tuple[float, float] = SCALE_RANGE,
    ) -> None:
        if not samples:
            raise ValueError("CropDataset needs at least one sample")
        if crop < 8:
            raise ValueError(f"crop must be at least 8 pixels, got {crop}")
        if not 0.0 <= fg_bias <= 1.0:
            raise ValueError(f"fg_bias must be in [0, 1], got {fg_bias}")
        if not 0.0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be 0 < low <= high, got {scale_range}")
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.samples = list(samples)
        self.crop = int(crop)
        self.augment = augment
        self.seed = int(seed)
        self.length = len(self.samples) if length is None else int(length)
        self.fg_bias = float(fg_bias)
        self.epoch = 0
        self.probabilities: np.ndarray | None = None
        if weights is not None:
            p = np.asarray(weights, np.float64)
            if p.shape != (len(self.samples),) or (p < 0).any() or p.sum() <= 0:
                raise ValueError("weights must be non-negative, one per sample, not all zero")
            self.probabilities = p / p.sum()
        # decided once on the whole image, exactly as at inference, not per crop
        self.norm = [normalization_params(s.image) for s in self.samples]
        self.colour = [
            p[2] == "brightfield" and is_colour(s.image)
            for p, s in zip(self.norm, self.samples, strict=True)
        ]

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose crops ``__getitem__`` returns."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def _pick(self, rng: np.random.Generator, index: int) -> int:
        if self.probabilities is None:
            return index % len(self.samples)
        return int(rng.choice(len(self.samples), p=self.probabilities))

    def image_index(self, index: int) -> int:
        """Which sample item ``index`` of the current epoch is cropped from (no crop is made)."""
        return self._pick(np.random.default_rng([self.seed, self.epoch, int(index)]), index)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} items")
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        i = self._pick(rng, index)
        sample = self.samples[i]
        size = self.crop
        if self.augment:
            size = max(1, round(self.crop / random_scale(rng, self.scale_range)))
        image, labels = crop_window(sample.image, sample.labels, size, rng, self.fg_bias)
        if self.augment:
            image, labels = augment_pair(
                image, labels, rng, colour=self.colour[i], out_shape=(self.crop, self.crop)
            )
        x = apply_normalization(image, *self.norm[i])
        y = make_targets(labels)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1), np.float32)), (
            torch.from_numpy(y)
        )
