"""Six real DSB2018 (BBBC038, CC0) images bundled in the Kaggle layout, for the demo and tests.

They come from the validation part of the split in ``bayescellseg/data/splits/dsb2018_stage1.json``,
so a model trained on the training part has never seen them. See ``samples/README.md``.
"""

from __future__ import annotations

from pathlib import Path

from bayescellseg.io.dsb import list_dsb_ids


def sample_root() -> Path:
    """Folder holding the bundled samples in the DSB2018 layout (``<id>/images``, ``<id>/masks``)."""
    return Path(__file__).resolve().parent / "dsb2018"


def sample_ids() -> list[str]:
    """Sorted ids of the bundled samples."""
    return list_dsb_ids(sample_root())
