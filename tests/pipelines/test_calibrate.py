"""``calibrate``: one pass of the prediction path, settings written to calibration.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import expit

from bayescellseg.cli import main
from bayescellseg.data.normalize import normalize
from bayescellseg.data.selection import select_refs
from bayescellseg.data.targets import make_targets
from bayescellseg.errors import InputError
from bayescellseg.inference.recalibrate import recalibrated
from bayescellseg.inference.sampling import (
    SamplingOptions,
    dequantize,
    sample_image,
    sample_tile,
)
from bayescellseg.inference.segmenter import PredictSettings, Segmenter
from bayescellseg.metrics.calibration import boundary_band
from bayescellseg.metrics.matching import dsb_score
from bayescellseg.model.build import build_model
from bayescellseg.model.config import ModelConfig
from bayescellseg.model.store import (
    CALIBRATION_FILE,
    CONFIG_FILE,
    WEIGHTS_FILE,
    load_model,
    read_calibration,
    save_model,
    update_extras,
    write_calibration,
)
from bayescellseg.pipelines.calibrate import CalibrateOptions, calibrate_model, collect_predictions
from bayescellseg.postprocess.watershed import WatershedParams
from bayescellseg.progress import NoProgress
from bayescellseg.train.loss import segmentation_loss
from tests.io.build import write_dsb_sample
from tests.synthetic import synthetic_image, synthetic_labels

IDS = ("a0", "b1", "c2")


def calibrate(model_dir: Path, root: Path, **options):
    """``calibrate_model`` of the model folder with ``CalibrateOptions(**options)``."""
    return calibrate_model(Segmenter.load(model_dir), root, CalibrateOptions(**options))


# ----------------------------------------------------------------------------- model folder


def _images():
    labels = [synthetic_labels((64, 64), n=5, seed=s, radius=(4.0, 7.0)) for s in range(len(IDS))]
    return labels, [synthetic_image(lab, seed=s) for s, lab in enumerate(labels)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny MC-dropout U-Net trained for a few steps on synthetic nuclei (saved once)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = ModelConfig(base_channels=4, depth=2, n_samples=3, method="mc_dropout")
    model = build_model(config, seed=0)
    labels, images = _images()
    x = torch.from_numpy(np.stack([normalize(im).transpose(2, 0, 1) for im in images]))
    y = torch.from_numpy(np.stack([make_targets(lab) for lab in labels]))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    model.train()
    for _ in range(40):
        opt.zero_grad()
        segmentation_loss(model(x), y)["total"].backward()
        opt.step()
    folder = tmp_path_factory.mktemp("trained") / "model"
    save_model(folder, model.eval(), config)
    return folder


@pytest.fixture
def setup(trained, tmp_path, monkeypatch):
    """A fresh copy of the trained model, a 3-image DSB folder and a split file."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model_dir = tmp_path / "model"
    shutil.copytree(trained, model_dir)
    root = tmp_path / "dsb"
    labels, images = _images()
    for sample_id, lab, im in zip(IDS, labels, images, strict=True):
        rgba = np.dstack([np.rint(im * 255).astype(np.uint8), np.full(lab.shape, 255, np.uint8)])
        write_dsb_sample(root, sample_id, lab, rgba)
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": [], "val": list(IDS)}))
    return model_dir, root, split


def test_sampling_keeps_raw_logits_across_tiles(trained):
    """keep_logits: float16 raw logits that match the per-sample maps, also when tiled."""
    loaded = load_model(trained)
    _, images = _images()
    image = normalize(np.vstack([images[0], images[1]]))  # 128 x 64: two 64-px tiles
    plain = sample_image(loaded.model, loaded.config, image, SamplingOptions(3, seed=4), 64)
    assert plain.foreground_logits is None
    options = SamplingOptions(3, seed=4, temperature=2.0, keep_logits=True)
    out = sample_image(loaded.model, loaded.config, image, options, tile_size=64)
    z = out.foreground_logits
    assert z.dtype == np.float16 and z.shape == (3, 128, 64)
    # the logits are raw (before the temperature): the per-sample maps are sigmoid(z / 2)
    np.testing.assert_allclose(dequantize(out.foreground), expit(z / 2.0), atol=1 / 510 + 2e-3)
    # same seed, same networks: the untempered run's per-sample maps are sigmoid(z)
    np.testing.assert_allclose(dequantize(plain.foreground), expit(z), atol=1 / 510 + 2e-3)


