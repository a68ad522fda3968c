"""The tiny random-weight model folders of the inference tests, for the pipeline tests."""

from tests.inference.conftest import make_model_dir, model_dir, model_factory

__all__ = ["make_model_dir", "model_dir", "model_factory"]
