"""Progress bars (tqdm, with ETA) and log output for the command-line pipelines.

Library code reports through :mod:`logging` (logger ``bayescellseg.*``) and never prints; the
CLI calls :func:`setup_logging` once and wraps its loops in :func:`progress`. ``--quiet`` turns
both off (warnings and errors still show). Bars go to stderr, so stdout stays clean for
messages a script may read; when stderr is not a terminal (a log file, CI) the bar is redrawn
at most every :data:`NON_TTY_INTERVAL_S` seconds instead of several times a second.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import IO, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
NON_TTY_INTERVAL_S = 30.0
LOGGER = "bayescellseg"


def progress(
    items: Iterable[T],
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "image",
    quiet: bool = False,
    leave: bool = True,
    file: IO[str] | None = None,
) -> Iterator[T]:
    """Iterate over ``items`` with a progress bar (count, rate and ETA).

    Args:
        items: What to iterate over.
        total: Number of items, when ``items`` has no ``len``.
        desc: Label in front of the bar (e.g. ``predict``, ``tiles``).
        unit: What one item is (``image``, ``tile``).
        quiet: No bar at all.
        leave: Keep the finished bar on screen (False for inner bars, e.g. tiles).
        file: Where to draw (default: stderr).

    Yields:
        The items, unchanged.
    """
    stream = sys.stderr if file is None else file
    tty = bool(getattr(stream, "isatty", lambda: False)())
    yield from tqdm(
        items,
        total=total,
        desc=desc,
        unit=unit,
        disable=quiet,
        leave=leave,
        file=stream,
        dynamic_ncols=tty,
        mininterval=0.1 if tty else NON_TTY_INTERVAL_S,
    )


def setup_logging(quiet: bool = False, stream: IO[str] | None = None) -> logging.Logger:
    """Send the package's log records to ``stream`` (stderr): INFO and up, or WARNING and up
    with ``quiet``. Safe to call more than once (the handler is replaced, not added again).

    Returns:
        The package logger.
    """
    logger = logging.getLogger(LOGGER)
    for handler in [h for h in logger.handlers if getattr(h, "_bayescellseg", False)]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    handler._bayescellseg = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False
    return logger
