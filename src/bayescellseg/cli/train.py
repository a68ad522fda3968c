"""The ``bayescellseg train`` subcommand: its options and the call of the trainer."""

from __future__ import annotations

import argparse
from pathlib import Path


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


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand to the CLI's subparsers."""
    tr = sub.add_parser("train", help="train a Bayesian U-Net")
    _add_source_arguments(tr)
    _add_run_arguments(tr)
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
    tr.add_argument(
        "--val-fraction", dest="val_fraction", type=float,
        help="share of each source kept for validation (default 0.2)",
    )  # fmt: skip
    tr.add_argument(
        "--skip-bad", dest="skip_bad", action="store_true", default=None,
        help="train on the good samples when some cannot be read (default: stop and list them)",
    )  # fmt: skip


def _add_run_arguments(tr: argparse.ArgumentParser) -> None:
    """The run: output folder, resume, model and optimisation settings."""
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
