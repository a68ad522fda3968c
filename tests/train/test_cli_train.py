"""``bayescellseg train`` end to end on a tiny DSB-layout folder with its own split file."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from bayescellseg.cli import main
from bayescellseg.model.store import load_model
from tests.data.test_sources import write_dsb


def test_train_command_end_to_end(tmp_path, capsys) -> None:
    root = tmp_path / "dsb"
    write_dsb(root, ["a", "b", "c", "d", "e"])
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
    assert training["split_given_sha256"] == hashlib.sha256(split.read_bytes()).hexdigest()
    own = (out / "split.json").read_bytes()  # the folder's split: what evaluate reads back
    assert training["split_sha256"] == hashlib.sha256(own).hexdigest()
    assert main(["evaluate", "--model", str(out), "--data", str(root), "--split", "val",
                 "--out", str(tmp_path / "eval"), "--quiet"]) == 0  # fmt: skip
    assert training["data_root"] == str(root.resolve())
    assert training["n_train_images"] == 3 and training["val_ids"] == ["e", "d"]
    assert training["config"]["epochs"] == 1 and training["config"]["crop"] == 32
    assert any((tmp_path / "cache").iterdir())  # decoded images were cached

    # again without --resume / --overwrite: a clear error, exit status 2, nothing changed
    before = (out / "weights.safetensors").read_bytes()
    assert main(args) == 2
    assert "pass --resume to continue the run saved there or --overwrite" in capsys.readouterr().err
    assert (out / "weights.safetensors").read_bytes() == before
    resume = ["train", "--data", str(root), "--out", str(out), "--resume"]
    assert main([*resume, "--lr", "0.5"]) == 2  # a setting that a resume must keep
    err = capsys.readouterr().err
    assert "training_config.json: --resume needs the same training settings; " in err
    assert "differ from the stored run: lr" in err

    # --resume with more epochs picks the stored settings up (no --config needed)
    assert main([*resume, "--epochs", "2"]) == 0
    log = (out / "train_log.csv").read_text().splitlines()
    assert len(log) == 3 and log[2].startswith("0,2,")

    # a folder that is not this split's data is refused before training
    other = tmp_path / "other"
    write_dsb(other, ["x"])
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


TINY = ["--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2", "--crop", "32",
        "--base-channels", "4", "--depth", "2", "--method", "mc_dropout", "--num-threads", "1"]  # fmt: skip


def test_train_on_a_plain_folder_without_split_then_predict_and_fine_tune(tmp_path, capsys):
    from tests.data.test_sources import write_folder

    data = write_folder(tmp_path / "my_4_images", 4, size=(40, 40))
    out = tmp_path / "m"
    assert main(["train", "--data", str(data), "--out", str(out), *TINY]) == 0
    split = json.loads((out / "split.json").read_text())["sources"]["my_4_images"]
    assert len(split["train"]) == 3 and len(split["val"]) == 1
    training = load_model(out).extras["training"]
    assert training["split_file"] == "split.json"
    assert training["sources"]["my_4_images"]["crop_share"] == 1.0
    pred = tmp_path / "pred"
    image = data / "images" / "img0.png"
    assert main(["predict", str(image), "--model", str(out), "--out", str(pred)]) == 0
    assert (pred / "img0_labels.tif").is_file()
    # fine-tuning from the trained folder, with the small-data defaults
    tuned = tmp_path / "m2"
    args = ["train", "--data", str(data), "--out", str(tuned), "--init-from", str(out),
            "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2", "--crop", "64",
            "--num-threads", "1"]  # fmt: skip
    assert main(args) == 0  # crops larger than the 40x40 images are mirror-padded
    stored = json.loads((tuned / "training_config.json").read_text())
    assert stored["lr"] == 2e-4 and stored["warmup_fraction"] == 0.1  # fine-tuning defaults
    # evaluate --split val scores exactly the model's own validation images
    report = tmp_path / "report"
    status = main(["evaluate", "--model", str(out), "--data", str(data), "--split", "val",
                   "--out", str(report)])  # fmt: skip
    assert status == 0
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["overall"]["n_images"] == 1
    rows = (report / "per_image.csv").read_text().splitlines()[1:]
    assert [r.split(",")[1] for r in rows] == split["val"]


def test_train_on_two_sources_logs_per_source_validation(tmp_path, capsys, caplog):
    caplog.set_level("INFO", logger="bayescellseg")
    from tests.data.test_sources import write_folder

    lab = write_folder(tmp_path / "lab", 5, size=(40, 40))
    tnbc = write_folder(tmp_path / "tnbc", 5, size=(40, 48), seed=30)
    (tnbc / "index.tsv").write_text(
        "id\tpatient\n" + "".join(f"img{k}\tp{k // 2}\n" for k in range(5))
    )
    out = tmp_path / "m3"
    args = ["train", "--data", str(lab), str(tnbc), "--out", str(out), *TINY,
            "--source-weight", "tnbc=0.5"]  # fmt: skip
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "lab dsb" in captured.out and "tnbc dsb" in captured.out
    assert "grouped by 'patient'" in caplog.text
    header = (out / "train_log.csv").read_text().splitlines()[0].split(",")
    for column in ("val_dsb/lab", "val_ap50/lab", "val_dice/lab", "val_dsb/tnbc"):
        assert column in header
    doc = json.loads((out / "split.json").read_text())["sources"]
    assert doc["tnbc"]["crop_share"] == 0.5 and doc["lab"]["crop_share"] == 0.5
    val_patients = {k // 2 for k in range(5) if f"img{k}" in doc["tnbc"]["val"]}
    train_patients = {k // 2 for k in range(5) if f"img{k}" in doc["tnbc"]["train"]}
    assert val_patients and not val_patients & train_patients


def test_bad_training_folder_stops_before_training_with_the_list(tmp_path, capsys):
    import tifffile

    from tests.data.test_sources import write_folder

    data = write_folder(tmp_path / "lab", 4, size=(40, 40))
    tifffile.imwrite(data / "labels" / "img1.tif", np.zeros((40, 40), np.uint16))
    out = tmp_path / "m"
    assert main(["train", "--data", str(data), "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    assert "img1.tif" in err and "no nuclei" in err and "--skip-bad" in err
    assert not (out / "weights.safetensors").exists()
    assert main(["train", "--data", str(data), "--out", str(out), *TINY, "--skip-bad"]) == 0
    empty = tmp_path / "nothing"
    empty.mkdir()
    assert main(["train", "--data", str(empty), "--out", str(tmp_path / "m9"), *TINY]) == 2
    assert "no dataset found" in capsys.readouterr().err


def test_train_errors_name_the_flags_not_the_parameters(tmp_path, capsys) -> None:
    """The library says ``labels``, ``weights``, ``data=FOLDER``, ``resume=True``; the CLI the
    flags ``--labels``, ``--source-weight``, ``--data FOLDER``, ``--resume``."""
    from tests.data.test_sources import write_folder

    lab = write_folder(tmp_path / "lab", 2, size=(40, 40))
    data = ["train", "--data", f"lab={lab}", "--out", str(tmp_path / "m"), *TINY]
    for extra, message in [
        (["--labels", "zz=/x"], "--labels: 'zz=/x': no source is named 'zz'; sources: ['lab']"),
        (["--groups", "zz=g.csv"], "--groups: 'zz=g.csv': no source is named 'zz'"),
        (["--source-weight", "lab"], "--source-weight: 'lab' must be given as NAME=VALUE"),
        (["--val-data", f"lab={lab}"], "--data: two sources are named 'lab'"),
        (["--resume"], "train without --resume first"),
        (["--device", "gpu"], "--device: unknown device 'gpu' (use cpu, cuda or cuda:N)"),
    ]:
        assert main([*data, *extra]) == 2, extra
        assert message in capsys.readouterr().err, extra
    assert main(["train", "--out", str(tmp_path / "m2"), *TINY]) == 2
    assert "training config: no training data; give --data FOLDER" in capsys.readouterr().err
    assert not (tmp_path / "m" / "weights.safetensors").exists()
