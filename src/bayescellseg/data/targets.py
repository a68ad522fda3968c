"""Training targets from instance labels: foreground and contour maps."""

from __future__ import annotations

import numpy as np
from skimage.segmentation import find_boundaries


def make_targets(labels: np.ndarray) -> np.ndarray:
    """Two-channel target ``[foreground, contour]`` for the U-Net.

    * foreground: ``labels > 0``.
    * contour: the *inner* boundary of every nucleus,
      ``skimage.segmentation.find_boundaries(labels, connectivity=1, mode="inner")``: a nucleus
      pixel is a contour pixel when one of its 4-neighbours has a different label (background or
      another nucleus). Two touching nuclei therefore both get a contour line along the shared
      edge, two pixels wide in total, which separates them. The image edge is not a boundary
      (a nucleus cut by the edge of a crop or tile is not outlined there), and contour pixels are
      always foreground pixels.

    Args:
        labels: (H, W) integer instance labels, 0 = background.

    Returns:
        (2, H, W) float32 array with values in {0, 1}.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D (H, W), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must have an integer dtype, got {labels.dtype}")
    targets = np.empty((2, *labels.shape), np.float32)
    targets[0] = labels > 0
    targets[1] = find_boundaries(labels, connectivity=1, mode="inner")
    return targets
