"""The ``bayescellseg train`` subcommand: its options and the call of the trainer."""

from __future__ import annotations

import argparse
from pathlib import Path

from bayescellseg.train.cli_args import add_config_flags, config_overrides


def _cmd_train(args: argparse.Namespace) -> int:
    import logging

    from bayescellseg.data.sources import build_sources
    from bayescellseg.train.config import load_train_config
    from bayescellseg.train.trainer import train

    logging.basicConfig(level=logging.INFO, format="%(message)s")

    overrides = config_overrides(args)
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


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand to the CLI's subparsers."""
    tr = sub.add_parser("train", help="train a Bayesian U-Net")
    _add_source_arguments(tr)
    _add_run_arguments(tr)
    add_config_flags(tr)  # one option per config field (train.cli_args)
    tr.set_defaults(func=_cmd_train)


def _add_source_arguments(tr: argparse.ArgumentParser) -> None:
    """The training data: sources, labels, groups, weights, validation share."""
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


def _add_run_arguments(tr: argparse.ArgumentParser) -> None:
    """The run: output folder, resume, model and optimisation settings."""
    tr.add_argument("--out", type=Path, required=True, help="model folder to create")
    tr.add_argument("--config", type=Path, help="JSON training config (CLI flags override it)")
    tr.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt")
    tr.add_argument("--overwrite", action="store_true", help="start afresh in an existing OUT")
    tr.add_argument(
        "--precision", dest="train_precision", choices=["auto", "fp32", "bf16"], default="auto",
        help="bf16 autocast with fp32 weights, or fp32 (auto: bf16 on CUDA and on CPUs with "
        "native bf16)",
    )  # fmt: skip
