"""When a nucleus or an image needs review: the thresholds stored in a model folder.

The scores they are compared with are described in :mod:`bayescellseg.postprocess.nuclei`;
:mod:`bayescellseg.postprocess.tune` fits them on validation images.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from bayescellseg.settings import from_user_dict

__all__ = ["ReviewThresholds"]


@dataclass(frozen=True)
class ReviewThresholds:
    """When a nucleus or an image is flagged for review.

    Attributes:
        nucleus_uncertainty: A nucleus is flagged when its uncertainty is above this. The default
            0.3 flags nuclei whose mean IoU with the samples' nuclei is below 0.7.
        image_uncertainty: An image is flagged when its uncertainty is above this. The default
            0.3 flags images whose expected DSB score from sample agreement is below 0.7.
        max_flagged_fraction: An image is flagged when more than this fraction of its nuclei
            are flagged.
    """

    nucleus_uncertainty: float = 0.3
    image_uncertainty: float = 0.3
    max_flagged_fraction: float = 0.25

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{f.name} must be a finite number >= 0, got {value!r}")

    def to_dict(self) -> dict[str, float]:
        """Plain JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "review") -> ReviewThresholds:
        """Build from a dict as written by :meth:`to_dict`; missing keys keep their defaults.

        Raises:
            InputError: Unknown keys or invalid values.
        """
        return from_user_dict(cls, data, source, "review threshold")
