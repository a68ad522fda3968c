"""bayescellseg.report."""
