"""The ``predict``, ``evaluate``, ``calibrate`` and ``data check`` subcommands.

Each loads the model once (:meth:`Segmenter.load`) and hands it to its pipeline
(:mod:`bayescellseg.pipelines`), with the console's progress bar.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bayescellseg.cli import predict
from bayescellseg.cli.console import console
from bayescellseg.cli.predict import MODEL_HELP, load_segmenter
from bayescellseg.evaluation.calibration_report import format_calibration
from bayescellseg.evaluation.run import EvaluateOptions
from bayescellseg.inference.arguments import DEFAULT_DIAMETER
from bayescellseg.inference.device import DEVICE_HELP
from bayescellseg.io.check import format_reports
from bayescellseg.pipelines.calibrate import CalibrateOptions, calibrate_model
from bayescellseg.pipelines.check import check_datasets
from bayescellseg.pipelines.evaluate import evaluate_model, evaluate_predictions

PRECISION_HELP = (
    "precision of the network: auto (default: bf16 autocast + channels-last on CPUs with "
    "native bf16 such as AVX-512 BF16 / AMX and on CUDA, fp32 elsewhere), fp32 (the reference) "
    "or bf16"
)
DIAMETER_HELP = (
    "typical nucleus diameter in pixels: the image is resized so its nuclei match the "
    "model's training size; 'auto' (the default) estimates it per image and resizes only "
    "images outside the size range the model handles; 'none': no resizing"
)


def _cmd_data_check(args: argparse.Namespace) -> int:
    with console(args.quiet) as progress:
        reports = check_datasets(args.path, progress)
    print(format_reports(reports))
    return 1 if any(r.problems for r in reports) else 0


def _usage(problem: str) -> int:
    print(f"bayescellseg evaluate: error: {problem}", file=sys.stderr)
    return 2


def _cmd_evaluate(args: argparse.Namespace) -> int:
    options = EvaluateOptions(
        seed=args.seed,
        overwrite=args.overwrite,
        diameter=args.diameter,
        split=args.split,
        n_samples=args.samples,
        tta=args.tta,
        limit=args.limit,
        min_quality=args.min_quality,
        review_alpha=args.review_alpha,
        review_fraction=args.review_fraction,
    )
    if args.pred is not None:
        if args.model is not None or args.data:
            return _usage("give either --pred DIR --truth PATH, or --model DIR --data PATH")
        if args.truth is None:
            return _usage("--pred needs --truth (DSB folder, label-image folder or RLE CSV)")
        with console(args.quiet) as progress:
            metrics = evaluate_predictions(args.pred, args.truth, args.out, options, progress)
        return 1 if metrics.get("failures") else 0
    if not args.data:
        return _usage("give either --pred DIR --truth PATH, or --model DIR --data PATH")
    segmenter = load_segmenter(args)
    with console(args.quiet) as progress:
        metrics = evaluate_model(segmenter, args.data, args.out, options, progress)
    return 1 if metrics.get("failures") else 0


def _score_in_unit_interval(text: str) -> float:
    """argparse type: a score in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def _cmd_calibrate(args: argparse.Namespace) -> int:
    options = CalibrateOptions(
        split=None if args.split == "all" else args.split,
        split_file=args.split_file,
        n_samples=args.samples,
        limit=args.limit,
        seed=args.seed,
        tile_size=args.tile,
        fit_region=args.fit_region,
        bias=args.bias,
        quality_target=args.quality_target,
        write=not args.dry_run,
    )
    segmenter = load_segmenter(args)
    with console(args.quiet) as progress:
        report = calibrate_model(segmenter, args.data, options, progress)
    print(format_calibration(report))
    where = (
        "not written (--dry-run)" if args.dry_run else f"written to {args.model}/calibration.json"
    )
    print(f"Settings {where}.")
    return 0


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--precision", choices=["auto", "fp32", "bf16"], default="auto", help=PRECISION_HELP
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar and no per-image lines"
    )


