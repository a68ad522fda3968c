"""The IoU engine: overlaps between the nuclei of two instance label images.

Every IoU between label images in the package comes from here: the DSB2018 matching
(:mod:`bayescellseg.metrics.matching`) and the sample agreement of the review flags
(:mod:`bayescellseg.postprocess.agreement`).

Instance labels are integer (or bool) arrays, 0 = background, any positive ids (not necessarily
consecutive). ``IoU(i, j) = |T_i ∩ P_j| / (|T_i| + |P_j| - |T_i ∩ P_j|)``; the intersections
come from one sort of the (true, pred) label pair of each foreground pixel, so the cost is
``O(n_pixels log n_pixels)`` independent of the number of nuclei.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LabelIndex", "Overlaps", "best_match_iou", "iou_matrix", "label_index", "overlaps"]

_DENSE_LUT_FACTOR = 4  # relabel with a lookup table when max label <= factor * n_pixels + 1024


@dataclass(frozen=True)
class LabelIndex:
    """An instance label image renumbered 1..N, computed once and reused for many comparisons.

    Attributes:
        ids: Sorted positive ids of the nuclei, shape (n,), int64.
        index: Flat (C-order) int64 array of the image: 0 = background, id ``ids[k]`` -> ``k + 1``.
        shape: Shape of the label image.
    """

    ids: np.ndarray
    index: np.ndarray
    shape: tuple[int, ...]

    @property
    def n(self) -> int:
        """Number of nuclei."""
        return int(self.ids.size)

    def areas(self) -> np.ndarray:
        """Pixel count of each nucleus, in the order of ``ids`` (int64, shape (n,))."""
        return np.bincount(self.index, minlength=self.n + 1)[1:]


@dataclass(frozen=True)
class Overlaps:
    """Sparse IoU: one entry per (true, pred) pair of nuclei that share at least one pixel.

    Entries are sorted by ``rows`` and then ``cols``.

    Attributes:
        ids_true: Sorted ids of the true (first) image's nuclei, shape (n_true,).
        ids_pred: Sorted ids of the predicted (second) image's nuclei, shape (n_pred,).
        rows: Index into ``ids_true`` of each pair.
        cols: Index into ``ids_pred`` of each pair.
        iou: IoU of each pair (float64, > 0).
    """

    ids_true: np.ndarray
    ids_pred: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    iou: np.ndarray

    def true_best_iou(self) -> np.ndarray:
        """Best IoU of each true nucleus with any predicted nucleus (0 when untouched)."""
        best = np.zeros(self.ids_true.size, np.float64)
        np.maximum.at(best, self.rows, self.iou)
        return best

    def pred_best_iou(self) -> np.ndarray:
        """Best IoU of each predicted nucleus with any true nucleus (0 when untouched)."""
        best = np.zeros(self.ids_pred.size, np.float64)
        np.maximum.at(best, self.cols, self.iou)
        return best


def _check_labels(labels: np.ndarray, name: str) -> np.ndarray:
    """Validate an instance label array and return it flattened (no copy when possible)."""
    arr = np.asarray(labels)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name}: instance labels must be integers, got dtype {arr.dtype}")
    if arr.size and np.issubdtype(arr.dtype, np.signedinteger) and arr.min() < 0:
        raise ValueError(f"{name}: instance labels must be >= 0, found {arr.min()}")
    if arr.dtype == np.uint64:  # bincount and indexing need a signed type
        if arr.size and int(arr.max()) > np.iinfo(np.int64).max:
            raise ValueError(f"{name}: instance labels must be below 2**63")
        arr = arr.astype(np.int64)
    return arr.reshape(-1)


def _relabel(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map labels to consecutive indices 0..n (0 stays background).

    Returns:
        ``(ids, index)``: the sorted positive ids (n,) and an int64 array like ``flat`` where
        background is 0 and id ``ids[k]`` is ``k + 1``.
    """
    if flat.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    top = int(flat.max())
    if top <= _DENSE_LUT_FACTOR * flat.size + 1024:
        present = np.bincount(flat, minlength=top + 1) > 0
        present[0] = False
        ids = np.flatnonzero(present)
        lut = np.cumsum(present, dtype=np.int64)
        lut[0] = 0
        return ids.astype(np.int64), lut[flat]
    uniq, inverse = np.unique(flat, return_inverse=True)
    if uniq[0] == 0:
        return uniq[1:].astype(np.int64), inverse.astype(np.int64)
    return uniq.astype(np.int64), inverse.astype(np.int64) + 1


