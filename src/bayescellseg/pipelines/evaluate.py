"""``bayescellseg evaluate``: score a ``predict`` folder, or predict labelled datasets and score.

:func:`evaluate_model` predicts every image with a loaded :class:`Segmenter` (through
:meth:`~bayescellseg.inference.segmenter.Segmenter.predict_maps` and
:meth:`~bayescellseg.inference.segmenter.Segmenter.segment`, as ``predict`` does) and scores it
in memory; :func:`evaluate_predictions` reads the files of a ``predict`` folder instead. Both
write the report folder of :mod:`bayescellseg.evaluation.run`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bayescellseg.data.selection import select_refs
from bayescellseg.errors import BayesCellSegError, InputError
from bayescellseg.evaluation import sources
from bayescellseg.evaluation.run import (
    EvaluateOptions,
    check_outputs,
    consume,
    run_config,
    write_report,
)
from bayescellseg.evaluation.sources import EvalItem, Failure, Prediction
from bayescellseg.evaluation.trusted import ImageTrust, trust_from_signals
from bayescellseg.inference.result import Result
from bayescellseg.inference.segmenter import PredictSettings, Segmenter
from bayescellseg.io.datasets import SampleRef
from bayescellseg.prediction_folder import MAP_NAMES, RUN_CONFIG, SUMMARY_SUFFIX
from bayescellseg.progress import Progress
from bayescellseg.trust.model import TRUST_FILE, TrustModel, load_trust
from bayescellseg.trust.signals import trust_signals

__all__ = [
    "EvaluateOptions",
    "evaluate_model",
    "evaluate_predictions",
    "prediction_from_result",
    "report_from_predictions",
]

log = logging.getLogger(__name__)


def prediction_from_result(
    result: Result, review_threshold: float = math.nan, trust: ImageTrust | None = None
) -> Prediction:
    """A :class:`~bayescellseg.evaluation.sources.Prediction` from a :class:`Result` (in memory).

    Args:
        result: The result.
        review_threshold: The segmenter's nucleus review threshold (nan when unknown).
        trust: Its trust signals (None: none).
    """
    maps = {key: np.asarray(getattr(result, key), np.float32) for key in MAP_NAMES}
    maps["probability"] = np.clip(maps["probability"], 0.0, 1.0)
    return Prediction(
        labels=np.asarray(result.labels, np.uint32),
        maps=maps,
        nucleus_uncertainty={int(r.label): float(r.uncertainty) for r in result.nuclei},
        image_uncertainty=float(result.summary.uncertainty),
        predicted_quality=float(result.summary.predicted_quality),
        review_threshold=review_threshold,
        trust=trust,
    )


def _trust_of(result: Result, trust: TrustModel | None, fg_threshold: float) -> ImageTrust | None:
    """The trust signals of a result, as ``predict`` computes them (None without a model)."""
    if trust is None:
        return None
    signals = trust_signals(result, trust, fg_threshold)
    return trust_from_signals(signals, [r.label for r in result.nuclei])


def model_items(
    segmenter: Segmenter,
    datasets: Sequence[tuple[str, list[SampleRef]]],
    settings: PredictSettings,
    trust: TrustModel | None = None,
) -> Iterator[EvalItem | Failure]:
    """Predict every sample and yield the items to score (a failure for a bad sample), with
    the trust signals of ``trust`` (None: none)."""
    threshold = segmenter.review.nucleus_uncertainty
    fg_threshold = segmenter.params.fg_threshold
    for dataset, refs in datasets:
        for ref in refs:
            try:
                sample = ref.load()
                result = segmenter.segment(segmenter.predict_maps(sample.image, settings))
                image_trust = _trust_of(result, trust, fg_threshold)
                prediction = prediction_from_result(result, threshold, image_trust)
                yield EvalItem(dataset, ref.id, sample.labels, prediction, sample.image)
            except (BayesCellSegError, OSError, ValueError) as err:
                yield Failure(dataset, ref.id, str(err))


def evaluate_model(
    segmenter: Segmenter,
    data: Sequence[str | Path],
    out_dir: str | Path,
    options: EvaluateOptions | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Predict every image of one or more datasets in memory, score them, write the report.

    Args:
        segmenter: The loaded model.
        data: Dataset folders (DSB2018 layout or label-image folders); each is one dataset.
        out_dir: Report folder to create.
        options: The run's options (split, samples, TTA, limit, diameter, seeds, ...).
        progress: Told about every scored image.

    Returns:
        The metrics written to ``metrics.json``.

    Raises:
        InputError: Bad options, datasets or split (another split than the model's).
        FileExistsError: Report files exist and ``options.overwrite`` is off.
    """
    options = options or EvaluateOptions()
    check_outputs(Path(out_dir), options.overwrite)
    diameter = segmenter.resolve_diameter(options.diameter)
    precision = segmenter.resolved_precision(options.precision)
    paths = [Path(p) for p in data]
    names = sources.dataset_names(paths)
    training = segmenter.extras.get("training") or {}
    datasets = [
        (name, select_refs(path, options.split, segmenter.source, training, None, options.limit))
        for name, path in zip(names, paths, strict=True)
    ]
    total = sum(len(refs) for _, refs in datasets)
    log.info(
        "bayescellseg evaluate: %d image(s) in %d dataset(s), model %s",
        total, len(datasets), segmenter.source,
    )  # fmt: skip
    settings = PredictSettings(
        n_samples=options.n_samples,
        tta=options.tta,
        seed=options.seed,
        diameter=diameter,
        precision=options.precision,
    )
    trust = load_trust(segmenter.source)
    items = model_items(segmenter, datasets, settings, trust)
    state = consume(items, options, total, progress)
    config = run_config(
        "evaluate --model", model=str(segmenter.source), data=[str(p) for p in paths],
        datasets=names, split=options.split, n_samples=options.n_samples,
        n_samples_effective=segmenter.n_samples(options.n_samples), tta=options.tta,
        limit=options.limit, device=str(segmenter.device), precision_used=precision,
        out=str(out_dir), options=vars(options), trust=_trust_file(segmenter.source, trust),
    )  # fmt: skip
    request = options.trust_request(trust)
    return write_report(Path(out_dir), state, config, {}, options.overwrite, request)


