"""Evaluate segmentations and their uncertainty (the ``bayescellseg evaluate`` command).

``evaluate_predictions(pred_dir, truth, out_dir)`` scores a ``predict`` output folder;
``evaluate_model(model_dir, data, out_dir)`` predicts in memory and scores;
``report_from_predictions(pred_dir, out_dir, truth=None)`` is the one-call version for demos.
See :mod:`bayescellseg.evaluation.run` for the report folder's contents.
"""

from __future__ import annotations

from bayescellseg.evaluation.run import (
    EvaluateOptions,
    evaluate_model,
    evaluate_predictions,
    report_from_predictions,
)

__all__ = ["EvaluateOptions", "evaluate_model", "evaluate_predictions", "report_from_predictions"]