def test_calibrate_writes_extras_and_predict_uses_them(setup):
    model_dir, root, split = setup
    report = calibrate(model_dir, root, split_file=split, seed=0)
    assert report.n_images == 3 and report.n_samples == 3 and report.split == "val"
    # default: fitted on the boundary band; small images give every band pixel to the fit
    labels, _ = _images()
    assert report.fit_region == "band"
    assert report.n_fit_pixels == sum(int(boundary_band(lab, 3).sum()) for lab in labels)
    assert 0.05 < report.temperature < 20.0 and report.temperature_before == 1.0
    assert report.bias != 0.0 and report.bias_before == 0.0
    # the fitted map lowers the NLL on the pixels it was fitted on
    assert report.calibration_after["band"]["nll"] <= report.calibration_before["band"]["nll"]
    assert report.calibration_after["all"]["n"] == 3 * 64 * 64

    extras = load_model(model_dir).extras
    assert extras["temperature"] == report.temperature
    assert extras["logit_bias"] == report.bias
    assert extras["calibration"]["fit_region"] == "band"
    assert extras["postprocess"] == report.watershed.to_dict()
    assert extras["review"] == report.review.to_dict()
    cal = extras["calibration"]
    assert cal["n_images"] == 3 and cal["split"] == "val" and cal["seed"] == 0
    assert cal["metrics"]["after"]["all"]["nll"] == report.calibration_after["all"]["nll"]
    assert cal["watershed"]["dsb_after"] == report.dsb_after

    seg = Segmenter.load(model_dir)
    assert seg.temperature == report.temperature and seg.logit_bias == report.bias
    assert seg.params == report.watershed and seg.review == report.review
    _, images = _images()
    result = seg.predict(images[0], n_samples=3, seed=0)
    options = SamplingOptions(3, seed=0, keep_logits=True, precision=seg.resolved_precision())
    raw = sample_tile(seg.model, seg.config, normalize(images[0]), options)
    expected = expit(raw.foreground_logits / report.temperature + report.bias).mean(0)
    np.testing.assert_allclose(result.probability, expected, atol=1e-5)
    assert not np.allclose(result.probability, expit(raw.foreground_logits).mean(0), atol=1e-3)


def test_scaled_logits_give_scaled_temperature(setup, tmp_path):
    """Multiplying the foreground head by 3 multiplies every logit by 3: T must follow.

    Fitted on all pixels, temperature only (the other options of the fit).
    """
    model_dir, root, split = setup
    kwargs = {"split_file": split, "write": False, "fit_region": "all", "bias": False}
    plain = calibrate(model_dir, root, **kwargs)
    assert plain.n_fit_pixels == 3 * 64 * 64 and plain.bias == 0.0
    # a temperature keeps sigmoid(z / T) > 0.5 where z > 0 and the grid holds the old settings
    assert plain.dsb_after >= plain.dsb_before - 1e-12
    loaded = load_model(model_dir)
    with torch.no_grad():
        loaded.model.head.conv.weight[0] *= 3.0
        loaded.model.head.conv.bias[0] *= 3.0
    scaled_dir = tmp_path / "scaled"
    save_model(scaled_dir, loaded.model, loaded.config)
    scaled = calibrate(scaled_dir, root, **kwargs)
    assert scaled.temperature == pytest.approx(3.0 * plain.temperature, rel=0.01)
    for scope in ("all", "band"):
        for metric in ("nll", "ece"):
            assert scaled.calibration_after[scope][metric] == pytest.approx(
                plain.calibration_after[scope][metric], rel=0.02, abs=1e-4
            )
    before = (plain.calibration_before["all"]["nll"], scaled.calibration_before["all"]["nll"])
    assert abs(before[0] - before[1]) > 1e-3, before  # untempered, the scaled model differs
    assert "temperature" not in load_model(scaled_dir).extras  # write=False wrote nothing
    with pytest.raises(ValueError, match="fit_region"):
        calibrate(model_dir, root, split_file=split, fit_region="interior")


