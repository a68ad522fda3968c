"""Training loop: learning, checkpoints, bit-exact resume, model folder, refusals, ensembles."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from bayescellseg.data.sizes import median_diameter
from bayescellseg.errors import InputError
from bayescellseg.model.config import ModelConfig
from bayescellseg.model.store import load_model, update_extras
from bayescellseg.train import members, steps
from bayescellseg.train.history import LOG_COLUMNS
from bayescellseg.train.trainer import _runtime, fit
from bayescellseg.train.validation import validate
from tests.train.helpers import synthetic_samples, tiny_config

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data() -> tuple[list, list]:
    return synthetic_samples(4, seed=0), synthetic_samples(1, size=40, seed=50)


def _log(out) -> list[dict[str, str]]:
    with open(out / "train_log.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class _Crash(Exception):
    pass


def test_loss_drops_on_synthetic_blobs(tmp_path, data) -> None:
    cfg = tiny_config(
        model={"method": "deterministic", "dropout_rate": 0.0},
        epochs=4,
        steps_per_epoch=8,
        batch_size=4,
        lr=1e-2,
        augment=False,
    )
    fit(data[0], [], cfg, tmp_path / "m")
    losses = [float(r["loss"]) for r in _log(tmp_path / "m")]
    assert len(losses) == 4
    assert losses[-1] < 0.8 * losses[0], losses  # a clear, monotone decrease
    assert losses == sorted(losses, reverse=True)


def test_outputs_checkpoint_and_model_folder(tmp_path, data) -> None:
    out = tmp_path / "m"
    cfg = tiny_config()
    assert fit(data[0], data[1], cfg, out, provenance={"data_root": "synthetic"}) == out
    names = {p.name for p in out.iterdir()}
    assert {
        "config.json",
        "weights.safetensors",
        "training_config.json",
        "train_log.csv",
        "training_curve.png",
        "checkpoints",
    } <= names
    assert json.loads((out / "training_config.json").read_text()) == cfg.to_dict()
    rows = _log(out)
    assert list(rows[0]) == list(LOG_COLUMNS)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for r in rows:
        assert 0.0 <= float(r["val_dice"]) <= 1.0 and 0.0 <= float(r["val_dsb"]) <= 1.0
        assert float(r["patches_per_s"]) > 0 and float(r["lr"]) > 0
    assert (out / "training_curve.png").read_bytes()[:4] == b"\x89PNG"

    ck = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert ck["epoch"] == 2 and ck["member"] == 0 and ck["config"] == cfg.to_dict()
    assert {"model", "optimizer", "scheduler", "rng", "best_metric", "history"} <= set(ck)

    loaded = load_model(out)
    assert loaded.config == cfg.model
    training = loaded.extras["training"]
    best = max(rows, key=lambda r: float(r["val_dsb"]))
    assert training["best_epoch"] == int(best["epoch"])
    assert training["val_metrics"]["dsb"] == pytest.approx(float(best["val_dsb"]), abs=1e-5)
    assert training["data_root"] == "synthetic" and training["seed"] == cfg.seed
    assert training["config"] == cfg.to_dict() and training["epochs_done"] == 2
    expected = median_diameter(s.labels for s in data[0])
    assert loaded.extras["nucleus_diameter"] == pytest.approx(expected, abs=1e-3)
    if training["best_epoch"] == 2:  # the exported weights are the best epoch's
        assert _same_state(loaded.model.state_dict(), ck["model"])


def test_resume_after_crash_is_bit_exact(tmp_path, data, monkeypatch) -> None:
    cfg = tiny_config(model={"method": "variational", "dropout_rate": 0.0})
    fit(data[0], data[1], cfg, tmp_path / "straight")
    straight = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)

    real_report = members.report_epoch

    def crash_in_epoch_2(row, n_members):  # dies after training epoch 2, before its checkpoint
        if row["epoch"] == 2:
            raise _Crash
        real_report(row, n_members)

    monkeypatch.setattr(members, "report_epoch", crash_in_epoch_2)
    with pytest.raises(_Crash):
        fit(data[0], data[1], cfg, tmp_path / "resumed")
    half = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)
    assert half["epoch"] == 1  # the crashed epoch is lost, nothing else
    monkeypatch.setattr(members, "report_epoch", real_report)
    fit(data[0], data[1], cfg, tmp_path / "resumed", resume=True)
    resumed = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)

    assert _same_state(straight["model"], resumed["model"])
    assert not _same_state(half["model"], resumed["model"])
    assert straight["optimizer"]["state"][0]["exp_avg"].equal(
        resumed["optimizer"]["state"][0]["exp_avg"]
    )
    assert [r["loss"] for r in straight["history"]] == [r["loss"] for r in resumed["history"]]
    assert [r["epoch"] for r in _log(tmp_path / "resumed")] == ["1", "2"]
    assert float(_log(tmp_path / "resumed")[1]["kl"]) > 0  # the ELBO's KL term was trained


def test_existing_folder_is_refused_and_overwrite_starts_afresh(tmp_path, data) -> None:
    out = tmp_path / "m"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    cfg = tiny_config(epochs=1, steps_per_epoch=1)
    with pytest.raises(InputError, match="pass resume=True .* or overwrite=True") as err:
        fit(data[0], [], cfg, out)
    assert str(out) in str(err.value)
    with pytest.raises(InputError, match="nothing to resume.*train without resume=True"):
        fit(data[0], [], cfg, out, resume=True)
    fit(data[0], [], cfg, out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"  # not ours: left alone
    assert len(_log(out)) == 1
    with pytest.raises(
        InputError, match="resume=True needs the same .* differ from the stored run: lr"
    ):
        fit(data[0], [], tiny_config(epochs=1, steps_per_epoch=1, lr=0.1), out, resume=True)
    # a finished run resumed with more epochs carries on
    fit(data[0], [], tiny_config(epochs=2, steps_per_epoch=1), out, resume=True)
    assert [r["epoch"] for r in _log(out)] == ["1", "2"]


def _validation_scores(monkeypatch, dsb: float) -> None:
    """Every validation from now on reports a macro DSB of ``dsb`` (the rest as measured), so
    whether an epoch is a new best, and so exports new weights, does not depend on the data."""
    real = members._validate

    def fixed(nets, run):
        return {**real(nets, run), "dsb": dsb}

    monkeypatch.setattr(members, "_validate", fixed)


def test_resuming_a_finished_run_keeps_the_calibration(tmp_path, data, monkeypatch) -> None:
    """`train --resume` on a finished run trains nothing and must not drop calibrate's extras;
    more epochs keep them unless an epoch beats the best and exports new weights."""
    out = tmp_path / "m"
    cfg = tiny_config(epochs=1, steps_per_epoch=1)
    _validation_scores(monkeypatch, 0.5)
    fit(data[0], data[1], cfg, out)
    update_extras(out, temperature=1.5, logit_bias=-0.4)
    weights, doc = (out / "weights.safetensors").read_bytes(), (out / "config.json").read_text()
    fit(data[0], data[1], cfg, out, resume=True)
    assert (out / "config.json").read_text() == doc  # untouched, calibration included
    assert (out / "weights.safetensors").read_bytes() == weights
    extras = load_model(out).extras
    assert extras["temperature"] == 1.5 and extras["training"]["epochs_done"] == 1
    # more epochs, none better than the first: the same weights, calibration kept
    _validation_scores(monkeypatch, 0.25)
    fit(data[0], data[1], tiny_config(epochs=3, steps_per_epoch=1, lr=cfg.lr), out, resume=True)
    assert (out / "weights.safetensors").read_bytes() == weights
    extras = load_model(out).extras
    assert extras["temperature"] == 1.5 and extras["logit_bias"] == -0.4
    assert (extras["training"]["epochs_done"], extras["training"]["best_epoch"]) == (3, 1)
    # a better epoch exports new weights, which drops the old calibration
    _validation_scores(monkeypatch, 0.75)
    fit(data[0], data[1], tiny_config(epochs=4, steps_per_epoch=1, lr=cfg.lr), out, resume=True)
    assert (out / "weights.safetensors").read_bytes() != weights
    extras = load_model(out).extras
    assert "temperature" not in extras and "logit_bias" not in extras
    assert (extras["training"]["epochs_done"], extras["training"]["best_epoch"]) == (4, 4)


def test_ensemble_members_resume_and_load(tmp_path, data, monkeypatch) -> None:
    cfg = tiny_config(
        model={"method": "ensemble", "n_members": 2, "dropout_rate": 0.0},
        epochs=1,
        steps_per_epoch=2,
    )
    fit(data[0], data[1], cfg, tmp_path / "straight")
    real_report = members.report_epoch

    def crash_in_member_2(row, n_members):
        if row["member"] == 1:
            raise _Crash
        real_report(row, n_members)

    monkeypatch.setattr(members, "report_epoch", crash_in_member_2)
    with pytest.raises(_Crash):
        fit(data[0], data[1], cfg, tmp_path / "resumed")
    assert not (tmp_path / "resumed" / "weights.safetensors").exists()
    monkeypatch.setattr(members, "report_epoch", real_report)
    fit(data[0], data[1], cfg, tmp_path / "resumed", resume=True)

    a, b = load_model(tmp_path / "straight"), load_model(tmp_path / "resumed")
    assert len(a.model.members) == 2
    assert _same_state(a.model.state_dict(), b.model.state_dict())
    m0, m1 = (dict(m.state_dict()) for m in a.model.members)
    assert not _same_state(m0, m1)  # members differ (seeds)
    rows = _log(tmp_path / "resumed")
    assert [(r["member"], r["epoch"]) for r in rows] == [("0", "1"), ("1", "1")]
    dsb = a.extras["training"]["val_metrics"]["dsb"]
    assert 0.0 <= dsb <= 1.0 and a.extras["training"]["best_epoch"] is None


def test_validate_scores_a_perfect_predictor(data) -> None:
    from bayescellseg.data.targets import make_targets
    from bayescellseg.metrics.matching import dsb_score
    from bayescellseg.postprocess.watershed import instances_from_maps

    sample = data[1][0]
    targets = make_targets(sample.labels)

    class Oracle(torch.nn.Module):
        """Logits that reproduce the sample's own targets."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert x.shape == (1, 3, *sample.labels.shape)
            return (torch.from_numpy(targets)[None] * 2 - 1) * 30.0

    config = ModelConfig(base_channels=4, depth=2)
    scores = validate([Oracle(), Oracle()], [sample], config)
    assert scores["dice"] == pytest.approx(1.0)
    expected = dsb_score(sample.labels, instances_from_maps(targets[0], targets[1]))
    assert scores["dsb"] == pytest.approx(expected, abs=1e-6)
    assert scores["dsb"] > 0.8 and scores["n_images"] == 1
    empty = validate([Oracle()], [], config)
    assert np.isnan(empty["dsb"]) and empty["n_images"] == 0


