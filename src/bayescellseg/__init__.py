"""bayescellseg: nucleus segmentation with a Bayesian U-Net and measured uncertainty."""

__version__ = "0.1.0"
