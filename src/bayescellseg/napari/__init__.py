"""napari plugin (npe2): a *Segment nuclei* widget and a reader for ``predict`` output folders.

Declared in ``napari.yaml`` (this folder) through the ``napari.manifest`` entry point. Only
:mod:`bayescellseg.napari.widget` imports napari; the layer building
(:mod:`~bayescellseg.napari.layers`) and the reader (:mod:`~bayescellseg.napari.reader`) return
plain layer-data tuples ``(data, metadata, layer_type)``.
"""
