"""bayescellseg.postprocess."""