@pytest.mark.parametrize("kind", ["cosine", "onecycle"])
def test_schedules_warm_up_peak_and_decay(kind: str) -> None:
    cfg = tiny_config(scheduler=kind, epochs=4, steps_per_epoch=25, lr=0.1, warmup_fraction=0.1)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = steps.make_scheduler(opt, cfg)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = int(np.argmax(lrs))
    assert 5 <= peak <= 15 and max(lrs) == pytest.approx(0.1, rel=0.05)
    assert lrs[0] < 0.5 * max(lrs) and lrs[-1] < 0.02 * max(lrs)
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1 :], strict=False))


def test_kl_weight_ramps_linearly_to_its_final_value() -> None:
    cfg = tiny_config(kl_weight=0.5, kl_anneal_epochs=2, steps_per_epoch=5)
    weights = [steps.kl_weight(cfg, s) for s in range(12)]
    assert weights[0] == pytest.approx(0.05) and weights[4] == pytest.approx(0.25)
    assert weights[9:] == [0.5, 0.5, 0.5]
    assert steps.kl_weight(tiny_config(kl_anneal_epochs=0, kl_weight=0.3), 0) == 0.3


def test_init_from_starts_with_the_folder_weights(tmp_path, data, monkeypatch) -> None:
    """A run started from a model folder begins at its weights, records where they came from,
    and refuses a folder of another architecture."""
    import hashlib

    first = tmp_path / "first"
    cfg = tiny_config(epochs=1, steps_per_epoch=2)
    fit(data[0], [], cfg, first)
    start = {k: v.clone() for k, v in load_model(first).model.state_dict().items()}
    seen: dict[str, dict] = {}

    def spy(*args, **kwargs):  # the weights the first step starts from
        seen.setdefault("state", {k: v.clone() for k, v in args[1].state_dict().items()})
        return original(*args, **kwargs)

    original = members.train_epoch
    monkeypatch.setattr(members, "train_epoch", spy)
    fine_tune = tiny_config(epochs=1, steps_per_epoch=1, init_from=str(first))
    fit(data[0], [], fine_tune, tmp_path / "ft")
    monkeypatch.setattr(members, "train_epoch", original)
    assert _same_state(seen["state"], start)
    init = load_model(tmp_path / "ft").extras["training"]["init_from"]
    digest = hashlib.sha256((first / "weights.safetensors").read_bytes()).hexdigest()
    assert init == {"folder": str(first.resolve()), "weights_sha256": digest}

    # a resume reads the recorded provenance: the init folder is no longer needed
    moved = tmp_path / "moved"
    first.rename(moved)
    more = tiny_config(epochs=2, steps_per_epoch=1, init_from=str(first))
    fit(data[0], [], more, tmp_path / "ft", resume=True)
    assert load_model(tmp_path / "ft").extras["training"]["init_from"] == init
    moved.rename(first)

    wider = tiny_config(model={"base_channels": 8}, init_from=str(first))
    with pytest.raises(InputError, match="model config differs"):
        fit(data[0], [], wider, tmp_path / "wider")
    with pytest.raises(InputError, match="weights.safetensors.*missing"):
        fit(data[0], [], tiny_config(init_from=str(tmp_path / "nowhere")), tmp_path / "x")


