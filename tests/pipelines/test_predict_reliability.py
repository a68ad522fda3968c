"""Issue 20: a bad input fails alone, outputs are all-or-nothing, runs into one folder never
mix (cases 1, 3, 4, 5, 7, 10, 11)."""

from __future__ import annotations

import csv
import errno
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import tifffile

from bayescellseg.cli import main
from bayescellseg.errors import OutputError
from bayescellseg.inference.segmenter import Segmenter
from bayescellseg.pipelines import outdir
from bayescellseg.pipelines.inputs import scan_inputs
from bayescellseg.pipelines.predict import PredictOptions, predict_batch
from bayescellseg.prediction_folder import OUTPUT_SUFFIXES
from tests.pipelines.test_predict import write_images


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "summary.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _outputs(out: Path, name: str) -> list[str]:
    return sorted(p.name for p in out.glob(f"{name}_*"))


def test_case1_corrupt_tiff_fails_alone_and_batch_goes_on(model_dir, tmp_path, capsys) -> None:
    images = write_images(tmp_path / "in", n=1, corrupt=False)
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00")
    out = tmp_path / "out"
    code = main(["predict", str(bad), str(images[0]), "--model", str(model_dir), "--out",
                 str(out), "--samples", "2"])  # fmt: skip
    assert code == 1
    assert {r["image"]: r["status"] for r in _rows(out)}["img0"] == "ok"
    assert "bad.tif: cannot decode TIFF" in {r["image"]: r["status"] for r in _rows(out)}["bad"]
    assert json.loads((out / "run_config.json").read_text())["n_ok"] == 1
    assert "Traceback" not in capsys.readouterr().err


def test_case3_second_run_into_a_locked_folder_stops(model_dir, tmp_path) -> None:
    images = write_images(tmp_path / "in", n=1, corrupt=False)
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / outdir.LOCK_NAME).write_text(
            json.dumps({"pid": holder.pid, "host": os.uname().nodename, "started": "t"})
        )
        with pytest.raises(OutputError, match=rf"another bayescellseg run \(PID {holder.pid}"):
            predict_batch(
                Segmenter.load(model_dir), images, out, PredictOptions(n_samples=2, overwrite=True)
            )
        assert not list(out.glob("img0_*"))
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale and is taken over; the run releases it at the end
    summary = predict_batch(Segmenter.load(model_dir), images, out, PredictOptions(n_samples=2))
    assert summary.n_ok == 1 and not (out / outdir.LOCK_NAME).exists()


def test_case3_cli_exit_code_for_a_locked_folder(model_dir, tmp_path, capsys) -> None:
    images = write_images(tmp_path / "in", n=1, corrupt=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / outdir.LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
    args = ["predict", str(images[0]), "--model", str(model_dir), "--out", str(out)]
    assert main([*args, "--overwrite"]) == 2
    assert "is writing into this folder" in capsys.readouterr().err


def test_case4_resume_keeps_complete_redoes_partial(model_dir, tmp_path) -> None:
    write_images(tmp_path / "in", n=3, corrupt=False)
    out = tmp_path / "out"
    options = PredictOptions(n_samples=2)
    predict_batch(Segmenter.load(model_dir), [tmp_path / "in"], out, options)
    reference = {p.name: p.read_bytes() for p in out.glob("img*")}
    # an interrupted batch: no batch files, img1 half written, img2 never started
    (out / "summary.csv").unlink()
    (out / "run_config.json").unlink()
    (out / "img1_overlay.png").unlink()
    (out / "img1_nuclei.csv").unlink()
    for path in out.glob("img2_*"):
        path.unlink()
    kept_before = (out / "img0_summary.json").stat().st_mtime_ns
    summary = predict_batch(
        Segmenter.load(model_dir), [tmp_path / "in"], out, PredictOptions(2, resume=True)
    )
    assert (summary.n_ok, summary.n_failed, summary.kept) == (3, 0, ["img0"])
    assert (out / "img0_summary.json").stat().st_mtime_ns == kept_before
    assert {p.name: p.read_bytes() for p in out.glob("img*")} == reference
    rows = _rows(out)
    assert sorted(r["image"] for r in rows) == ["img0", "img1", "img2"]
    assert [r["seconds"] for r in rows if r["image"] == "img0"] == [""]


def test_case4_resume_refuses_other_settings(model_dir, tmp_path) -> None:
    images = write_images(tmp_path / "in", n=1, corrupt=False)
    out = tmp_path / "out"
    predict_batch(Segmenter.load(model_dir), images, out, PredictOptions(n_samples=2))
    with pytest.raises(Exception, match=r"other settings \(seed 0 -> 3\)"):
        predict_batch(
            Segmenter.load(model_dir), images, out, PredictOptions(n_samples=2, seed=3, resume=True)
        )
    # the precision of the loaded model is part of the run, also when the options leave it
    fp32 = Segmenter.load(model_dir, precision="fp32")
    out2 = tmp_path / "out2"
    predict_batch(fp32, images, out2, PredictOptions(n_samples=2))
    bf16 = Segmenter.load(model_dir, precision="bf16")
    with pytest.raises(Exception, match=r"other settings \(precision 'fp32' -> 'bf16'\)"):
        predict_batch(bf16, images, out2, PredictOptions(n_samples=2, resume=True))


def test_case5_failed_write_names_the_file_and_leaves_nothing(
    model_dir, tmp_path, monkeypatch
) -> None:
    images = write_images(tmp_path / "in", n=1, corrupt=False)
    out = tmp_path / "out"
    real = tifffile.imwrite
    calls = iter(range(100))

    def disk_full_on_third(path, *args, **kwargs):
        if next(calls) == 2:
            with open(path, "wb") as fh:
                fh.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(tifffile, "imwrite", disk_full_on_third)
    summary = predict_batch(Segmenter.load(model_dir), images, out, PredictOptions(n_samples=2))
    problem = summary.failures[0][1]
    assert problem == f"{out / 'img0_entropy.tif'}: cannot write (No space left on device)"
    assert sorted(p.name for p in out.iterdir()) == ["run_config.json", "summary.csv"]
    monkeypatch.setattr(tifffile, "imwrite", real)
    # a later run does not refuse the image (nothing of it exists)
    again = predict_batch(
        Segmenter.load(model_dir), images, out, PredictOptions(n_samples=2, resume=True)
    )
    assert again.n_ok == 1 and len(_outputs(out, "img0")) == len(OUTPUT_SUFFIXES)


def test_case5_leftovers_of_a_killed_run_are_removed(model_dir, tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="bayescellseg")
    images = write_images(tmp_path / "in", n=1, corrupt=False)
    out = tmp_path / "out"
    staging = out / outdir.STAGING_NAME / "img9"
    staging.mkdir(parents=True)
    (staging / "img9_labels.tif").write_bytes(b"half")
    (out / ".img0_labels.tif.ab3_x9zq.tmp.tif").write_bytes(b"half")
    predict_batch(Segmenter.load(model_dir), images, out, PredictOptions(n_samples=2))
    assert not (out / outdir.STAGING_NAME).exists()
    assert not list(out.glob(".*.tmp*")) and not list(out.glob("img9*"))
    printed = caplog.text
    assert "removed the incomplete outputs of img9" in printed and "1 temporary file" in printed


def test_case5_interrupted_move_is_finished(model_dir, tmp_path) -> None:
    images = write_images(tmp_path / "in", n=1, corrupt=False)
    out = tmp_path / "out"
    staging = out / outdir.STAGING_NAME / "old"
    staging.mkdir(parents=True)
    (staging / "old_labels.tif").write_bytes(b"labels")
    (staging / outdir.COMPLETE_MARKER).write_bytes(b"")
    (out / "old_summary.json").write_text("{}")  # moved in before the kill
    predict_batch(Segmenter.load(model_dir), images, out, PredictOptions(n_samples=2))
    assert (out / "old_labels.tif").read_bytes() == b"labels"


def test_case7_unreadable_input_folder_fails_alone(model_dir, tmp_path, monkeypatch) -> None:
    good = write_images(tmp_path / "in", n=1, corrupt=False)
    locked = tmp_path / "locked"
    locked.mkdir()
    real_iterdir = Path.iterdir

    def iterdir(self):
        if self == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)  # chmod 000 does not stop root
    summary = predict_batch(
        Segmenter.load(model_dir), [locked, good[0]], tmp_path / "out", PredictOptions(2)
    )
    assert (summary.n_ok, summary.n_failed) == (1, 1)
    assert summary.failures[0] == (locked, "cannot read the folder (Permission denied)")


