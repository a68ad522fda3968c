"""bayescellseg.data."""
