"""Command-line interface: parses arguments and calls library functions, nothing more.

Subcommands: :mod:`~bayescellseg.cli.train` (``train``) and :mod:`~bayescellseg.cli.commands`
(``predict``, ``evaluate``, ``calibrate``, ``data check``); :mod:`~bayescellseg.cli.console`
shows the pipelines' log lines and progress and puts the flags into library messages.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from bayescellseg import __version__
from bayescellseg.cli.commands import (
    add_calibrate_parser,
    add_data_parser,
    add_evaluate_parser,
    add_predict_parser,
)
from bayescellseg.cli.console import cli_message
from bayescellseg.cli.train import add_train_parser
from bayescellseg.errors import BayesCellSegError
from bayescellseg.malloc import keep_freed_memory


def build_parser() -> argparse.ArgumentParser:
    """Build the ``bayescellseg`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="bayescellseg",
        description="Nucleus segmentation with a Bayesian U-Net and measured uncertainty.",
    )
    parser.add_argument("--version", action="version", version=f"bayescellseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_data_parser(sub)
    add_train_parser(sub)
    add_predict_parser(sub)
    add_evaluate_parser(sub)
    add_calibrate_parser(sub)
    return parser


EXIT_OK = 0
"""Every input was processed."""
EXIT_INPUTS_FAILED = 1
"""The run finished, but some inputs could not be used (each is named in the output)."""
EXIT_USAGE = 2
"""Bad arguments, configuration, model folder or output folder: nothing (more) was done."""
EXIT_INTERNAL = 3
"""A bug: the traceback is kept in a log file named in the message."""


def _crash_log(err: BaseException) -> Path | None:
    """Write the traceback of ``err`` to a new log file; return its path (None if impossible)."""
    text = (
        f"bayescellseg {__version__}, {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n"
        f"command: {' '.join(sys.argv)}\n\n"
        + "".join(traceback.format_exception(type(err), err, err.__traceback__))
    )
    try:
        fd, name = tempfile.mkstemp(prefix="bayescellseg-crash-", suffix=".log")
        with open(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError:
        return None
    return Path(name)


def _internal_error(err: BaseException) -> int:
    log = _crash_log(err)
    where = f"the traceback is in {log}" if log else "the traceback could not be saved"
    print(
        f"bayescellseg: internal error ({type(err).__name__}: {err}); this is a bug, not a "
        f"problem with your input; {where}. Please report it with that file.",
        file=sys.stderr,
    )
    return EXIT_INTERNAL


def _os_error_message(err: OSError) -> str:
    """``FILE: reason`` for an OSError (the file named when the error knows it)."""
    if err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    return str(err)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bayescellseg`` console script.

    Exit codes: 0 all done, 1 some inputs failed, 2 usage or configuration error (also an
    existing output without ``--overwrite``, or an output folder that cannot be written),
    3 internal error (the traceback goes to a log file named in the message), 130 interrupted.

    Args:
        argv: The arguments; None reads ``sys.argv``, as the installed command does, and then
            also tunes the allocator for large tensors (:mod:`bayescellseg.malloc`).
    """
    args = build_parser().parse_args(argv)  # usage errors: argparse exits with 2
    if argv is None:
        keep_freed_memory()
    try:
        return int(args.func(args))
    except (BayesCellSegError, FileExistsError, FileNotFoundError) as err:
        print(f"bayescellseg: error: {cli_message(str(err))}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:  # permissions, disk full, ...: the environment, not a bug
        print(f"bayescellseg: error: {_os_error_message(err)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("bayescellseg: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the last line of defence: log, never a traceback
        return _internal_error(err)
