"""Forward-pass precision: choice, memory layout, and closeness of bf16 to the fp32 reference."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from bayescellseg.cli import build_parser
from bayescellseg.errors import InputError
from bayescellseg.inference import precision as prec
from bayescellseg.inference.sampling import SamplingOptions, sample_image, sample_tile
from bayescellseg.inference.segmenter import Segmenter
from bayescellseg.model.build import build_model
from bayescellseg.model.config import ModelConfig
from bayescellseg.pipelines.predict import PredictOptions, predict_batch
from tests.pipelines.test_predict import write_images

torch.set_num_threads(1)


def _bf16_autocast_works() -> bool:
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = torch.nn.functional.conv2d(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 3, 3))
        return out.dtype == torch.bfloat16
    except RuntimeError:
        return False


needs_bf16 = pytest.mark.skipif(
    not _bf16_autocast_works(), reason="this torch build has no bf16 CPU autocast"
)


def tiny(**changes) -> tuple[torch.nn.Module, ModelConfig]:
    config = ModelConfig(base_channels=8, depth=2, n_samples=3, **changes)
    return build_model(config, seed=1).eval(), config


def image(shape=(40, 36), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(*shape, 3)).astype(np.float32)


def test_auto_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prec, "cpu_has_bf16", lambda: True)
    assert prec.resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(prec, "cpu_has_bf16", lambda: False)
    assert prec.resolve_precision("auto", "cpu") == "fp32"
    assert prec.resolve_precision("auto", torch.device("cpu")) == "fp32"
    # Explicit requests are kept.
    assert prec.resolve_precision("fp32", "cpu") == "fp32"
    assert prec.resolve_precision("bf16", "cpu") == "bf16"


def test_bad_precisions_are_refused() -> None:
    with pytest.raises(InputError, match="fp16 is for CUDA"):
        prec.resolve_precision("fp16", "cpu")
    with pytest.raises(InputError, match="expected one of"):
        prec.resolve_precision("int8", "cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        SamplingOptions(precision="half")


def test_memory_layout_follows_the_precision() -> None:
    model, _ = tiny()
    weight = model.encoder.blocks[1][0].weight
    prec.prepare_model(model, "bf16")
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert not weight.is_contiguous()
    prec.prepare_model(model, "fp32")
    assert weight.is_contiguous()
    x = torch.zeros(2, 3, 8, 8)
    assert prec.prepare_input(x, "bf16").is_contiguous(memory_format=torch.channels_last)


def test_fp32_after_bf16_is_the_reference_again() -> None:
    model, config = tiny(dropout_placement="last_k", dropout_last_k=1)
    x = image()
    reference = sample_tile(model, config, x, SamplingOptions(seed=2))
    sample_tile(model, config, x, SamplingOptions(seed=2, precision="bf16"))
    again = sample_tile(model, config, x, SamplingOptions(seed=2, precision="fp32"))
    np.testing.assert_array_equal(reference.foreground, again.foreground)
    np.testing.assert_array_equal(
        reference.moments.expected_entropy, again.moments.expected_entropy
    )


def test_auto_without_native_bf16_is_exactly_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prec, "cpu_has_bf16", lambda: False)
    model, config = tiny()
    x = image()
    auto = sample_tile(model, config, x, SamplingOptions(seed=0, precision="auto"))
    fp32 = sample_tile(model, config, x, SamplingOptions(seed=0, precision="fp32"))
    np.testing.assert_array_equal(auto.foreground, fp32.foreground)


@needs_bf16
def test_bf16_is_close_to_fp32_and_returns_float32_maps() -> None:
    model, config = tiny(dropout_placement="last_k", dropout_last_k=1)
    x = image((70, 60))
    options = SamplingOptions(n_samples=3, seed=5, tta=True)
    fp32 = sample_image(model, config, x, options, tile_size=32)
    bf16 = sample_image(model, config, x, replace(options, precision="bf16"), tile_size=32)
    for name in ("probability", "aleatoric", "epistemic", "contour"):
        a, b = getattr(fp32.maps, name), getattr(bf16.maps, name)
        assert b.dtype == np.float32
        diff = np.abs(a - b)
        assert diff.max() < 0.05, name
        assert 0 < diff.mean() < 0.01, name  # it really ran in bf16 (else diff would be 0)
    assert (bf16.maps.epistemic <= bf16.maps.entropy + 1e-6).all()


@pytest.mark.parametrize(
    "command",
    [
        ["predict", "in", "--out", "o"],
        ["evaluate", "--model", "m", "--data", "d", "--out", "o"],
        ["calibrate", "--model", "m", "--data", "d"],
    ],
)
def test_cli_precision_flag(command: list[str], capsys: pytest.CaptureFixture) -> None:
    parser = build_parser()
    assert parser.parse_args(command).precision == "auto"
    for choice in ("fp32", "bf16", "auto"):
        assert parser.parse_args([*command, "--precision", choice]).precision == choice
    with pytest.raises(SystemExit):
        parser.parse_args([*command, "--precision", "fp8"])
    assert "invalid choice" in capsys.readouterr().err


def test_segmenter_precision_default_override_and_summary(model_factory) -> None:
    raw_image = (image((64, 72), seed=3) * 255).astype(np.uint8)
    seg = Segmenter.load(model_factory(), precision="fp32")
    assert seg.resolved_precision() == "fp32"
    reference = seg.predict(raw_image, n_samples=2)
    assert reference.info.precision == "fp32"
    again = Segmenter.load(model_factory()).predict(raw_image, n_samples=2, precision="fp32")
    np.testing.assert_array_equal(reference.probability, again.probability)
    if _bf16_autocast_works():
        fast = seg.predict(raw_image, n_samples=2, precision="bf16")
        assert fast.info.precision == "bf16"
        assert np.abs(fast.probability - reference.probability).max() < 0.05
    with pytest.raises(InputError, match="fp16"):
        Segmenter.load(model_factory(), precision="fp16")
    with pytest.raises(InputError, match="expected one of"):
        seg.predict(raw_image, precision="double")


def test_predict_batch_records_the_precision(model_factory, tmp_path) -> None:
    write_images(tmp_path / "in", n=1, corrupt=False)
    options = PredictOptions(n_samples=2, precision="fp32")
    predict_batch(Segmenter.load(model_factory()), [tmp_path / "in"], tmp_path / "out", options)
    run_config = json.loads((tmp_path / "out" / "run_config.json").read_text())
    assert run_config["precision_used"] == "fp32"
    assert run_config["options"]["precision"] == "fp32"
    (summary,) = (tmp_path / "out").glob("*_summary.json")
    assert json.loads(summary.read_text())["precision"] == "fp32"


def test_bf16_on_a_cpu_that_emulates_it_is_kept_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import bayescellseg.model.precision as model_prec

    monkeypatch.setattr(model_prec, "cpu_has_bf16", lambda: False)
    with caplog.at_level("WARNING"):
        assert prec.resolve_precision("bf16", "cpu") == "bf16"
    assert "no native bf16" in caplog.text and "10x slower" in caplog.text
    caplog.clear()
    monkeypatch.setattr(model_prec, "cpu_has_bf16", lambda: True)
    with caplog.at_level("WARNING"):
        assert prec.resolve_precision("bf16", "cpu") == "bf16"
        assert prec.resolve_precision("fp32", "cpu") == "fp32"
    assert caplog.text == ""
