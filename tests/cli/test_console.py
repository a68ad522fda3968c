"""The CLI console: flags in library messages, log lines, the progress bar, --quiet."""

from __future__ import annotations

import io
import logging

from bayescellseg.cli.console import BarProgress, cli_message, console


def test_library_option_names_become_flags() -> None:
    assert (
        cli_message("diameter: expected 'auto' or pixels")
        == "--diameter: expected 'auto' or pixels"
    )
    assert cli_message("tile_size: too small") == "--tile: too small"
    assert cli_message("x.csv: exists, pass overwrite=True or resume=True") == (
        "x.csv: exists, pass --overwrite or --resume"
    )
    assert cli_message("/data/img.png: not an image") == "/data/img.png: not an image"
    assert (
        cli_message("weights: 'a' must be NAME=VALUE") == "--source-weight: 'a' must be NAME=VALUE"
    )


def test_parameter_assignments_in_the_text_become_flags_with_their_values() -> None:
    assert cli_message("device: 'mps' not here; use device='cpu' or device='auto'") == (
        "--device: 'mps' not here; use --device cpu or --device auto"
    )
    assert cli_message('a.tif: diameter="8um" needs pixel_size=MICRONS, or pixels') == (
        "a.tif: --diameter 8um needs --pixel-size MICRONS, or pixels"
    )
    assert cli_message("a.tif: choose channel=N (0-based), or channels=(N, M)") == (
        "a.tif: choose --channel N (0-based), or --channels N,M"
    )
    assert cli_message("x: channels=[0, 2] repeats; n_samples=0, tile_size=256.") == (
        "x: --channels 0,2 repeats; --samples 0, --tile 256."
    )
    assert cli_message("run.json: resume=True needs the same settings (skip_bad=True)") == (
        "run.json: --resume needs the same settings (--skip-bad)"
    )


def test_assignments_that_are_not_options_are_left_alone() -> None:
    unchanged = [
        "x: seed=3 and foo=True are not flags",  # not in FLAGS
        "x: resume=False, device=None",  # no flag says False / None
        "labels: 'data=/x': no source is named 'data'",  # inside a quoted value
        "/runs/device=cpu/a.tif: unreadable",  # inside a path
        "x: must be given as NAME=VALUE",
    ]
    for text in unchanged:
        expected = text.replace("labels:", "--labels:", 1) if text.startswith("labels") else text
        assert cli_message(text) == expected


def test_log_lines_go_to_stdout_and_warnings_to_stderr(capsys) -> None:
    log = logging.getLogger("bayescellseg.pipelines.predict")
    with console() as progress:
        log.info("[1/2] a.png: 3 nuclei")
        log.warning("[2/2] b.png: FAILED: exists, pass overwrite=True")
        assert isinstance(progress, BarProgress) and progress.enabled
    out = capsys.readouterr()
    assert "[1/2] a.png: 3 nuclei" in out.out
    assert "FAILED: exists, pass --overwrite" in out.err
    with console(quiet=True):
        log.info("hidden")
        log.warning("shown")
    out = capsys.readouterr()
    assert "hidden" not in out.out + out.err and "shown" in out.err
    logger = logging.getLogger("bayescellseg")
    assert logger.propagate and not logger.handlers  # restored


def test_progress_bar_counts_images_with_an_eta(monkeypatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    bar = BarProgress()
    bar.start(2, "predict")
    bar.advance("a.png")
    bar.advance("b.png")
    bar.close()
    text = stream.getvalue()
    assert "predict" in text and "2/2" in text and ("image/s" in text or "s/image" in text)
    quiet = io.StringIO()
    monkeypatch.setattr("sys.stderr", quiet)
    silent = BarProgress(enabled=False)
    silent.start(1, "predict")
    silent.advance("a.png")
    silent.close()
    assert quiet.getvalue() == ""