def _trust_file(model_dir: Path | str | None, trust: TrustModel | None) -> str | None:
    """The path of the trust file used (None: none)."""
    return None if trust is None or model_dir is None else str(Path(model_dir) / TRUST_FILE)


def prediction_trust(pred_dir: Path) -> tuple[TrustModel | None, str | None]:
    """The trust models a ``predict`` folder was made with: the ``trust.json`` of the model
    folder its ``run_config.json`` names, when that file is still there.

    Returns:
        (the trust models or None, the model folder or None).
    """
    try:
        config = json.loads((Path(pred_dir) / RUN_CONFIG).read_text(encoding="utf-8"))
        model_dir = config.get("model") if isinstance(config, dict) else None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None, None
    if not isinstance(model_dir, str) or not model_dir:
        return None, None
    try:
        return load_trust(model_dir), model_dir
    except InputError as err:
        log.warning("trust models of %s not used: %s", model_dir, err)
        return None, model_dir


def evaluate_predictions(
    pred_dir: str | Path,
    truth: str | Path,
    out_dir: str | Path,
    options: EvaluateOptions | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Score a ``predict`` output folder against truth and write the report folder.

    Args:
        pred_dir: Folder written by ``bayescellseg predict``.
        truth: DSB2018 layout folder, label-image folder or Kaggle run-length CSV.
        out_dir: Report folder to create.
        options: Further options (the model-run ones are ignored).
        progress: Told about every scored image.

    Returns:
        The metrics written to ``metrics.json``.

    Raises:
        InputError: Unreadable inputs, or no prediction matches a truth ID.
        FileExistsError: Report files exist and ``options.overwrite`` is off.
    """
    options = options or EvaluateOptions()
    check_outputs(Path(out_dir), options.overwrite)
    plan, loaders = sources.plan_predictions(Path(pred_dir), Path(truth))
    log.info(
        "bayescellseg evaluate: %d prediction(s) matched to truth in %s; %d truth image(s) "
        "without prediction, %d prediction(s) without truth",
        len(plan.names), truth, len(plan.missing_predictions), len(plan.missing_truths),
    )  # fmt: skip
    items = sources.iter_prediction_items(Path(pred_dir), plan, loaders)
    state = consume(items, options, len(plan.names), progress)
    extra = {
        "missing_predictions": list(plan.missing_predictions),
        "missing_truths": list(plan.missing_truths),
    }
    trust, model_dir = prediction_trust(Path(pred_dir))
    config = run_config("evaluate --pred", pred=str(pred_dir), truth=str(truth),
                        out=str(out_dir), options=vars(options),
                        trust=_trust_file(model_dir, trust))  # fmt: skip
    request = options.trust_request(trust)
    return write_report(Path(out_dir), state, config, extra, options.overwrite, request)


def _truth_from_sources(pred_dir: Path) -> Path:
    """The DSB2018 root the predictions came from, from their ``source`` paths."""
    roots = set()
    for path in sorted(Path(pred_dir).glob(f"*{SUMMARY_SUFFIX}")):
        try:
            source = json.loads(path.read_text(encoding="utf-8")).get("source")
        except (OSError, ValueError, RecursionError, AttributeError):
            continue
        if source:
            p = Path(source)  # <root>/<id>/images/<id>.png
            if p.parent.name == "images" and p.parent.parent.name == p.stem:
                roots.add(p.parents[2])
    if len(roots) != 1:
        raise InputError(pred_dir, "cannot tell where the ground truth is; pass truth explicitly")
    return roots.pop()


def report_from_predictions(
    pred_dir: str | Path,
    out_dir: str | Path,
    truth: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Evaluate a ``predict`` output folder and return the path of ``report.html``.

    Args:
        pred_dir: Folder written by ``bayescellseg predict``.
        out_dir: Report folder.
        truth: Ground truth; None = the DSB2018 folder the predicted images were read from
            (found from the ``source`` recorded in each ``name_summary.json``, e.g. the bundled
            samples).
        overwrite: Replace an existing report.

    Returns:
        Path of the HTML report.
    """
    truth_path = Path(truth) if truth is not None else _truth_from_sources(Path(pred_dir))
    evaluate_predictions(pred_dir, truth_path, out_dir, EvaluateOptions(overwrite=overwrite))
    return Path(out_dir) / "report.html"
