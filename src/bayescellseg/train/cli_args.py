"""The ``bayescellseg train`` options that set a config field, generated from the dataclasses.

A ``TrainConfig`` or ``ModelConfig`` field carrying :data:`~bayescellseg.model.config.CLI_FLAG`
metadata (``train.config.flag(...)``) becomes the option ``--name-with-dashes`` (destination:
the field name). Its argparse type comes from the annotation: ``int``, ``float`` and ``str``
as such (``X | None`` as ``X``), ``bool`` a switch (``store_true``), a ``tuple`` of N numbers
``nargs=N``; the metadata adds ``help``, ``choices``, ``metavar`` or another ``type``. Unset
options are None, so only the flags given on the command line override the config file.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

from bayescellseg.model.config import CLI_FLAG, ModelConfig
from bayescellseg.train.config import TrainConfig

__all__ = ["CONFIG_CLASSES", "add_config_flags", "config_flag_fields", "config_overrides"]

CONFIG_CLASSES: tuple[type, ...] = (TrainConfig, ModelConfig)
"""The dataclasses whose marked fields are options, in the order of the help text."""


def config_flag_fields() -> list[tuple[dataclasses.Field, Any]]:
    """Every field that is a ``train`` option, with its resolved type annotation.

    Returns:
        ``(field, annotation)`` pairs, ``TrainConfig``'s fields first, in declaration order.

    Raises:
        ValueError: Two classes mark a field of the same name.
    """
    out: list[tuple[dataclasses.Field, Any]] = []
    seen: set[str] = set()
    for cls in CONFIG_CLASSES:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if CLI_FLAG not in f.metadata:
                continue
            if f.name in seen:
                raise ValueError(f"two config classes offer the option {f.name!r}")
            seen.add(f.name)
            out.append((f, hints[f.name]))
    return out


def _without_none(annotation: Any) -> Any:
    """``X`` for ``X | None``; the first member of any other union."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return members[0]
    return annotation


def _argparse_options(f: dataclasses.Field, annotation: Any) -> dict[str, Any]:
    """The ``add_argument`` keywords of one field's option."""
    kind = _without_none(annotation)
    extra = dict(f.metadata[CLI_FLAG])
    if kind is bool:
        return {"action": "store_true", "default": None, **extra}
    options: dict[str, Any] = {"default": None}
    origin = typing.get_origin(kind)
    if origin in (tuple, list):
        args = typing.get_args(kind)
        options.update(type=args[0], nargs=len(args) if origin is tuple else "+")
    elif kind in (int, float):
        options["type"] = kind
    elif kind is not str:  # argparse keeps strings as they are
        raise TypeError(f"option --{f.name}: no argparse type for {annotation!r}")
    return {**options, **extra}


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """Add an option for every field of :func:`config_flag_fields` to ``parser``.

    Args:
        parser: The ``train`` sub-command's parser (gains the options; nothing else changes).
    """
    for f, annotation in config_flag_fields():
        parser.add_argument(
            "--" + f.name.replace("_", "-"), dest=f.name, **_argparse_options(f, annotation)
        )


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields set on the command line (options left out are None and skipped).

    Args:
        args: Parsed arguments of a parser given :func:`add_config_flags`.

    Returns:
        ``{field name: value}``, for ``train.config.load_train_config``'s ``overrides``.
    """
    values = vars(args)
    return {
        f.name: values[f.name] for f, _ in config_flag_fields() if values.get(f.name) is not None
    }
