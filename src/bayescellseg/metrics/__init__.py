"""bayescellseg.metrics."""
