"""What the CLI shows while a pipeline runs: log lines, a progress bar, flags in messages.

The library logs to the ``bayescellseg`` logger and names its options by their parameter names
(``diameter``, ``overwrite=True``, ``device='cpu'``); :func:`cli_message` turns those into the
command's flags.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterator

from tqdm import tqdm

#: Library parameter name -> the CLI flag that sets it.
FLAGS = {
    "channel": "--channel",
    "channels": "--channels",
    "data": "--data",
    "device": "--device",
    "diameter": "--diameter",
    "groups": "--groups",
    "labels": "--labels",
    "limit": "--limit",
    "min_quality": "--min-quality",
    "n_samples": "--samples",
    "overwrite": "--overwrite",
    "pixel_size": "--pixel-size",
    "precision": "--precision",
    "resume": "--resume",
    "review_alpha": "--review-alpha",
    "review_fraction": "--review-fraction",
    "save": "--save",
    "skip_bad": "--skip-bad",
    "split": "--split",
    "tile_size": "--tile",
    "weights": "--source-weight",  # data.sources.build_sources(weights=...)
}


#: ``name=value`` in a message: a quoted string, a list or tuple, or a bare token (``True``,
#: ``N``, ``MICRONS``, ``8um``), not inside a quoted value or a path (``'lab=/x'``, ``/a/b=c``).
_ASSIGNMENT = re.compile(
    r"""(?<![\w'"/.=-])(\w+)=('[^']*'|"[^"]*"|\[[^\]]*\]|\([^)]*\)|[\w.:/+-]*\w)"""
)


def _flag_with_value(match: re.Match[str]) -> str:
    flag, value = FLAGS.get(match[1]), match[2]
    if flag is None or value in ("False", "None"):
        return match[0]
    if value == "True":
        return flag
    if value[0] in "'\"":
        value = value[1:-1]
    elif value[0] in "[(":
        value = ",".join(v.strip(" '\"") for v in value[1:-1].split(",") if v.strip())
    return f"{flag} {value}"


def cli_message(text: str) -> str:
    """A library message with option names as CLI flags: a leading ``diameter: ...`` ->
    ``--diameter: ...``, and for the names in :data:`FLAGS` ``overwrite=True`` ->
    ``--overwrite``, ``device='cpu'`` -> ``--device cpu``, ``pixel_size=MICRONS`` ->
    ``--pixel-size MICRONS``, ``channels=[0, 2]`` -> ``--channels 0,2``."""
    head, sep, rest = text.partition(": ")
    if sep and head in FLAGS:
        text = f"{FLAGS[head]}: {rest}"
    return _ASSIGNMENT.sub(_flag_with_value, text)


class _Handler(logging.Handler):
    """Log records to stdout (info) or stderr (warnings and worse), above a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        stream = sys.stdout if record.levelno < logging.WARNING else sys.stderr
        tqdm.write(cli_message(self.format(record)), file=stream)
        stream.flush()


class BarProgress:
    """A :class:`~bayescellseg.progress.Progress` drawn as a tqdm bar (with ETA) on
    stderr, one step per image.

    Args:
        enabled: False shows nothing (``--quiet``).
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar: tqdm | None = None

    def start(self, total: int, what: str) -> None:
        """Open a bar of ``total`` images."""
        self.close()
        self._bar = tqdm(
            total=total, desc=what, unit="image", disable=not self.enabled, file=sys.stderr,
            dynamic_ncols=True, leave=False, mininterval=0, miniters=1,
        )  # fmt: skip

    def advance(self, name: str) -> None:
        """One image done."""
        if self._bar is not None:
            self._bar.set_postfix_str(name[:24], refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        """Remove the bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@contextlib.contextmanager
def console(quiet: bool = False) -> Iterator[BarProgress]:
    """Show the library's log lines (only warnings with ``quiet``) for the block; yields the
    progress bar to hand to a pipeline. The logger is restored afterwards."""
    logger = logging.getLogger("bayescellseg")
    handler = _Handler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False
    progress = BarProgress(enabled=not quiet)
    try:
        yield progress
    finally:
        progress.close()
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
