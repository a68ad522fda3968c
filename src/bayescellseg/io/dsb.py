"""The Kaggle Data Science Bowl 2018 layout: ``<root>/<id>/images/<id>.png`` + ``<root>/<id>/masks/*.png``.

Each mask file holds one nucleus (non-zero pixels). Masks are combined into one instance label
image; label ``i`` is the ``i``-th mask file in sorted file-name order. Where masks overlap, the
pixel goes to the mask that sorts first, and the number of such pixels is reported as
``Sample.n_overlap_pixels``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from bayescellseg.errors import InputError
from bayescellseg.io.images import read_image, read_raw


@dataclass(frozen=True)
class Sample:
    """One image with its instance labels.

    Attributes:
        id: Sample identifier (the DSB image id, or the file stem).
        image: (H, W, 3) float32 in [0, 1].
        labels: (H, W) uint32 instance labels, 0 = background.
        source: Folder or file the sample was read from.
        n_overlap_pixels: Pixels claimed by more than one mask (resolved to the first mask).
    """

    id: str
    image: np.ndarray
    labels: np.ndarray
    source: Path
    n_overlap_pixels: int = 0


def is_dsb_sample_dir(folder: Path) -> bool:
    """True when ``folder`` looks like ``<id>/images/<id>.png``."""
    return (folder / "images").is_dir()


def list_dsb_ids(root: str | Path) -> list[str]:
    """Sorted ids of the sample folders under a DSB root (folders holding ``images/``).

    Raises:
        InputError: the root is missing or holds no sample folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "dataset folder not found")
    ids = sorted(p.name for p in root.iterdir() if p.is_dir() and is_dsb_sample_dir(p))
    if not ids:
        raise InputError(root, "no DSB2018 sample folders (<id>/images/<id>.png) found")
    return ids


def mask_paths(sample_dir: Path) -> list[Path]:
    """Sorted mask files of a sample folder.

    Raises:
        InputError: ``masks/`` is missing or empty.
    """
    masks_dir = sample_dir / "masks"
    if not masks_dir.is_dir():
        raise InputError(masks_dir, "missing masks/ folder (expected one PNG per nucleus)")
    paths = sorted(p for p in masks_dir.iterdir() if p.suffix.lower() == ".png")
    if not paths:
        raise InputError(masks_dir, "masks/ folder holds no PNG masks")
    return paths


def _mask_indices(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """Flat (C-order) indices of a mask's non-zero pixels.

    Fast path for the usual 8-bit grey PNG masks: the size is checked on the header, and only the
    bounding box of the nucleus (found by Pillow in C) is converted to numpy.
    """
    try:
        with Image.open(path) as im:
            if im.size != (shape[1], shape[0]):
                raise InputError(
                    path,
                    f"mask size {im.size[0]}x{im.size[1]} differs from the image's "
                    f"{shape[1]}x{shape[0]}",
                )
            if im.mode in ("L", "1"):
                im.load()
                bbox = im.getbbox()
                if bbox is None:
                    raise InputError(path, "mask is empty (no nucleus pixels)")
                rows, cols = np.nonzero(np.asarray(im.crop(bbox)))
                return (rows + bbox[1]) * shape[1] + (cols + bbox[0])
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        pass  # corrupt or unusual file: read_raw below decodes it or names the problem
    m = read_raw(path)
    if m.ndim == 3:
        m = m[..., :3].max(axis=2)
    if m.shape != shape:
        raise InputError(
            path,
            f"mask size {m.shape[1]}x{m.shape[0]} differs from the image's {shape[1]}x{shape[0]}",
        )
    idx = np.flatnonzero(m)
    if idx.size == 0:
        raise InputError(path, "mask is empty (no nucleus pixels)")
    return idx


def read_masks(paths: list[Path], shape: tuple[int, int]) -> tuple[np.ndarray, int]:
    """Combine one-nucleus mask files into instance labels.

    Args:
        paths: Mask files, in label order.
        shape: Expected (H, W) of every mask.

    Returns:
        (labels uint32, number of overlapping pixels resolved to the earlier mask).

    Raises:
        InputError: a mask is corrupt, empty, of another size, or not 2D.
    """
    labels = np.zeros(shape[0] * shape[1], np.uint32)
    overlap = 0
    for i, path in enumerate(paths, start=1):
        idx = _mask_indices(path, shape)
        taken = labels[idx] != 0
        n_taken = int(taken.sum())
        if n_taken:
            overlap += n_taken
            idx = idx[~taken]
        labels[idx] = i
    return labels.reshape(shape), overlap


def image_path(folder: Path, sample_id: str) -> Path:
    """``<folder>/images/<id>.png``, or the only file in ``images/`` when named differently.

    Raises:
        InputError: no such image (or several candidates).
    """
    path = folder / "images" / f"{sample_id}.png"
    if path.is_file():
        return path
    images = folder / "images"
    candidates = (
        sorted(p for p in images.iterdir() if not p.name.startswith(".")) if images.is_dir() else []
    )
    if len(candidates) != 1:
        raise InputError(path, "image not found (expected <id>/images/<id>.png)")
    return candidates[0]


def read_dsb_sample(root: str | Path, sample_id: str) -> Sample:
    """Read ``<root>/<id>/images/<id>.png`` and its masks.

    Raises:
        InputError: naming the file and the problem (missing image or masks, corrupt or empty
            mask, size mismatch, ...).
    """
    folder = Path(root) / sample_id
    image = read_image(image_path(folder, sample_id))
    labels, overlap = read_masks(mask_paths(folder), image.shape[:2])
    return Sample(id=sample_id, image=image, labels=labels, source=folder, n_overlap_pixels=overlap)
