"""Trust signals: predicted score with an interval, review rules with a stated guarantee,
nucleus ``p_correct`` and an out-of-distribution flag, fitted on held-out images and stored as
``trust.json`` in a model folder.

* :func:`~bayescellseg.trust.signals.trust_signals`: what ``predict`` adds per image;
* :func:`~bayescellseg.trust.measures.trust_measures`: what ``evaluate`` measures;
* :func:`~bayescellseg.trust.fit.fit_trust`: fit the models on held-out images.
"""

from bayescellseg.trust.conformal import (
    ReviewRule,
    conformal_quantile,
    conformal_selection,
    flag_lowest,
    review_threshold,
)
from bayescellseg.trust.fit import FitOptions, TrustData, fit_trust
from bayescellseg.trust.measures import TrustBatch, trust_measures
from bayescellseg.trust.model import TRUST_FILE, TrustModel, load_trust, save_trust
from bayescellseg.trust.signals import (
    SUMMARY_COLUMNS,
    BatchReview,
    TrustSignals,
    review_batch,
    trust_signals,
)

__all__ = [
    "SUMMARY_COLUMNS",
    "TRUST_FILE",
    "BatchReview",
    "FitOptions",
    "ReviewRule",
    "TrustBatch",
    "TrustData",
    "TrustModel",
    "TrustSignals",
    "conformal_quantile",
    "conformal_selection",
    "fit_trust",
    "flag_lowest",
    "load_trust",
    "review_batch",
    "review_threshold",
    "save_trust",
    "trust_measures",
    "trust_signals",
]
