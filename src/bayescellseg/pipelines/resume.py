"""``predict --resume``: which run an output folder belongs to, and what can be kept.

While a run works, ``OUT/.bayescellseg-run.json`` records its identity (model, calibration,
post-processing, review thresholds, trust file and options, without ``overwrite``,
``resume`` and the batch review rule); at the end
``run_config.json`` holds the same entries and the marker is removed. ``--resume`` continues
only a run with the same identity, so one folder never mixes two runs' results. An image
whose output files (those of the run's ``save`` choice) are all present is kept, and its
``summary.csv`` row, predicted score included, is rebuilt from its ``name_summary.json``, so
the batch review rule sees the whole batch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bayescellseg.errors import InputError
from bayescellseg.prediction_folder import RUN_CONFIG

RUN_MARKER = ".bayescellseg-run.json"
IDENTITY_KEYS = (
    "model",
    "model_config",
    "temperature",
    "logit_bias",
    "postprocess",
    "review",
    "nucleus_diameter",
    "trust",
    "options",
)
#: Options a resume may change: they do not change an image's outputs (the review rule is
#: applied to the whole batch at its end).
_NOT_IDENTITY_OPTIONS = ("overwrite", "resume", "min_quality", "review_fraction", "review_alpha")


def run_identity(run_config: dict[str, Any]) -> dict[str, Any]:
    """The entries of a run config that must agree for two runs to share a folder."""
    identity = {k: run_config.get(k) for k in IDENTITY_KEYS}
    options = dict(identity.get("options") or {})
    for key in _NOT_IDENTITY_OPTIONS:
        options.pop(key, None)
    identity["options"] = options
    return json.loads(json.dumps(identity))  # plain JSON types, as read back from a file


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when it is absent or unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    diffs = [k for k in IDENTITY_KEYS if k != "options" and old.get(k) != new.get(k)]
    old_opts, new_opts = old.get("options") or {}, new.get("options") or {}
    diffs += [
        f"{k} {old_opts.get(k)!r} -> {new_opts.get(k)!r}"
        for k in sorted(set(old_opts) | set(new_opts))
        if old_opts.get(k) != new_opts.get(k)
    ]
    return diffs


def earlier_identity(out_dir: Path) -> dict[str, Any] | None:
    """The identity of the run that wrote ``out_dir`` (interrupted or finished), if known."""
    for name in (RUN_MARKER, RUN_CONFIG):
        data = read_json(Path(out_dir) / name)
        if data is not None:
            return run_identity(data)
    return None


def check_same_run(out_dir: Path, identity: dict[str, Any]) -> None:
    """Refuse to resume into a folder written with other settings.

    Raises:
        InputError: Naming what differs.
    """
    earlier = earlier_identity(out_dir)
    if earlier is None or earlier == identity:
        return
    diffs = _differences(earlier, identity)
    raise InputError(
        "resume",
        f"{out_dir} holds the outputs of a run with other settings ({'; '.join(diffs[:6])}); "
        "resume with the same model and options, or choose another output folder",
    )


def kept_summary(summary_path: Path) -> dict[str, Any] | None:
    """The per-image summary of a complete earlier output, or None to redo the image."""
    summary = read_json(summary_path)
    if summary is None or "n_nuclei" not in summary:
        return None
    return summary
