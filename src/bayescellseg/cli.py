"""Command-line interface: parses arguments and calls library functions, nothing more."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bayescellseg import __version__
from bayescellseg.errors import BayesCellSegError


def _cmd_data_check(args: argparse.Namespace) -> int:
    from bayescellseg.io.check import check_dataset, format_reports

    reports = [check_dataset(path) for path in args.path]
    print(format_reports(reports))
    return 1 if any(r.problems for r in reports) else 0


def _cmd_train(args: argparse.Namespace) -> int:
    import logging

    from bayescellseg.data.sources import build_sources
    from bayescellseg.train.config import load_train_config
    from bayescellseg.train.trainer import train

    logging.basicConfig(level=logging.INFO, format="%(message)s")

    overrides = {k: v for k, v in vars(args).items() if k in _TRAIN_OVERRIDES and v is not None}
    config_path = args.config
    stored = Path(args.out) / "training_config.json"
    if args.resume and config_path is None and stored.is_file():
        config_path = stored  # resume with the run's own settings (flags may still override)
    if args.train_precision != "auto":
        overrides["amp"] = args.train_precision == "bf16"
    specs = build_sources(
        args.data, args.val_data, args.train_data, args.labels, args.groups, args.source_weight
    )
    if specs:
        overrides["sources"] = [s.to_dict() for s in specs]
    config = load_train_config(config_path, overrides)
    train(None, args.out, config, resume=args.resume, overwrite=args.overwrite)
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from bayescellseg.inference.batch import PredictOptions, predict_batch

    options = PredictOptions(
        n_samples=args.samples,
        tta=args.tta,
        device=args.device,
        tile_size=args.tile,
        overwrite=args.overwrite,
        seed=args.seed,
        diameter=args.diameter,
        resume=args.resume,
        precision=args.precision,
    )
    summary = predict_batch(args.inputs, args.model, args.out, options)
    return 1 if summary.n_failed else 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from bayescellseg.evaluate import EvaluateOptions, evaluate_model, evaluate_predictions

    def usage(problem: str) -> int:
        print(f"bayescellseg evaluate: error: {problem}", file=sys.stderr)
        return 2

    options = EvaluateOptions(
        seed=args.seed,
        overwrite=args.overwrite,
        diameter=args.diameter,
        precision=args.precision,
    )
    if args.pred is not None:
        if args.model is not None or args.data:
            return usage("give either --pred DIR --truth PATH, or --model DIR --data PATH")
        if args.truth is None:
            return usage("--pred needs --truth (DSB folder, label-image folder or RLE CSV)")
        metrics = evaluate_predictions(args.pred, args.truth, args.out, options=options)
        return 1 if metrics.get("failures") else 0
    if not args.data:
        return usage("give either --pred DIR --truth PATH, or --model DIR --data PATH")
    metrics = evaluate_model(
        args.model,
        args.data,
        args.out,
        split=args.split,
        n_samples=args.samples,
        tta=args.tta,
        limit=args.limit,
        device=args.device,
        options=options,
    )
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
    from bayescellseg.evaluation.calibrate import calibrate_model, format_calibration

    split = None if args.split == "all" else args.split
    report = calibrate_model(
        args.model,
        args.data,
        split=split,
        n_samples=args.samples,
        limit=args.limit,
        seed=args.seed,
        device=args.device,
        split_file=args.split_file,
        fit_region=args.fit_region,
        bias=args.bias,
        quality_target=args.quality_target,
        write=not args.dry_run,
        log=lambda line: print(line, file=sys.stderr, flush=True),
        precision=args.precision,
    )
    print(format_calibration(report))
    where = "not written (--dry-run)" if args.dry_run else f"written to {args.model}/config.json"
    print(f"Settings {where}.")
    return 0


_TRAIN_OVERRIDES = {
    "preset",
    "val_fraction",
    "skip_bad",
    "method",
    "epochs",
    "batch_size",
    "base_channels",
    "depth",
    "lr",
    "seed",
    "device",
    "crop",
    "n_members",
    "dropout_rate",
    "dropout_placement",
    "steps_per_epoch",
    "cache_dir",
    "workers",
    "val_limit",
    "scheduler",
    "weight_decay",
    "amp",
    "split",
    "num_threads",
    "channels_last",
    "init_from",
    "brightfield_share",
    "scale_range",
}


PRECISION_HELP = (
    "precision of the network: auto (default: bf16 autocast + channels-last on CPUs with "
    "native bf16 such as AVX-512 BF16 / AMX and on CUDA, fp32 elsewhere), fp32 (the reference) "
    "or bf16"
)


def _add_precision(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--precision", choices=["auto", "fp32", "bf16"], default="auto", help=PRECISION_HELP
    )


DIAMETER_HELP = (
    "typical nucleus diameter in pixels: the image is resized so its nuclei match the "
    "model's training size; 'auto' estimates it per image and resizes only images outside "
    "the size range the model handles (default: no resizing)"
)


def build_parser() -> argparse.ArgumentParser:
    """Build the ``bayescellseg`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="bayescellseg",
        description="Nucleus segmentation with a Bayesian U-Net and measured uncertainty.",
    )
    parser.add_argument("--version", action="version", version=f"bayescellseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="inspect datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    check = data_sub.add_parser("check", help="summarise a dataset folder and list its problems")
    check.add_argument(
        "path", type=Path, nargs="+", help="DSB2018 layouts or folders of images + label images"
    )
    check.set_defaults(func=_cmd_data_check)

    tr = sub.add_parser("train", help="train a Bayesian U-Net")
    tr.add_argument(
        "--data",
        nargs="+",
        default=[],
        metavar="[NAME=]DIR",
        help="annotated dataset folders (DSB2018 layout, images/ + labels/, or name.* + "
        "name_labels.*), each a source split into training and validation images",
    )
    tr.add_argument(
        "--val-data", dest="val_data", nargs="+", default=[], metavar="[NAME=]DIR",
        help="validation-only sources",
    )  # fmt: skip
    tr.add_argument(
        "--train-data", dest="train_data", nargs="+", default=[], metavar="[NAME=]DIR",
        help="training-only sources (every image trains)",
    )  # fmt: skip
    tr.add_argument(
        "--labels", action="append", default=[], metavar="NAME=DIR",
        help="take source NAME's labels from DIR/<id>.tif (e.g. corrected labels)",
    )  # fmt: skip
    tr.add_argument(
        "--groups", action="append", default=[], metavar="NAME=FILE[:COLUMN]",
        help="CSV/TSV with id and group columns: a group stays on one side of the split "
        "(default: the folder's index.tsv 'patient' column when present)",
    )  # fmt: skip
    tr.add_argument(
        "--source-weight", dest="source_weight", action="append", default=[],
        metavar="NAME=SHARE", help="share of the training crops from source NAME "
        "(default: by the square root of each source's training-image count)",
    )  # fmt: skip
    tr.add_argument(
        "--val-fraction", dest="val_fraction", type=float,
        help="share of each source kept for validation (default 0.2)",
    )  # fmt: skip
    tr.add_argument(
        "--skip-bad", dest="skip_bad", action="store_true", default=None,
        help="train on the good samples when some cannot be read (default: stop and list them)",
    )  # fmt: skip
    tr.add_argument("--out", type=Path, required=True, help="model folder to create")
    tr.add_argument("--config", type=Path, help="JSON training config (CLI flags override it)")
    tr.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt")
    tr.add_argument("--overwrite", action="store_true", help="start afresh in an existing OUT")
    tr.add_argument("--preset", help="model preset, e.g. 'original'")
    tr.add_argument(
        "--init-from",
        dest="init_from",
        help="start from this model folder's weights and architecture ('bundled': the bundled model)",
    )
    tr.add_argument("--method", choices=["deterministic", "mc_dropout", "variational", "ensemble"])
    tr.add_argument("--epochs", type=int)
    tr.add_argument("--steps-per-epoch", dest="steps_per_epoch", type=int)
    tr.add_argument("--batch-size", dest="batch_size", type=int)
    tr.add_argument("--base-channels", dest="base_channels", type=int)
    tr.add_argument("--depth", type=int)
    tr.add_argument("--dropout-rate", dest="dropout_rate", type=float)
    tr.add_argument(
        "--dropout-placement", dest="dropout_placement", choices=["all", "decoder", "last_k"]
    )
    tr.add_argument("--n-members", dest="n_members", type=int)
    tr.add_argument("--crop", type=int)
    tr.add_argument(
        "--brightfield-share",
        dest="brightfield_share",
        type=float,
        help="fraction of training crops drawn from brightfield/H&E images (default: by count)",
    )
    tr.add_argument(
        "--scale-range", dest="scale_range", type=float, nargs=2, metavar=("LOW", "HIGH"),
        help="random zoom of the training crops (default 0.75 1.33; 0.5 2 for size robustness)",
    )  # fmt: skip
    tr.add_argument(
        "--precision", dest="train_precision", choices=["auto", "fp32", "bf16"], default="auto",
        help="bf16 autocast with fp32 weights, or fp32 (auto: bf16 on CUDA and on CPUs with "
        "native bf16)",
    )  # fmt: skip
    tr.add_argument("--lr", type=float)
    tr.add_argument("--seed", type=int)
    tr.add_argument("--device", help="cpu (default), cuda, cuda:1, ...")
    tr.add_argument(
        "--cache-dir", dest="cache_dir", type=Path, help="where decoded arrays are cached"
    )
    tr.add_argument("--workers", type=int, help="data-loader worker processes")
    tr.add_argument(
        "--val-limit", dest="val_limit", type=int, help="validate on the first N val images"
    )
    tr.add_argument("--num-threads", dest="num_threads", type=int, help="torch CPU threads")
    tr.add_argument("--scheduler", choices=["cosine", "onecycle"])
    tr.add_argument("--weight-decay", dest="weight_decay", type=float)
    tr.add_argument(
        "--split",
        help="split JSON file (default: made per source, the bundled split for DSB2018)",
    )
    tr.set_defaults(func=_cmd_train)

    pr = sub.add_parser("predict", help="segment images and report their uncertainty")
    pr.add_argument("inputs", nargs="+", type=Path, help="image files or folders")
    pr.add_argument(
        "--model", type=Path, default=None, help="model folder (default: bundled model)"
    )
    pr.add_argument("--out", type=Path, required=True, help="output folder")
    pr.add_argument(
        "--samples",
        type=int,
        default=None,
        help="stochastic samples T (default: model's; 0 = one deterministic pass)",
    )
    pr.add_argument("--tta", action="store_true", help="cross samples with the 8 flips/rotations")
    pr.add_argument("--tile", type=int, default=512, help="tile size for large images")
    pr.add_argument("--device", default="cpu")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    pr.add_argument(
        "--resume",
        action="store_true",
        help="finish an interrupted batch in --out: keep images whose outputs are complete, "
        "redo the others (same model and options)",
    )
    pr.add_argument("--diameter", default=None, help=DIAMETER_HELP)
    _add_precision(pr)
    pr.set_defaults(func=_cmd_predict)

    ev = sub.add_parser(
        "evaluate", help="score predictions: segmentation, calibration, uncertainty"
    )
    ev.add_argument("--pred", type=Path, help="folder written by 'predict'")
    ev.add_argument("--truth", type=Path, help="DSB layout, label-image folder or Kaggle RLE CSV")
    ev.add_argument("--model", type=Path, help="model folder: predict, then score")
    ev.add_argument("--data", type=Path, nargs="+", help="dataset(s) to predict and score")
    ev.add_argument(
        "--split", default=None, help="'val' or 'train' to use the stored split of DSB2018"
    )
    ev.add_argument("--samples", type=int, default=None)
    ev.add_argument("--tta", action="store_true")
    ev.add_argument("--limit", type=int, default=None, help="score only the first N images")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--out", type=Path, required=True, help="report folder")
    ev.add_argument("--overwrite", action="store_true")
    ev.add_argument("--diameter", default=None, help=DIAMETER_HELP + " (with --model)")
    _add_precision(ev)
    ev.set_defaults(func=_cmd_evaluate)

    ca = sub.add_parser(
        "calibrate",
        help="fit temperature, logit bias, watershed settings and review thresholds on validation images",
    )
    ca.add_argument("--model", type=Path, required=True, help="model folder (updated in place)")
    ca.add_argument(
        "--data",
        type=Path,
        required=True,
        help="DSB2018 stage1_train (or any dataset with --split all)",
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
    ca.add_argument("--limit", type=int, default=None, help="use only the first N images")
    ca.add_argument("--seed", type=int, default=0)
    ca.add_argument("--device", default="cpu")
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
    _add_precision(ca)
    ca.set_defaults(func=_cmd_calibrate)
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
    import tempfile
    import time
    import traceback

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
        from bayescellseg.malloc import keep_freed_memory

        keep_freed_memory()
    try:
        return int(args.func(args))
    except (BayesCellSegError, FileExistsError, FileNotFoundError) as err:
        print(f"bayescellseg: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:  # permissions, disk full, ...: the environment, not a bug
        print(f"bayescellseg: error: {_os_error_message(err)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("bayescellseg: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the last line of defence: log, never a traceback
        return _internal_error(err)


if __name__ == "__main__":
    sys.exit(main())
