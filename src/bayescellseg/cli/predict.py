"""The ``predict`` subcommand: its flags, and the call of
:func:`~bayescellseg.pipelines.predict.predict_batch` with the bundled or given model."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bayescellseg.cli.console import cli_message, console
from bayescellseg.errors import InputError
from bayescellseg.export import DEFAULT_SAVE, SAVE_CHOICES, parse_save
from bayescellseg.inference.arguments import DEFAULT_DIAMETER
from bayescellseg.inference.device import DEVICE_HELP, resolve_device
from bayescellseg.inference.segmenter import Segmenter
from bayescellseg.io.channels import channels_argument
from bayescellseg.io.pixelsize import pixel_size_argument
from bayescellseg.pipelines.predict import PredictOptions, predict_batch

DIAMETER_HELP = (
    "typical nucleus diameter, in pixels (45) or as a length (8um, needs the pixel size): the "
    "image is resized so its nuclei match the model's training size; 'auto' (the default) "
    "estimates it per image and resizes only images outside the size range the model "
    "handles; 'none': no resizing"
)


def checked(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type`` from a parser that raises InputError (its problem, with flags for
    parameter names, is the message)."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except InputError as err:
            raise argparse.ArgumentTypeError(cli_message(err.problem)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


MODEL_HELP = (
    "model folder, or a bundled model: nuclei (default), nuclei-nc (opt-in, also trained on "
    "MoNuSeg; non-commercial licence)"
)


def unit_interval(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def load_segmenter(args: argparse.Namespace) -> Segmenter:
    """The model of ``--model`` (None: bundled) on the device of ``--device`` (``auto``:
    CUDA if torch sees a GPU, else the CPU)."""
    device = str(resolve_device(args.device))
    segmenter = Segmenter.load(args.model, device=device, precision=args.precision)
    if segmenter.licence is not None:
        print(f"note: this model's weights are licensed {segmenter.licence}", file=sys.stderr)
    return segmenter


def _cmd_predict(args: argparse.Namespace) -> int:
    options = PredictOptions(
        n_samples=args.samples,
        tta=args.tta,
        tile_size=args.tile,
        overwrite=args.overwrite,
        seed=args.seed,
        diameter=args.diameter,
        resume=args.resume,
        save=args.save,
        channel=args.channel,
        channels=args.channels,
        pixel_size=args.pixel_size,
        min_quality=args.min_quality,
        review_fraction=args.review_fraction,
        review_alpha=args.review_alpha,
    )
    segmenter = load_segmenter(args)
    with console(args.quiet) as progress:
        summary = predict_batch(segmenter, args.inputs, args.out, options, progress)
    return 1 if summary.n_failed else 0


def _add_reading(pr: argparse.ArgumentParser) -> None:
    which = pr.add_mutually_exclusive_group()
    which.add_argument(
        "--channel", type=int, default=None, metavar="N",
        help="the nuclear channel of multichannel images (0-based, as napari's channel_axis)",
    )  # fmt: skip
    which.add_argument(
        "--channels", type=checked(channels_argument), default=None, metavar="N,M",
        help="combine several nuclear channels (each rescaled, per-pixel maximum)",
    )  # fmt: skip
    pr.add_argument(
        "--pixel-size", dest="pixel_size", type=checked(pixel_size_argument), default=None,
        metavar="MICRONS",
        help="micrometres per pixel (0.325, 325nm); overrides the files' own calibration",
    )  # fmt: skip
    pr.add_argument("--diameter", default=DEFAULT_DIAMETER, help=DIAMETER_HELP)
    pr.add_argument(
        "--save", type=checked(parse_save), default=DEFAULT_SAVE, metavar="LIST",
        help=f"per-image outputs, comma-separated: {', '.join(SAVE_CHOICES)}, maps (the four "
        "maps) or all (the default); NAME_summary.json is always written",
    )  # fmt: skip


def _add_review(pr: argparse.ArgumentParser) -> None:
    rule = pr.add_mutually_exclusive_group()
    rule.add_argument(
        "--min-quality", dest="min_quality", type=unit_interval, default=None, metavar="Q",
        help="flag the images not certified to reach DSB score Q: of the images not flagged, "
        "at least 1 - --review-alpha score >= Q in expectation, on data like the trust "
        "model's calibration data (needs a model folder with trust.json)",
    )  # fmt: skip
    rule.add_argument(
        "--review-fraction", dest="review_fraction", type=unit_interval, default=None,
        metavar="F",
        help="flag the share F of the batch with the lowest predicted scores (needs trust.json)",
    )  # fmt: skip
    pr.add_argument(
        "--review-alpha", dest="review_alpha", type=float, default=0.1, metavar="A",
        help="allowed expected share of unflagged images below --min-quality (default 0.1)",
    )  # fmt: skip


def add_predict_parser(
    sub: argparse._SubParsersAction, add_common: Callable[[argparse.ArgumentParser], None]
) -> None:
    """The ``predict`` subcommand (``add_common`` adds ``--precision`` and ``--quiet``)."""
    pr = sub.add_parser("predict", help="segment images and report their uncertainty")
    pr.add_argument("inputs", nargs="+", type=Path, help="image files or folders")
    pr.add_argument("--model", type=Path, default=None, help=MODEL_HELP)
    pr.add_argument("--out", type=Path, required=True, help="output folder")
    pr.add_argument(
        "--samples", type=int, default=None,
        help="stochastic samples T (default: model's; 0 = one deterministic pass)",
    )  # fmt: skip
    pr.add_argument("--tta", action="store_true", help="cross samples with the 8 flips/rotations")
    pr.add_argument("--tile", type=int, default=512, help="tile size for large images")
    pr.add_argument("--device", default="auto", help=DEVICE_HELP)
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    pr.add_argument(
        "--resume", action="store_true",
        help="finish an interrupted batch in --out: keep images whose outputs are complete, "
        "redo the others (same model and options)",
    )  # fmt: skip
    _add_reading(pr)
    _add_review(pr)
    add_common(pr)
    pr.set_defaults(func=_cmd_predict)
