"""bayescellseg.inference."""
