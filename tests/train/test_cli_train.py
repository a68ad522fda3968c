"""``bayescellseg train`` end to end on a tiny DSB-layout folder with its own split file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

from bayescellseg.cli import main
from bayescellseg.model.store import load_model
from tests.synthetic import synthetic_image, synthetic_labels


def _write_dsb(root: Path, ids: list[str]) -> None:
    for i, sample_id in enumerate(ids):
        labels = synthetic_labels((40, 40), n=3, seed=i, radius=(4.0, 7.0))
        image = (synthetic_image(labels, seed=i) * 255).astype(np.uint8)
        (root / sample_id / "images").mkdir(parents=True)
        (root / sample_id / "masks").mkdir()
        Image.fromarray(image).save(root / sample_id / "images" / f"{sample_id}.png")
        for lab in np.unique(labels)[1:]:
            mask = ((labels == lab) * 255).astype(np.uint8)
            Image.fromarray(mask).save(root / sample_id / "masks" / f"m{lab:03d}.png")


def test_train_command_end_to_end(tmp_path, capsys) -> None:
    root = tmp_path / "dsb"
    _write_dsb(root, ["a", "b", "c", "d", "e"])
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["a", "b", "c"], "val": ["e", "d"]}))
    config = tmp_path / "train.json"
    config.write_text(json.dumps({
        "split": str(split), "steps_per_epoch": 2, "progress": False, "num_threads": 1,
        "model": {"depth": 2, "dropout_last_k": 1},
    }))  # fmt: skip
    out = tmp_path / "model"
    args = ["train", "--data", str(root), "--out", str(out), "--config", str(config),
            "--cache-dir", str(tmp_path / "cache"), "--epochs", "1", "--batch-size", "2",
            "--crop", "32", "--base-channels", "4", "--method", "mc_dropout"]  # fmt: skip
    assert main(args) == 0

    loaded = load_model(out)
    assert loaded.config.base_channels == 4 and loaded.config.depth == 2
    training = loaded.extras["training"]
    assert training["split_file"] == "split.json"
    assert training["split_sha256"] == hashlib.sha256(split.read_bytes()).hexdigest()
    assert training["data_root"] == str(root.resolve())
    assert training["n_train_images"] == 3 and training["val_ids"] == ["e", "d"]
    assert training["config"]["epochs"] == 1 and training["config"]["crop"] == 32
    assert any((tmp_path / "cache").iterdir())  # decoded images were cached

    # again without --resume / --overwrite: a clear error, exit status 2, nothing changed
    before = (out / "weights.safetensors").read_bytes()
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    assert (out / "weights.safetensors").read_bytes() == before

    # --resume with more epochs picks the stored settings up (no --config needed)
    assert main(["train", "--data", str(root), "--out", str(out), "--resume", "--epochs", "2"]) == 0
    log = (out / "train_log.csv").read_text().splitlines()
    assert len(log) == 3 and log[2].startswith("0,2,")

    # a folder that is not this split's data is refused before training
    other = tmp_path / "other"
    _write_dsb(other, ["x"])
    status = main(["train", "--data", str(other), "--out", str(tmp_path / "m2"), "--config",
                   str(config)])  # fmt: skip
    assert status == 2
    assert "image IDs of the split split.json are missing" in capsys.readouterr().err

    # fine-tuning from the trained folder: its architecture, its weights' hash on record
    tuned = tmp_path / "tuned"
    fine_tune = ["train", "--data", str(root), "--out", str(tuned), "--init-from", str(out),
                 "--split", str(split), "--epochs", "1", "--steps-per-epoch", "1",
                 "--batch-size", "2", "--crop", "32", "--num-threads", "1",
                 "--brightfield-share", "0.5"]  # fmt: skip
    assert main(fine_tune) == 0
    tuned_model = load_model(tuned)
    assert tuned_model.config == loaded.config
    init = tuned_model.extras["training"]["init_from"]
    assert (
        init["weights_sha256"]
        == hashlib.sha256((out / "weights.safetensors").read_bytes()).hexdigest()
    )
    assert tuned_model.extras["training"]["config"]["brightfield_share"] == 0.5
    # a model flag that contradicts the folder is refused with the key named
    status = main([*fine_tune[:4], str(tmp_path / "t2"), *fine_tune[5:], "--base-channels", "8"])
    assert status == 2
    assert "base_channels=8 (the folder has 4)" in capsys.readouterr().err
