"""`bayescellseg predict` end to end through the CLI entry point."""

from __future__ import annotations

import csv

import pytest
import torch

from bayescellseg.cli import main
from tests.inference.conftest import make_model_dir
from tests.pipelines.test_predict import write_images


def test_cli_predict_exit_codes(tmp_path, capsys) -> None:
    model = make_model_dir(tmp_path)
    write_images(tmp_path / "in", n=2, corrupt=True)
    out = tmp_path / "out"
    args = ["predict", str(tmp_path / "in"), "--model", str(model), "--out", str(out)]
    assert main([*args, "--samples", "2", "--tile", "32"]) == 1  # one corrupt image
    captured = capsys.readouterr()
    assert "2 ok, 1 failed" in captured.out  # progress on stdout, failures on stderr
    assert "broken.png: FAILED" in captured.err
    with open(out / "summary.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 3
    # Existing outputs: refused with exit code 2 and a clear message.
    assert main([*args, "--samples", "2"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    # Only good images, overwrite: success.
    good = ["predict", str(tmp_path / "in" / "img0.png"), "--model", str(model)]
    assert main([*good, "--out", str(out), "--overwrite", "--samples", "2", "--tta"]) == 0


def test_cli_predict_missing_model(tmp_path, capsys) -> None:
    write_images(tmp_path / "in", n=1, corrupt=False)
    code = main(["predict", str(tmp_path / "in"), "--model", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 2
    assert "model folder not found" in capsys.readouterr().err


def test_predict_bundled_model_deterministic_pass(tmp_path) -> None:
    import json

    from bayescellseg.samples import sample_root

    sample = sample_root() / "1609b1b8480ee52652a644403b3f7d5511410a016750aa3b9a4c8ddb3e893e8e"
    assert main(["predict", str(sample), "--out", str(tmp_path), "--samples", "0"]) == 0
    summary = json.loads((tmp_path / f"{sample.name}_summary.json").read_text())
    # the bundled model is a 3-member ensemble: sampling off is still one pass per member
    assert summary["n_samples"] == 3 and summary["n_nuclei"] > 5
    assert main(["predict", str(sample), "--out", str(tmp_path / "b"), "--samples", "-1"]) == 2


def test_cli_predict_diameter(tmp_path, capsys) -> None:
    write_images(tmp_path / "in", n=1, corrupt=False)
    plain = make_model_dir(tmp_path / "plain")
    args = ["predict", str(tmp_path / "in"), "--samples", "2"]
    # a model that records no training size: refused before any output is written
    assert (
        main([*args, "--model", str(plain), "--out", str(tmp_path / "a"), "--diameter", "9"]) == 2
    )
    assert "records no nucleus_diameter" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    sized = make_model_dir(tmp_path / "sized", {"nucleus_diameter": 18.0})
    assert (
        main([*args, "--model", str(sized), "--out", str(tmp_path / "b"), "--diameter", "x"]) == 2
    )
    assert "--diameter: expected a number with an optional unit, got 'x'" in capsys.readouterr().err
    assert (
        main([*args, "--model", str(sized), "--out", str(tmp_path / "c"), "--diameter", "9"]) == 0
    )
    with open(tmp_path / "c" / "summary.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert float(row["diameter"]) == 9.0 and float(row["scale"]) == 2.0


def test_cli_errors_name_the_flags_not_the_parameters(tmp_path, capsys, monkeypatch) -> None:
    """The library says ``device``, ``diameter='8um'``, ``pixel_size=MICRONS``; the CLI flags."""
    write_images(tmp_path / "in", n=1, corrupt=False)
    sized = make_model_dir(tmp_path / "sized", {"nucleus_diameter": 18.0})
    args = ["predict", str(tmp_path / "in"), "--model", str(sized), "--samples", "2"]
    monkeypatch.setattr(torch.backends.mps, "is_built", lambda: False)  # as on Linux
    assert main([*args, "--out", str(tmp_path / "a"), "--device", "mps"]) == 2
    err = capsys.readouterr().err
    assert "error: --device: 'mps' requested but" in err
    assert err.rstrip().endswith("; use --device cpu or --device auto")
    # a length for a PNG (no pixel size): that image fails, naming both flags
    assert main([*args, "--out", str(tmp_path / "b"), "--diameter", "8um"]) == 1
    err = capsys.readouterr().err
    assert "img0.png: --diameter 8um is a length, but the image records no pixel size; " in err
    assert "give it with --pixel-size MICRONS, or give the diameter in pixels" in err
    for flag, value, problem in [
        ("--channels", "0", "needs two or more distinct channels (use --channel N for one)"),
        ("--pixel-size", "3px", "is a physical length (um per pixel), got '3px'"),
    ]:
        with pytest.raises(SystemExit):  # argparse refuses it
            main([*args, "--out", str(tmp_path / "c"), flag, value])
        assert f"argument {flag}: {problem}" in capsys.readouterr().err


def test_cli_predict_notes_the_licence_of_the_weights(tmp_path, capsys) -> None:
    write_images(tmp_path / "in", n=1, corrupt=False)
    args = ["predict", str(tmp_path / "in"), "--samples", "2", "--diameter", "none"]
    mit = make_model_dir(tmp_path / "mit")
    assert main([*args, "--model", str(mit), "--out", str(tmp_path / "a")]) == 0
    assert "licensed" not in capsys.readouterr().err
    nc = make_model_dir(tmp_path / "nc", {"licence": "CC BY-NC-SA 4.0"})
    assert main([*args, "--model", str(nc), "--out", str(tmp_path / "b")]) == 0
    assert "note: this model's weights are licensed CC BY-NC-SA 4.0" in capsys.readouterr().err


def test_cli_predict_unknown_bundled_name_is_a_missing_folder(tmp_path, capsys) -> None:
    write_images(tmp_path / "in", n=1, corrupt=False)
    code = main(["predict", str(tmp_path / "in"), "--model", "nuclei-xyz",
                 "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 2
    assert "nuclei-xyz" in capsys.readouterr().err