def test_resume_exports_an_ensemble_stopped_before_its_export(tmp_path, data, monkeypatch) -> None:
    """Every member finished but the run died before writing the model folder: --resume writes it."""
    cfg = tiny_config(
        model={"method": "ensemble", "n_members": 2, "dropout_rate": 0.0},
        epochs=1,
        steps_per_epoch=1,
    )

    def killed(*args, **kwargs):
        raise _Crash

    monkeypatch.setattr(members, "_export", killed)
    with pytest.raises(_Crash):
        fit(data[0], data[1], cfg, tmp_path / "m")
    assert not (tmp_path / "m" / "weights.safetensors").exists()
    monkeypatch.undo()
    fit(data[0], data[1], cfg, tmp_path / "m", resume=True)
    loaded = load_model(tmp_path / "m")
    assert len(loaded.model.members) == 2
    assert [r["member"] for r in _log(tmp_path / "m")] == ["0", "1"]  # nothing trained again


def test_cpu_training_layout_follows_amx_unless_asked(monkeypatch) -> None:
    """channels-last by default on CPUs with AMX only (faster there, slower without AMX)."""
    import bayescellseg.train.trainer as trainer

    monkeypatch.setattr(trainer, "cpu_has_amx", lambda: False)
    assert _runtime(tiny_config()).channels_last is False
    assert _runtime(tiny_config(channels_last=True)).channels_last is True
    monkeypatch.setattr(trainer, "cpu_has_amx", lambda: True)
    assert _runtime(tiny_config()).channels_last is True
    assert _runtime(tiny_config(channels_last=False)).channels_last is False


def test_amx_is_read_from_the_cpu_flags(monkeypatch) -> None:
    import bayescellseg.model.precision as prec

    monkeypatch.setattr(prec, "_cpu_flags", lambda: frozenset({"avx512_bf16"}))
    assert prec.cpu_has_bf16() and not prec.cpu_has_amx()
    monkeypatch.setattr(prec, "_cpu_flags", lambda: frozenset({"amx_bf16", "amx_tile"}))
    assert prec.cpu_has_bf16() and prec.cpu_has_amx()
    monkeypatch.setattr(prec, "_cpu_flags", lambda: frozenset({"avx2"}))
    assert not prec.cpu_has_bf16() and not prec.cpu_has_amx()
