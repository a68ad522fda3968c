"""Per-image progress of a pipeline: the hook the CLI turns into a progress bar.

Pipelines log what happened to each image through :mod:`logging`; a :class:`Progress` only
counts images, so a caller can show a bar with an ETA (the CLI uses tqdm) or nothing.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Receives one call per stage and per finished image."""

    def start(self, total: int, what: str) -> None:
        """A stage of ``total`` images called ``what`` begins."""

    def advance(self, name: str) -> None:
        """One image (``name``) of the stage is done."""

    def close(self) -> None:
        """The stage is over."""


class NoProgress:
    """A :class:`Progress` that shows nothing (the library default)."""

    def start(self, total: int, what: str) -> None:
        """Ignore the stage."""

    def advance(self, name: str) -> None:
        """Ignore the image."""

    def close(self) -> None:
        """Nothing to close."""
