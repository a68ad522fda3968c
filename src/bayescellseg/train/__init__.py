"""bayescellseg.train."""