def test_case7_unwritable_out_fails_before_the_first_image(model_dir, tmp_path, monkeypatch):
    images = write_images(tmp_path / "in", n=1, corrupt=False)
    out = tmp_path / "out"

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(outdir.tempfile, "NamedTemporaryFile", refuse)
    with pytest.raises(OutputError, match="cannot write into the output folder"):
        predict_batch(Segmenter.load(model_dir), images, out, PredictOptions(n_samples=2))
    assert not list(out.iterdir())


def test_case7_full_disk_fails_before_the_first_image(model_dir, tmp_path, monkeypatch, capsys):
    images = write_images(tmp_path / "in", n=1, corrupt=False)
    out = tmp_path / "out"
    monkeypatch.setattr(outdir.shutil, "disk_usage", lambda p: SimpleNamespace(free=1000))
    args = ["predict", str(images[0]), "--model", str(model_dir), "--out", str(out)]
    assert main(args) == 2
    assert "not enough free space before the first image" in capsys.readouterr().err
    assert not list(out.glob("img0*"))


def test_case10_skipped_entries_and_own_outputs_are_reported(model_dir, tmp_path) -> None:
    folder = tmp_path / "in"
    write_images(folder, n=1, corrupt=False)
    (folder / "dir.png").mkdir()
    (folder / "loop.tif").symlink_to(folder / "loop.tif")
    out = tmp_path / "out"
    predict_batch(Segmenter.load(model_dir), [folder], out, PredictOptions(n_samples=2))
    scan = scan_inputs([folder])
    assert [p.name for p in scan.files] == ["img0.png"]
    reasons = {p.name: r for p, r in scan.skipped}
    assert reasons == {"dir.png": "a folder named like an image; skipped",
                       "loop.tif": "broken symbolic link or symlink loop; skipped"}  # fmt: skip
    # a folder of predict outputs: maps, overlays and labels are skipped, and said so
    again = scan_inputs([out])
    assert again.files == []
    assert sorted(p.name for p, _ in again.skipped) == sorted(
        f"img0{s}" for s in OUTPUT_SUFFIXES if s.endswith((".tif", ".png"))
    )
    assert again.problems == [(out, again.problems[0][1])]
    assert "besides skipped entries" in again.problems[0][1]


def test_case11_internal_error_exit_code_3_with_log(tmp_path, monkeypatch, capsys) -> None:
    import bayescellseg.cli.predict as commands

    def bug(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(commands, "predict_batch", bug)
    assert main(["predict", str(tmp_path), "--out", str(tmp_path / "o")]) == 3
    err = capsys.readouterr().err
    assert "internal error (KeyError" in err and "Traceback" not in err
    log = Path(err.split("the traceback is in ")[1].split(". Please")[0])
    assert "Traceback" in log.read_text() and "a bug" in log.read_text()
    log.unlink()