def label_index(labels: np.ndarray | LabelIndex, name: str = "labels") -> LabelIndex:
    """Renumber an instance label image 1..N (a :class:`LabelIndex` is returned as it is).

    Args:
        labels: Integer (or bool) instance labels, 0 = background.
        name: Named in error messages.

    Returns:
        The :class:`LabelIndex` (new arrays; ``labels`` is not modified).

    Raises:
        ValueError: The labels are not integers, are negative, or do not fit in int64.
    """
    if isinstance(labels, LabelIndex):
        return labels
    ids, index = _relabel(_check_labels(labels, name))
    return LabelIndex(ids=ids, index=index, shape=tuple(np.shape(labels)))


def overlaps(
    true_labels: np.ndarray | LabelIndex, pred_labels: np.ndarray | LabelIndex
) -> Overlaps:
    """Sparse IoU of all overlapping (true, pred) pairs of nuclei.

    Args:
        true_labels: Instance labels, or their :class:`LabelIndex` (to renumber an image that
            is compared many times only once).
        pred_labels: Instance labels of the same shape, or their :class:`LabelIndex`.

    Returns:
        The :class:`Overlaps`.

    Raises:
        ValueError: If the shapes differ, the labels are not integers or are negative.
    """
    true_shape = true_labels.shape if isinstance(true_labels, LabelIndex) else np.shape(true_labels)
    pred_shape = pred_labels.shape if isinstance(pred_labels, LabelIndex) else np.shape(pred_labels)
    if tuple(true_shape) != tuple(pred_shape):
        raise ValueError(
            f"true and predicted labels differ in shape: {tuple(true_shape)} vs {tuple(pred_shape)}"
        )
    true_index = label_index(true_labels, "true_labels")
    pred_index = label_index(pred_labels, "pred_labels")
    t, p = true_index.index, pred_index.index
    n_p = pred_index.n
    both = (t > 0) & (p > 0)
    codes = (t[both] - 1) * n_p + (p[both] - 1)
    pairs, inter = np.unique(codes, return_counts=True)
    rows, cols = np.divmod(pairs, max(n_p, 1))
    union = true_index.areas()[rows] + pred_index.areas()[cols] - inter
    iou = inter / union.astype(np.float64)
    return Overlaps(
        true_index.ids, pred_index.ids, rows.astype(np.int64), cols.astype(np.int64), iou
    )


def iou_matrix(
    true_labels: np.ndarray, pred_labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersection over union of every true nucleus with every predicted nucleus.

    A 1000 x 1000 image with 500 nuclei takes a few tens of milliseconds.

    Args:
        true_labels: Integer instance labels, 0 = background.
        pred_labels: Integer instance labels of the same shape.

    Returns:
        ``(ids_true, ids_pred, iou)`` with the sorted positive ids and the dense
        ``(n_true, n_pred)`` float64 IoU matrix (rows follow ``ids_true``).

    Raises:
        ValueError: If the shapes differ, the labels are not integers or are negative.
    """
    ov = overlaps(true_labels, pred_labels)
    iou = np.zeros((ov.ids_true.size, ov.ids_pred.size), np.float64)
    iou[ov.rows, ov.cols] = ov.iou
    return ov.ids_true, ov.ids_pred, iou


def best_match_iou(labels: np.ndarray, other: np.ndarray) -> np.ndarray:
    """For each nucleus of ``labels`` (ascending id), its best IoU with any nucleus of ``other``.

    Args:
        labels: (H, W) instance labels.
        other: (H, W) instance labels of another segmentation.

    Returns:
        (N,) float64 best IoU per nucleus of ``labels`` (0 when it overlaps nothing).

    Raises:
        ValueError: If the shapes differ, the labels are not integers or are negative.
    """
    return overlaps(labels, other).true_best_iou()
