"""Data-parallel training under torchrun (gloo on CPU): ranks stay identical, data is sharded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bayescellseg.train.distributed import DistContext, context_from_env

SCRIPT = Path(__file__).with_name("ddp_script.py")


def test_context_from_env(monkeypatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert context_from_env() == DistContext(0, 1, 0, 1)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    ctx = context_from_env()
    assert (ctx.rank, ctx.world_size, ctx.enabled, ctx.is_main) == (3, 4, True, False)


@pytest.mark.slow
def test_torchrun_two_cpu_ranks_end_identical(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(SCRIPT), str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["model"].keys() == r1["model"].keys()
    for key in r0["model"]:
        assert torch.equal(r0["model"][key], r1["model"][key]), key
    # disjoint shares of the crops: 2 epochs x 2 steps x batch 2 per rank
    assert len(r0["seen"]) == len(r1["seen"]) == 8
    assert not set(r0["seen"]) & set(r1["seen"])
    assert sorted(r0["seen"] + r1["seen"]) == list(range(16))
    # only rank 0 wrote the model folder, and it holds the shared weights
    last = torch.load(tmp_path / "model" / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.equal(last["model"][k], r0["model"][k]) for k in r0["model"])
    assert [p.name for p in (tmp_path / "model" / "checkpoints").iterdir()] == ["last.pt"]
    assert last["history"][-1]["epoch"] == 2
