"""bayescellseg.model."""
