"""bayescellseg.io."""
