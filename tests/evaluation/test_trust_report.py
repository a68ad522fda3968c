"""The trust section's figures: which OOD quantity is plotted."""

from __future__ import annotations

import numpy as np

from bayescellseg.evaluation.trust_report import _ood_figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_ood_figure_plots_the_level_when_every_image_has_one() -> None:
    """ood_level (flag line 1) when known for every image, else the feature distance."""
    names = ["a", "b"]
    caption, png = _ood_figure(np.array([1.0, 9.0]), np.array([0.2, 1.8]), names, {})
    assert "level" in caption and png[:8] == PNG_MAGIC
    caption, png = _ood_figure(np.array([1.0, 9.0]), np.array([0.2, np.nan]), names, {})
    assert "level" not in caption and "image features" in caption and png[:8] == PNG_MAGIC
