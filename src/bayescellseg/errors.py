"""Exceptions raised for bad user input."""

from __future__ import annotations

from pathlib import Path


class BayesCellSegError(Exception):
    """Base class of the package's own errors."""


class InputError(BayesCellSegError, ValueError):
    """A user-supplied file or value cannot be used.

    Args:
        path: The file (or folder, or CSV row) the problem was found in.
        problem: A short sentence saying what is wrong and, where useful, what is supported.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class MultichannelError(InputError):
    """A multichannel image read without a choice of its nuclear channel.

    Args:
        path: The image file.
        problem: The refusal, naming the channel count and how to choose.
        n_channels: How many channels (planes) the image has.
    """

    def __init__(self, path: str | Path, problem: str, n_channels: int) -> None:
        super().__init__(path, problem)
        self.n_channels = n_channels


class OutputError(BayesCellSegError):
    """An output file or folder cannot be written (permissions, disk full, another run).

    Args:
        path: The file or folder that could not be written.
        problem: What went wrong.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
