"""Evaluation: score predictions against ground truth and write a report folder.

Modules: :mod:`~bayescellseg.evaluation.sources` (prediction folders, truth, in-memory model
runs), :mod:`~bayescellseg.evaluation.scoring` (per-image scores and streaming aggregation),
:mod:`~bayescellseg.evaluation.gallery` (most uncertain / worst image panels),
:mod:`~bayescellseg.evaluation.report` (figures and HTML content) and
:mod:`~bayescellseg.evaluation.run` (the runs that write the report folder). The metric
formulas live in :mod:`bayescellseg.metrics`.
"""