def test_cli_prints_table_and_rerun_replaces_values(setup, capsys):
    model_dir, root, split = setup
    args = ["calibrate", "--model", str(model_dir), "--data", str(root), "--split-file", str(split)]
    assert main(args) == 0
    out = capsys.readouterr().out
    for text in ("temperature", "logit bias", "NLL, all pixels", "ECE, boundary band", "recall"):
        assert text in out
    first = load_model(model_dir).extras
    assert first["calibration"]["n_images"] == 3

    # tamper with the stored settings, then re-run on 2 images with another seed
    tampered = {
        **read_calibration(model_dir),
        "postprocess": WatershedParams(fg_threshold=0.9).to_dict(),
    }
    write_calibration(model_dir, tampered)
    assert main([*args, "--limit", "2", "--seed", "5"]) == 0
    second = load_model(model_dir).extras
    assert second["calibration"]["n_images"] == 2 and second["calibration"]["seed"] == 5
    assert second["calibration"]["temperature"]["before"] == first["temperature"]
    assert second["calibration"]["watershed"]["before"]["fg_threshold"] == 0.9
    assert second["postprocess"]["fg_threshold"] in (0.4, 0.5, 0.6)
    assert "Settings written to" in capsys.readouterr().out
    assert main([*args, "--fit-region", "all", "--no-bias"]) == 0
    third = load_model(model_dir).extras
    assert third["logit_bias"] == 0.0 and third["calibration"]["fit_region"] == "all"
    assert "fitted on all pixels" in capsys.readouterr().out


def test_quality_target_sets_which_images_count_as_poor(setup, capsys):
    model_dir, root, split = setup
    args = ["calibrate", "--model", str(model_dir), "--data", str(root), "--split-file", str(split)]
    assert main([*args, "--quality-target", "0.4", "--dry-run", "--limit", "2"]) == 0
    assert "images with a DSB score below 0.4" in capsys.readouterr().out
    report = calibrate(model_dir, root, split_file=split, limit=2, quality_target=0.4)
    assert load_model(model_dir).extras["calibration"]["review"]["quality_target"] == 0.4
    assert report.quality_target == 0.4
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="quality_target"):
            calibrate(model_dir, root, split_file=split, quality_target=bad)
    for bad in ("0", "1.5", "nan", "high"):
        with pytest.raises(SystemExit) as exc:
            main([*args, "--quality-target", bad])
        assert exc.value.code == 2
    assert "--quality-target: expected a number, got 'high'" in capsys.readouterr().err


def test_dry_run_and_all_images(setup, capsys):
    model_dir, root, split = setup
    args = ["calibrate", "--model", str(model_dir), "--data", str(root), "--split", "all"]
    assert main([*args, "--dry-run", "--limit", "1"]) == 0
    assert "not written" in capsys.readouterr().out
    assert "calibration" not in load_model(model_dir).extras


def test_several_folders_are_pooled_into_one_fit(setup, tmp_path):
    """Two folders: every image of both is fitted on (the limit applies per folder)."""
    model_dir, root, _ = setup
    other = tmp_path / "other"
    shutil.copytree(root, other)
    one = calibrate(model_dir, root, split=None, write=False, limit=2)
    both = calibrate(model_dir, [root, other], split=None, write=False, limit=2)
    assert (one.n_images, both.n_images) == (2, 4)
    assert both.calibration_before["all"]["n"] == 2 * one.calibration_before["all"]["n"]
    assert both.data_root == f"{root}, {other}"
    with pytest.raises(InputError, match="no dataset folder"):
        calibrate(model_dir, [], split=None, write=False)


def test_bad_inputs(setup, tmp_path):
    model_dir, root, split = setup
    with pytest.raises(InputError, match="model folder not found"):
        calibrate(tmp_path / "nope", root, split_file=split)
    with pytest.raises(InputError, match="no model folder to write calibration.json to"):
        loaded = load_model(model_dir)
        calibrate_model(Segmenter(loaded.model, loaded.config), root, CalibrateOptions())
    update_extras(model_dir, training={"split_file": "other.json", "split_sha256": "0" * 64})
    with pytest.raises(InputError, match="trained with another split"):
        calibrate(model_dir, root, split_file=split)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"train": [], "val": ["zz"]}))
    update_extras(model_dir, training=None)
    with pytest.raises(InputError, match="1 image IDs of the val split are missing"):
        calibrate(model_dir, root, split_file=other)
    with pytest.raises(InputError, match="^split: unknown split 'test'"):
        calibrate(model_dir, root, split="test", split_file=split)
    assert main(["calibrate", "--model", str(model_dir), "--data", str(tmp_path / "x")]) == 2


