"""Model folders: ``config.json`` + ``weights.safetensors`` (no pickle anywhere), plus the
optional ``calibration.json`` written by ``bayescellseg calibrate``.

``config.json`` (written by training, never rewritten by calibration)::

    {"format_version": 1, "model": {...ModelConfig.to_dict()...}, "training": {...}, ...}

``calibration.json`` (as StarDist keeps ``thresholds.json`` beside its config)::

    {"format_version": 1, "temperature": 1.3, "logit_bias": -0.2, "postprocess": {...},
     "review": {...}, "calibration": {...what was fitted, on which images...}}

Everything besides ``format_version`` and ``model`` is an *extra*. :func:`load_model` returns the
extras of ``config.json`` with those of ``calibration.json`` on top, so a folder from before
``calibration.json`` existed (its calibration inside ``config.json``, like the bundled model's)
loads as it always did. The trainer may add other files to the folder (``train_log.csv``,
``training_curve.png``); they are not read here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import nn

from bayescellseg.errors import InputError
from bayescellseg.io.atomic import atomic_path, write_json_atomic
from bayescellseg.model.build import build_model
from bayescellseg.model.config import ModelConfig

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
CALIBRATION_FILE = "calibration.json"
#: The extras a ``calibration.json`` may hold (they override ``config.json``'s).
CALIBRATION_KEYS = ("temperature", "logit_bias", "postprocess", "review", "calibration")
_RESERVED = ("format_version", "model")
#: The models shipped in the package: name -> folder under ``bayescellseg/pretrained``.
#: ``nuclei`` is the default (permissive data only); ``nuclei-nc`` is opt-in, trained also on
#: MoNuSeg, whose CC BY-NC-SA 4.0 licence its weights carry (see its ``LICENSE`` file).
BUNDLED_MODELS = {"nuclei": "nuclei", "nuclei-nc": "nuclei_nc"}
#: Another name of the default bundled model.
DEFAULT_ALIAS = "bundled"
#: The extra of ``config.json`` naming the licence of a model's weights, when not MIT.
LICENCE_KEY = "licence"


def bundled_model_path(name: str = "nuclei") -> Path:
    """Folder of a bundled pretrained model (it may be absent in a dev checkout).

    Args:
        name: A key of :data:`BUNDLED_MODELS`, or ``"bundled"`` for the default ``nuclei``.

    Raises:
        InputError: An unknown name.
    """
    key = "nuclei" if name == DEFAULT_ALIAS else name
    if key not in BUNDLED_MODELS:
        known = ", ".join([DEFAULT_ALIAS, *BUNDLED_MODELS])
        raise InputError("model", f"no bundled model is named {name!r}; bundled: {known}")
    return Path(str(resources.files("bayescellseg").joinpath("pretrained", BUNDLED_MODELS[key])))


def bundled_name(path: str | Path | None) -> str | None:
    """The bundled model ``path`` names (``"nuclei"``, ``"nuclei-nc"``), or None for a folder.

    None and ``"bundled"`` name the default. A name that is also an existing folder is the folder.
    """
    if path is None:
        return "nuclei"
    text = str(path)
    if (text == DEFAULT_ALIAS or text in BUNDLED_MODELS) and not Path(text).is_dir():
        return "nuclei" if text == DEFAULT_ALIAS else text
    return None


@dataclass
class LoadedModel:
    """A network read from a model folder.

    Attributes:
        model: The network, in eval mode, sampling off, on the requested device.
        config: Its architecture.
        extras: Everything else in ``config.json`` (``training``, ``postprocess``, ...).
    """

    model: nn.Module
    config: ModelConfig
    extras: dict[str, Any] = field(default_factory=dict)


def _check_extras(extras: dict[str, Any]) -> None:
    clash = sorted(set(extras) & set(_RESERVED))
    if clash:
        raise ValueError(f"extras may not use the reserved key(s) {clash}")
    try:
        json.dumps(extras)
    except (TypeError, ValueError) as err:
        raise ValueError(f"extras must be JSON-serialisable: {err}") from err


def _check_matches(model: nn.Module, config: ModelConfig) -> None:
    expected = {k: tuple(v.shape) for k, v in build_model(config).state_dict().items()}
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if expected != actual:
        diff = sorted(set(expected) ^ set(actual)) or sorted(
            k for k in expected if expected[k] != actual[k]
        )
        raise ValueError(f"model does not match its config (first differences: {diff[:5]})")


def save_model(
    directory: str | Path,
    model: nn.Module,
    config: ModelConfig,
    extras: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a model folder (weights first, then ``config.json``; each file atomically).

    Args:
        directory: The folder (created if needed).
        model: The network built from ``config`` (UNet or Ensemble; any device / memory format).
        config: Its config.
        extras: Extra JSON entries for ``config.json`` (``training``, ``postprocess``, ...).
        overwrite: Replace existing files; otherwise an existing file raises FileExistsError
            before anything is written.

    Returns:
        The folder path.

    Raises:
        ValueError: The model's parameters do not match ``config``, or extras are not JSON.
        FileExistsError: A file exists and ``overwrite`` is False.

    An existing ``calibration.json`` was fitted to the weights being replaced, so it is removed
    (with ``overwrite``; without it, it is refused like the other files).
    """
    directory = Path(directory)
    extras = dict(extras or {})
    _check_extras(extras)
    _check_matches(model, config)
    paths = [directory / WEIGHTS_FILE, directory / CONFIG_FILE]
    if not overwrite:
        for path in [*paths, directory / CALIBRATION_FILE]:
            if path.exists():
                raise FileExistsError(f"{path}: already exists (pass overwrite=True to replace it)")
    (directory / CALIBRATION_FILE).unlink(missing_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(paths[0], overwrite=overwrite) as tmp:
        safetensors.torch.save_file(tensors, str(tmp), metadata={"format": "pt"})
    doc = {"format_version": FORMAT_VERSION, "model": config.to_dict(), **extras}
    write_json_atomic(paths[1], doc, overwrite=overwrite)
    return directory


def _read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object file of a model folder, with the checks common to its files."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(path, f"not valid JSON ({err})") from err
    except RecursionError as err:
        raise InputError(path, "JSON is nested too deeply to be a model config") from err
    except OSError as err:
        raise InputError(path, f"cannot read the file ({err.strerror or err})") from err
    if not isinstance(doc, dict):
        raise InputError(path, "must hold a JSON object")
    version = doc.get("format_version")
    if version != FORMAT_VERSION:
        raise InputError(
            path, f"unsupported format_version {version!r} (this version reads {FORMAT_VERSION})"
        )
    return doc


def _read_config_doc(directory: Path) -> dict[str, Any]:
    if not directory.is_dir():
        raise InputError(directory, "model folder not found")
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise InputError(path, f"missing; a model folder holds {CONFIG_FILE} and {WEIGHTS_FILE}")
    doc = _read_json_object(path)
    if "model" not in doc:
        raise InputError(path, "has no 'model' entry")
    return doc


def read_calibration(directory: str | Path) -> dict[str, Any]:
    """The entries of a model folder's ``calibration.json`` ({} when it has none).

    Raises:
        InputError: The file is unreadable, not a JSON object of format 1, or holds other keys
            than :data:`CALIBRATION_KEYS`.
    """
    path = Path(directory) / CALIBRATION_FILE
    if not path.is_file():
        return {}
    doc = _read_json_object(path)
    unknown = sorted(set(doc) - {"format_version", *CALIBRATION_KEYS})
    if unknown:
        raise InputError(path, f"unknown entries {unknown} (expected {list(CALIBRATION_KEYS)})")
    return {k: v for k, v in doc.items() if k != "format_version"}


def write_calibration(directory: str | Path, calibration: dict[str, Any]) -> Path:
    """Write (or replace) a model folder's ``calibration.json`` atomically.

    ``config.json`` and the weights are left as they are; :func:`load_model` applies the file's
    entries over those of ``config.json``.

    Args:
        directory: An existing model folder.
        calibration: Entries among :data:`CALIBRATION_KEYS` (JSON-serialisable).

    Returns:
        The file's path.

    Raises:
        InputError: The folder is not a model folder.
        ValueError: Unknown keys or values that are not JSON.
    """
    directory = Path(directory)
    _read_config_doc(directory)
    unknown = sorted(set(calibration) - set(CALIBRATION_KEYS))
    if unknown:
        raise ValueError(f"unknown calibration entries {unknown}")
    _check_extras(calibration)
    path = directory / CALIBRATION_FILE
    write_json_atomic(path, {"format_version": FORMAT_VERSION, **calibration}, overwrite=True)
    return path


def read_model_config(directory: str | Path) -> tuple[ModelConfig, dict[str, Any]]:
    """Read ``config.json`` (and ``calibration.json``, if any) of a model folder, no weights.

    Returns:
        The model config and the extras (``calibration.json``'s entries over ``config.json``'s).

    Raises:
        InputError: Missing folder or file, invalid JSON, unknown version or invalid config.
    """
    directory = Path(directory)
    doc = _read_config_doc(directory)
    try:
        config = ModelConfig.from_dict(doc["model"])
    except (TypeError, ValueError) as err:
        raise InputError(directory / CONFIG_FILE, f"invalid model config: {err}") from err
    extras = {k: v for k, v in doc.items() if k not in _RESERVED}
    return config, {**extras, **read_calibration(directory)}


def expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of the network of ``config``, without allocating it.

    The network is built on PyTorch's ``meta`` device, which records shapes but holds no data.
    """
    with torch.device("meta"):
        skeleton = build_model(config)
    return {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}


def _file_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of the tensors in a safetensors file, read from its header only."""
    try:
        with safetensors.safe_open(str(path), framework="pt", device="cpu") as fh:
            return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118
    except (safetensors.SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise InputError(path, f"corrupt or not a safetensors file ({err})") from err


def _check_weight_shapes(path: Path, config: ModelConfig) -> None:
    """Compare the weights file's header with the config before any weight is read."""
    expected, actual = expected_shapes(config), _file_shapes(path)
    if expected == actual:
        return
    missing = sorted(set(expected) - set(actual))
    unexpected = sorted(set(actual) - set(expected))
    wrong = [f"{k} {actual[k]} (config: {expected[k]})" for k in sorted(expected)
             if k in actual and actual[k] != expected[k]]  # fmt: skip
    parts = [f"missing {missing[:3]}" if missing else "",
             f"unexpected {unexpected[:3]}" if unexpected else "",
             f"other shapes: {', '.join(wrong[:3])}" if wrong else ""]  # fmt: skip
    raise InputError(
        path, f"weights do not fit the config in {CONFIG_FILE}: " + "; ".join(p for p in parts if p)
    )


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model folder written by :func:`save_model`.

    Args:
        directory: The model folder.
        device: Where to put the network.

    Returns:
        The network (eval mode, sampling off), its config and the extras.

    Raises:
        InputError: Missing or corrupt ``config.json`` / ``weights.safetensors``, or weights that
            do not fit the config; the message names the file.
    """
    directory = Path(directory)
    config, extras = read_model_config(directory)
    path = directory / WEIGHTS_FILE
    if not path.is_file():
        raise InputError(path, "missing; the model folder has no weights")
    _check_weight_shapes(path, config)
    try:
        tensors = safetensors.torch.load_file(str(path), device="cpu")
    except (safetensors.SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise InputError(path, f"corrupt or not a safetensors file ({err})") from err
    model = build_model(config)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        problem = str(err).splitlines()[0:3]
        raise InputError(
            path, f"weights do not fit the config in {CONFIG_FILE}: {problem}"
        ) from err
    return LoadedModel(model=model.to(device).eval(), config=config, extras=extras)


def update_extras(directory: str | Path, **extras: Any) -> dict[str, Any]:
    """Add or replace extras in a model folder's ``config.json`` (atomic rewrite).

    For the trainer's own records (``training``); calibration goes to ``calibration.json``
    (:func:`write_calibration`). A value of None removes that key. Example:
    ``update_extras(folder, temperature=1.3, postprocess={...})``.

    Returns:
        All extras after the update.

    Raises:
        InputError: The folder or its ``config.json`` is missing or invalid.
        ValueError: A reserved key (``format_version``, ``model``) or non-JSON value.
    """
    directory = Path(directory)
    doc = _read_config_doc(directory)
    _check_extras({k: v for k, v in extras.items() if v is not None})
    for key, value in extras.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    write_json_atomic(directory / CONFIG_FILE, doc, overwrite=True)
    extras_now = {k: v for k, v in doc.items() if k not in _RESERVED}
    return {**extras_now, **read_calibration(directory)}