def add_data_parser(sub: argparse._SubParsersAction) -> None:
    """The ``data check`` subcommand."""
    data = sub.add_parser("data", help="inspect datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    check = data_sub.add_parser("check", help="summarise a dataset folder and list its problems")
    check.add_argument(
        "path", type=Path, nargs="+", help="DSB2018 layouts or folders of images + label images"
    )
    check.add_argument("--quiet", action="store_true", help="no progress bar")
    check.set_defaults(func=_cmd_data_check)


def add_predict_parser(sub: argparse._SubParsersAction) -> None:
    """The ``predict`` subcommand (:mod:`bayescellseg.cli.predict`)."""
    predict.add_predict_parser(sub, _add_common)


def _open_unit_interval(text: str) -> float:
    """argparse type: a share in (0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return value


def add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    """The ``evaluate`` subcommand."""
    ev = sub.add_parser(
        "evaluate", help="score predictions: segmentation, calibration, uncertainty"
    )
    ev.add_argument("--pred", type=Path, help="folder written by 'predict'")
    ev.add_argument("--truth", type=Path, help="DSB layout, label-image folder or Kaggle RLE CSV")
    ev.add_argument("--model", type=Path, help=MODEL_HELP + ": predict, then score")
    ev.add_argument("--data", type=Path, nargs="+", help="dataset(s) to predict and score")
    ev.add_argument(
        "--split", default=None, help="'val' or 'train' to use the stored split of DSB2018"
    )
    ev.add_argument("--samples", type=int, default=None)
    ev.add_argument("--tta", action="store_true")
    ev.add_argument("--limit", type=int, default=None, help="score only the first N images")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--device", default="auto", help=DEVICE_HELP)
    ev.add_argument("--out", type=Path, required=True, help="report folder")
    ev.add_argument("--overwrite", action="store_true")
    ev.add_argument("--diameter", default=DEFAULT_DIAMETER, help=DIAMETER_HELP + " (with --model)")
    ev.add_argument(
        "--min-quality", type=_score_in_unit_interval, default=None,
        help="check the trust review rule: of the images it leaves unflagged, the share with a "
        "true DSB score >= this (needs the model's trust.json)",
    )  # fmt: skip
    ev.add_argument("--review-alpha", type=_open_unit_interval, default=0.1,
                    help="the rule's allowed share below --min-quality (default 0.1)")  # fmt: skip
    ev.add_argument("--review-fraction", type=_open_unit_interval, default=0.2,
                    help="review budget whose oracle-gain share is measured (default 0.2)")  # fmt: skip
    _add_common(ev)
    ev.set_defaults(func=_cmd_evaluate)


def add_calibrate_parser(sub: argparse._SubParsersAction) -> None:
    """The ``calibrate`` subcommand."""
    ca = sub.add_parser(
        "calibrate",
        help="fit temperature, logit bias, watershed settings and review thresholds on validation images",
    )
    ca.add_argument(
        "--model", type=Path, required=True, help="model folder (its calibration.json is written)"
    )
    ca.add_argument(
        "--data",
        type=Path,
        nargs="+",
        required=True,
        help="DSB2018 stage1_train (or any dataset with --split all); several folders are "
        "pooled into one fit",
    )
    ca.add_argument(
        "--split",
        default="val",
        choices=["val", "train", "all"],
        help="images of the stored split (default val); all = every image of --data",
    )
    ca.add_argument(
        "--split-file",
        dest="split_file",
        type=Path,
        help="split JSON (default: the bundled DSB2018 split)",
    )
    ca.add_argument(
        "--samples", type=int, default=None, help="stochastic samples T (default: model's)"
    )
    ca.add_argument(
        "--limit", type=int, default=None, help="use only the first N images (of each folder)"
    )
    ca.add_argument("--seed", type=int, default=0)
    ca.add_argument("--tile", type=int, default=512, help="tile size for large images (as predict)")
    ca.add_argument("--device", default="auto", help=DEVICE_HELP)
    ca.add_argument(
        "--fit-region",
        dest="fit_region",
        choices=["band", "all"],
        default="band",
        help="pixels of the temperature/bias fit: within 3 px of a true nucleus boundary "
        "(default) or all",
    )
    ca.add_argument(
        "--no-bias",
        dest="bias",
        action="store_false",
        help="fit the temperature only (no logit bias)",
    )
    ca.add_argument(
        "--quality-target",
        dest="quality_target",
        type=_score_in_unit_interval,
        default=0.7,
        help="images whose true DSB score is below this count as needing review when the "
        "image flag's threshold is tuned (default 0.7)",
    )
    ca.add_argument("--dry-run", dest="dry_run", action="store_true", help="report, do not write")
    _add_common(ca)
    ca.set_defaults(func=_cmd_calibrate)
