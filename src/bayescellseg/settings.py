"""Building settings dataclasses from user-supplied dicts (JSON files, model folders)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

from bayescellseg.errors import InputError

T = TypeVar("T")


def from_user_dict(cls: type[T], data: Any, source: str | Path, what: str) -> T:
    """Build dataclass ``cls`` from ``data``, refusing unknown keys and invalid values.

    Args:
        cls: A dataclass whose ``__post_init__`` validates its values (raising ValueError).
        data: The user's dict; missing keys take their defaults.
        source: Where the dict came from (file, model-folder key), named in errors.
        what: What the settings are, e.g. ``"watershed setting"``, for the messages.

    Raises:
        InputError: ``data`` is not a dict, has unknown keys, or has invalid values.
    """
    if not isinstance(data, dict):
        raise InputError(source, f"{what}s must be a JSON object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(source, f"unknown {what}(s) {unknown}; known: {sorted(known)}")
    try:
        return cls(**data)
    except InputError as err:
        raise InputError(source, err.problem) from None
    except (TypeError, ValueError) as err:
        raise InputError(source, f"invalid {what}s: {err}") from err
