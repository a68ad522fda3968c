"""Issue 20, kill test: ``predict`` killed with SIGKILL partway, then ``--resume``, gives the
same files as an uninterrupted run (apart from timestamps, the command line and timings)."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from tests.inference.conftest import make_model_dir
from tests.synthetic import synthetic_image, synthetic_labels

REPO = Path(__file__).resolve().parents[2]


def _write_six(folder: Path) -> None:
    folder.mkdir(parents=True)
    for i in range(6):
        labels = synthetic_labels((64, 64), n=5 + i, seed=40 + i)
        rgb = (synthetic_image(labels, seed=i, noise=0.05) * 255).astype(np.uint8)
        Image.fromarray(rgb).save(folder / f"img{i}.png")


def _predict(images: Path, model: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "bayescellseg.cli", "predict", str(images), "--model",
               str(model), "--out", str(out), "--samples", "2", *extra]  # fmt: skip
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def _without_timings(summary_csv: bytes) -> list[dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(summary_csv.decode())))
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def _without_run_facts(run_config: bytes) -> dict:
    config = json.loads(run_config)
    for key in ("started", "finished", "command", "kept"):
        config.pop(key)
    config["options"].pop("resume")
    return config


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    model = make_model_dir(tmp_path)
    images = tmp_path / "in"
    _write_six(images)
    reference = _predict(images, model, tmp_path / "a")
    assert reference.wait(timeout=120) == 0, reference.stdout.read().decode()

    out = tmp_path / "b"
    killed = _predict(images, model, out)
    deadline = time.monotonic() + 120
    while not (out / ".bayescellseg-staging" / "img3").exists():  # image 4 of 6 is being written
        assert killed.poll() is None and time.monotonic() < deadline, "run ended before the kill"
        time.sleep(0.002)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(timeout=30) == -signal.SIGKILL
    assert (out / ".bayescellseg.lock").is_file()  # a killed run leaves its lock behind
    done = {p.name[: -len("_summary.json")] for p in out.glob("*_summary.json")}
    assert {"img0", "img1", "img2"} <= done and "img5" not in done
    assert not (out / "summary.csv").exists()

    resumed = _predict(images, model, out, "--resume")
    assert resumed.wait(timeout=120) == 0
    printed = resumed.stdout.read().decode()
    assert "kept from the interrupted run" in printed

    expected, actual = _files(tmp_path / "a"), _files(out)
    assert sorted(actual) == sorted(expected)  # no lock, staging folder or temp file left
    for name in sorted(expected):
        if name == "summary.csv":
            assert _without_timings(actual[name]) == _without_timings(expected[name])
        elif name == "run_config.json":
            assert _without_run_facts(actual[name]) == _without_run_facts(expected[name])
        else:
            assert actual[name] == expected[name], name