def test_deterministic_model(setup, tmp_path):
    """One sample: ordinary temperature scaling, entropy-based nucleus uncertainty."""
    _, root, split = setup
    config = ModelConfig(base_channels=4, depth=2, method="deterministic", n_samples=1)
    folder = save_model(tmp_path / "det", build_model(config, seed=1), config)
    report = calibrate(folder, root, split_file=split, limit=2, write=False)
    assert report.n_samples == 1 and report.n_images == 2
    assert np.isfinite(report.calibration_after["all"]["nll"])
    assert report.calibration_after["all"]["nll"] <= report.calibration_before["all"]["nll"]


def test_cached_outputs_equal_predict_on_a_tiled_image(tmp_path):
    """calibrate's single pass is Segmenter.predict's: same logits, contours and segmentation
    for an image cut into tiles (random-weight MC-dropout model, 32 px tiles on 64 x 96)."""
    config = ModelConfig(base_channels=4, depth=2, n_samples=3, method="mc_dropout")
    folder = save_model(tmp_path / "m", build_model(config, seed=5), config)
    labels = synthetic_labels((64, 96), n=6, seed=3, radius=(4.0, 7.0))
    image = synthetic_image(labels, seed=3)
    rgba = np.dstack([np.rint(image * 255).astype(np.uint8), np.full(labels.shape, 255, np.uint8)])
    write_dsb_sample(tmp_path / "dsb", "t0", labels, rgba)
    seg = Segmenter.load(folder, precision="fp32")
    refs = select_refs(tmp_path / "dsb", None, folder, {})
    options = CalibrateOptions(split=None, seed=2, tile_size=32)
    work = tmp_path / "work"
    work.mkdir()
    collected = collect_predictions(seg, refs, options, work, NoProgress())

    sample = refs[0].load()
    maps = seg.predict_maps(sample.image, PredictSettings(seed=2, tile_size=32, keep_logits=True))
    predicted = seg.predict(sample.image, seed=2, tile_size=32)
    (stored,) = collected.stored
    np.testing.assert_array_equal(stored.load("logits"), maps.samples.foreground_logits)
    np.testing.assert_array_equal(stored.load("contour_samples"), predicted_contours(seg, sample))
    np.testing.assert_array_equal(stored.load("contour"), predicted.contour)
    np.testing.assert_array_equal(stored.load("truth"), sample.labels)
    assert collected.before_dsb == [dsb_score(sample.labels, predicted.labels)]
    # the "before" calibration is measured on predict's own probability map
    assert collected.before["all"].n == labels.size
    # recalibrating with the model's own settings gives predict's maps back (image-level
    # moments from the stored per-sample logits: equal away from the tile overlaps)
    same = recalibrated(stored.maps(), seg.temperature, seg.logit_bias)
    cores = np.abs(same.maps.probability - predicted.probability)
    assert np.median(cores) < 1e-3 and same.n_samples == 3


def predicted_contours(seg: Segmenter, sample) -> np.ndarray:
    """The per-sample contour maps of the prediction calibrate makes (uint8)."""
    settings = PredictSettings(seed=2, tile_size=32, keep_logits=True)
    return seg.predict_maps(sample.image, settings).samples.contour


def test_calibrate_leaves_config_and_weights_and_old_folders_still_load(setup):
    model_dir, root, split = setup
    # an old folder: its calibration inside config.json (as the bundled model keeps it)
    update_extras(model_dir, temperature=1.7, logit_bias=-0.3)
    old = Segmenter.load(model_dir)
    assert (old.temperature, old.logit_bias) == (1.7, -0.3)
    _, images = _images()
    before = old.predict(images[0], n_samples=3, seed=0)
    config_bytes = (model_dir / CONFIG_FILE).read_bytes()
    weights_bytes = (model_dir / WEIGHTS_FILE).read_bytes()

    report = calibrate(model_dir, root, split_file=split, seed=0)
    assert (model_dir / CONFIG_FILE).read_bytes() == config_bytes
    assert (model_dir / WEIGHTS_FILE).read_bytes() == weights_bytes
    stored = json.loads((model_dir / CALIBRATION_FILE).read_text())
    assert stored["format_version"] == 1 and stored["temperature"] == report.temperature
    assert report.temperature_before == 1.7 and report.bias_before == -0.3
    new = Segmenter.load(model_dir)
    assert new.temperature == report.temperature and new.params == report.watershed
    # without calibration.json the folder predicts exactly as before
    (model_dir / CALIBRATION_FILE).unlink()
    again = Segmenter.load(model_dir).predict(images[0], n_samples=3, seed=0)
    np.testing.assert_array_equal(again.probability, before.probability)
    np.testing.assert_array_equal(again.labels, before.labels)
