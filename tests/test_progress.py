"""Progress bars and logging set-up for the CLI."""

from __future__ import annotations

import io
import logging

from bayescellseg.progress import progress, setup_logging


def test_bar_shows_count_and_eta_and_yields_items() -> None:
    out = io.StringIO()
    items = list(progress(range(3), desc="predict", file=out))
    assert items == [0, 1, 2]
    text = out.getvalue()
    assert "predict" in text and "3/3" in text and "image" in text


def test_quiet_draws_nothing() -> None:
    out = io.StringIO()
    assert list(progress(iter("ab"), total=2, quiet=True, file=out)) == ["a", "b"]
    assert out.getvalue() == ""


def test_logging_levels_and_no_duplicate_handlers() -> None:
    out = io.StringIO()
    setup_logging(stream=out)
    logger = setup_logging(stream=out)
    logging.getLogger("bayescellseg.io.pixelsize").info("read pixel size")
    assert out.getvalue() == "INFO: read pixel size\n"
    setup_logging(quiet=True, stream=out)
    logging.getLogger("bayescellseg.io").info("hidden")
    logging.getLogger("bayescellseg.io").warning("shown")
    assert out.getvalue().endswith("WARNING: shown\n") and "hidden" not in out.getvalue()
    assert sum(getattr(h, "_bayescellseg", False) for h in logger.handlers) == 1
    for handler in list(logger.handlers):  # leave the logger as other tests expect it
        logger.removeHandler(handler)
    logger.propagate, logger.level = True, logging.NOTSET
