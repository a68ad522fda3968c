"""Training configuration: a JSON-serialisable dataclass and its loader (JSON file + CLI flags)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bayescellseg.errors import InputError
from bayescellseg.model.config import CLI_FLAG, PRESETS, ModelConfig
from bayescellseg.model.store import bundled_model_path, bundled_name, read_model_config
from bayescellseg.settings import from_user_dict

SCHEDULERS = ("cosine", "onecycle")

# Fields that may change between a run and its ``--resume`` without breaking it: they do not
# change what is computed (device / amp do change floating point rounding, see docs).
RESUMABLE_FIELDS = frozenset(
    {
        "epochs", "device", "amp", "channels_last", "workers", "cache_dir", "val_limit",
        "progress", "num_threads",
    }
)  # fmt: skip

# Defaults of a fine-tuning run (``init_from`` set) on a few images, where the user or the
# config file does not choose: a tenth of the from-scratch learning rate, short epochs, and
# enough of them that 4-20 images are each seen many times (800 crops per member).
FINETUNE_DEFAULTS: dict[str, Any] = {
    "lr": 2e-4,
    "epochs": 10,
    "steps_per_epoch": 10,
    "warmup_fraction": 0.1,
}


def flag(default: Any, **argparse_options: Any) -> Any:
    """A ``TrainConfig`` field that ``bayescellseg train`` offers as ``--name-with-dashes``.

    The flag's type comes from the field's annotation (see :mod:`bayescellseg.train.cli_args`).

    Args:
        default: The field's default (tuples are copied into a list by ``__post_init__``).
        **argparse_options: ``help``, ``choices``, ``metavar`` or ``type`` of the flag.

    Returns:
        The ``dataclasses.field`` with the options under the :data:`CLI_FLAG` metadata key.
    """
    return field(default=default, metadata={CLI_FLAG: argparse_options})


@dataclass
class TrainConfig:
    """Everything that defines a training run.

    Fields made with :func:`flag` (and the ``ModelConfig`` fields with :data:`CLI_FLAG`
    metadata) are the options of ``bayescellseg train``.

    Attributes:
        preset: Name of the model preset the model config started from (informational once the
            config is resolved; ``model`` holds the full ``ModelConfig``).
        model: The network's ``ModelConfig``. A dict (as stored in ``training_config.json``) is
            accepted and converted; keys missing from it take the ``ModelConfig`` defaults.
        epochs: Number of epochs (per ensemble member).
        steps_per_epoch: Optimiser steps per epoch; patches per epoch = steps * batch_size
            (times the number of processes under ``torchrun``).
        batch_size: Patches per step and process.
        crop: Side of the square training patches in pixels.
        lr: Peak learning rate (AdamW).
        weight_decay: AdamW weight decay.
        scheduler: ``cosine`` (linear warm-up then cosine decay) or ``onecycle``; both per step.
        warmup_fraction: Fraction of all steps used for the warm-up of ``cosine`` and as
            ``pct_start`` of ``onecycle``.
        grad_clip: Clip the global gradient norm to this value (``0`` = off).
        seed: Seed of everything random (weights, crops, augmentation, dropout). Ensemble member
            ``k`` uses ``seed + 1000 * k``.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        amp: Mixed precision (bf16 autocast, fp32 weights and loss; fp16 with loss scaling on
            GPUs without bf16); ``None`` = on for CUDA and for CPUs with native bf16
            (AVX-512 BF16 or AMX), off elsewhere.
        channels_last: Use the channels-last memory format for weights and inputs; ``None`` =
            on for CUDA and for CPUs with AMX, off on other CPUs (bf16 training: 8.5 patches/s
            with, 5.6 without on an AMX Xeon; 7.3 with, 9.8 without on an earlier AVX-512 BF16 host;
            ``benchmarks/bench_train.py``).
        num_threads: ``torch.set_num_threads`` for CPU training; ``None`` leaves torch's default.
        workers: Data-loader worker processes.
        cache_dir: Where decoded training images are cached (``None`` = no cache).
        augment: Random flips / rotations / intensity changes of the training patches.
        sources: Training sources (``data.sources.SourceSpec`` dicts: name, path, role,
            labels, groups, group_column, weight); ``--data`` / ``--val-data`` fill it.
        split: Split JSON file (either a plain ``{"train", "val"}`` file or a model folder's
            ``split.json``); ``None`` = made per source (the bundled split for DSB2018).
        val_fraction: Share of a source's images (or groups) kept for validation when the
            split is made here.
        skip_bad: Leave out samples that cannot be read (listed in the log) instead of
            stopping before training.
        val_limit: Validate on at most this many val images per source and epoch
            (``None`` = all of them).
        contour_weight: Weight of the contour channel in the segmentation loss.
        kl_weight: Final KL factor ``beta`` of the variational ELBO (1 = the true ELBO).
        kl_anneal_epochs: Epochs over which the KL weight rises linearly from 0 to ``kl_weight``.
        n_train: Number of training images that scales the KL term: the per-pixel data loss
            gets ``beta * KL / (n_train * crop**2)`` (see ``train.loss.elbo_loss``);
            ``None`` = number of training images.
        progress: Show a tqdm progress bar.
        brightfield_share: Fraction of the training crops drawn from brightfield/H&E images
            (``None`` = every image equally often, so their share is their count's).
        scale_range: Range of the random zoom of the training crops (log-uniform; 2 = nuclei
            twice as large), for robustness to the nucleus size.
        init_from: Model folder whose weights start the run (fine-tuning or a longer schedule),
            or ``"bundled"`` for the bundled model. Its architecture becomes ``model``;
            ``None`` = random initialisation.
    """

    preset: str | None = flag(None, help="model preset, e.g. 'original'")
    model: ModelConfig = field(default_factory=ModelConfig)
    epochs: int = flag(60)
    steps_per_epoch: int = flag(100)
    batch_size: int = flag(8)
    crop: int = flag(256)
    lr: float = flag(2e-3)
    weight_decay: float = flag(1e-4)
    scheduler: str = flag("cosine", choices=SCHEDULERS)
    warmup_fraction: float = 0.05
    grad_clip: float = 5.0
    seed: int = flag(0)
    device: str = flag("cpu", help="cpu (default), cuda, cuda:1, ...")
    amp: bool | None = None
    channels_last: bool | None = None
    num_threads: int | None = flag(None, help="torch CPU threads")
    workers: int = flag(0, help="data-loader worker processes")
    cache_dir: str | None = flag(None, type=Path, help="where decoded arrays are cached")
    augment: bool = True
    sources: list[dict[str, Any]] = field(default_factory=list)
    split: str | None = flag(
        None, help="split JSON file (default: made per source, the bundled split for DSB2018)"
    )
    val_fraction: float = flag(0.2, help="share of each source kept for validation (default 0.2)")
    skip_bad: bool = flag(
        False,
        help="train on the good samples when some cannot be read (default: stop and list them)",
    )
    val_limit: int | None = flag(None, help="validate on the first N val images")
    contour_weight: float = 1.0
    kl_weight: float = 1.0
    kl_anneal_epochs: int = 5
    n_train: int | None = None
    progress: bool = True
    brightfield_share: float | None = flag(
        None,
        help="fraction of training crops drawn from brightfield/H&E images (default: by count)",
    )
    scale_range: tuple[float, float] | list[float] = flag(
        (0.75, 1.33),
        metavar=("LOW", "HIGH"),
        help="random zoom of the training crops (default 0.75 1.33; 0.5 2 for size robustness)",
    )
    init_from: str | None = flag(
        None,
        help="start from this model folder's weights and architecture ('bundled': the bundled "
        "model)",
    )

    def __post_init__(self) -> None:
        problems = []
        if isinstance(self.model, dict):  # from JSON: the stored format is ModelConfig.to_dict()
            try:
                self.model = ModelConfig.from_dict(self.model)
            except (TypeError, ValueError) as err:
                problems.append(f"invalid model config: {err}")
        elif not isinstance(self.model, ModelConfig):
            problems.append(
                f"model must be a ModelConfig or a dict, got {type(self.model).__name__}"
            )
        for name in ("epochs", "steps_per_epoch", "batch_size"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1")
        if self.crop < 16:
            problems.append("crop must be >= 16")
        if not self.lr > 0:
            problems.append("lr must be > 0")
        if self.scheduler not in SCHEDULERS:
            problems.append(f"scheduler must be one of {', '.join(SCHEDULERS)}")
        if not 0 <= self.warmup_fraction < 1:
            problems.append("warmup_fraction must be in [0, 1)")
        if self.workers < 0:
            problems.append("workers must be >= 0")
        if self.val_limit is not None and self.val_limit < 0:
            problems.append("val_limit must be >= 0")
        if self.n_train is not None and self.n_train < 1:
            problems.append("n_train must be >= 1")
        if self.brightfield_share is not None and not 0 < self.brightfield_share < 1:
            problems.append("brightfield_share must be in (0, 1)")
        if not 0.0 <= self.val_fraction < 1.0:
            problems.append("val_fraction must be in [0, 1)")
        scale = list(self.scale_range) if isinstance(self.scale_range, (list, tuple)) else []
        if len(scale) != 2 or not 0 < float(scale[0]) <= float(scale[1]):
            problems.append("scale_range must be [low, high] with 0 < low <= high")
        else:
            self.scale_range = [float(scale[0]), float(scale[1])]
        if self.kl_anneal_epochs < 0:
            problems.append("kl_anneal_epochs must be >= 0")
        if problems:
            raise InputError("training config", "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (a deep copy)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | Path = "training config") -> TrainConfig:
        """Build from a dict, refusing unknown keys.

        Args:
            data: As written by ``to_dict`` (missing keys take their defaults).
            source: Named in error messages.

        Raises:
            InputError: Unknown keys or invalid values.
        """
        copied = json.loads(json.dumps(data)) if isinstance(data, dict) else data
        return from_user_dict(cls, copied, source, "training config key")

    def to_json(self) -> str:
        """Indented JSON text."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str | Path = "training config") -> TrainConfig:
        """Parse JSON text written by ``to_json``."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(source, f"not valid JSON: {err}") from None
        if not isinstance(data, dict):
            raise InputError(source, "a training config must be a JSON object")
        return cls.from_dict(data, source)


def _model_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(ModelConfig)}


def resolve_model_config(preset: str | None, model: dict[str, Any]) -> dict[str, Any]:
    """Full ``ModelConfig`` dict: the preset (or the defaults), then ``model`` on top.

    Raises:
        InputError: Unknown preset or invalid model settings.
    """
    if preset is not None and preset not in PRESETS:
        raise InputError(
            "training config",
            f"unknown model preset {preset!r}; known: {', '.join(sorted(PRESETS))}",
        )
    try:
        base = ModelConfig.from_dict(dict(PRESETS[preset]) if preset is not None else {}).to_dict()
    except ValueError as err:
        raise InputError("training config", f"invalid model preset {preset!r}: {err}") from None
    unknown = sorted(set(model) - set(base))
    if unknown:
        raise InputError("training config", f"unknown model config keys: {', '.join(unknown)}")
    try:
        return ModelConfig.from_dict({**base, **model}).to_dict()
    except InputError:
        raise
    except (TypeError, ValueError) as err:
        raise InputError("training config", f"invalid model config: {err}") from None


def load_train_config(path: str | Path | None, overrides: dict[str, Any]) -> TrainConfig:
    """Read a training config: the JSON file (if any), then ``overrides`` on top.

    ``overrides`` are flat keys as the CLI passes them; keys that name ``ModelConfig`` fields
    (``method``, ``base_channels``, ``dropout_rate``, ...) go into the model config, ``preset``
    selects the model preset, anything else must be a ``TrainConfig`` field. The model config
    is resolved against the preset, so the returned ``model`` is complete.

    Args:
        path: JSON training config, or ``None`` for the defaults.
        overrides: Flat key -> value pairs; ``None`` values are ignored.

    Returns:
        The resolved config.

    Raises:
        InputError: Unreadable / invalid file, unknown keys or invalid values.
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise InputError(path, f"cannot read the training config ({err.strerror})") from None
        full = TrainConfig.from_json(text, path).to_dict()  # validates the file
        raw = json.loads(text)
        data = {k: full[k] for k in raw}  # only what the file sets
        if "model" in raw:
            data["model"] = dict(raw["model"])  # only the model keys it sets (the preset fills in)
    source = path if path is not None else "training config"
    model = dict(data.get("model", {}))
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"model"}
    model_fields = _model_fields()
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, Path):
            value = str(value)
        if key in train_fields:
            data[key] = value
        elif key in model_fields:
            model[key] = value
        else:
            raise InputError(source, f"unknown setting {key!r}")
    if "preset" in overrides and overrides["preset"] is not None and path is not None:
        # A preset on the command line replaces the file's model settings, except those that
        # are overridden on the command line as well.
        model = {k: v for k, v in model.items() if k in overrides}
    if data.get("init_from") is not None:
        for key, value in FINETUNE_DEFAULTS.items():
            data.setdefault(key, value)
        if data.get("preset") is not None:
            raise InputError(
                source, "init_from takes the model settings from its folder; drop the preset"
            )
        data["model"] = _init_model_config(init_folder(data["init_from"]), model, source)
    else:
        data["model"] = resolve_model_config(data.get("preset"), model)
    return TrainConfig.from_dict(data, source)


def init_folder(init_from: str | Path) -> Path:
    """The model folder named by ``init_from``: a folder, or a bundled model's name
    (``"bundled"`` = the default bundled model, ``"nuclei-nc"``)."""
    name = bundled_name(init_from)
    return bundled_model_path(name) if name is not None else Path(init_from)


def _init_model_config(folder: Path, model: dict[str, Any], source: str | Path) -> dict[str, Any]:
    """The model config of ``folder``; settings in ``model`` must agree with it."""
    config = read_model_config(folder)[0].to_dict()
    differ = [
        f"{k}={v!r} (the folder has {config.get(k)!r})"
        for k, v in model.items()
        if config.get(k) != v
    ]
    if differ:
        raise InputError(
            source,
            f"init_from {folder} fixes the model settings, but these differ: {', '.join(differ)}",
        )
    return config
