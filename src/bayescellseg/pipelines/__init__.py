"""Orchestrators over many images, each taking a loaded :class:`~bayescellseg.Segmenter`.

* :mod:`~bayescellseg.pipelines.predict`: segment image files into a ``predict`` output folder
  (:mod:`~bayescellseg.prediction_folder` names its files; ``predict_options``,
  ``predict_image``, ``trusted`` (the trust signals and the batch review rule), ``inputs``,
  ``outputs``, ``outdir`` and ``resume`` are its parts);
* :mod:`~bayescellseg.pipelines.evaluate`: predict labelled datasets and score them, or score a
  prediction folder;
* :mod:`~bayescellseg.pipelines.calibrate`: fit temperature, bias, watershed and review
  settings and write ``calibration.json``;
* :mod:`~bayescellseg.pipelines.check`: summarise dataset folders.

They report through :mod:`logging` (logger ``bayescellseg``) and an optional
:class:`~bayescellseg.progress.Progress` (the CLI's progress bar); none prints.
"""
