"""Tests for bayescellseg.data.split."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from bayescellseg.data.split import DEFAULT_SPLIT, load_split, make_split, stratum_keys
from bayescellseg.errors import InputError


def _synthetic(counts: dict[str, int]) -> tuple[list[str], list[str]]:
    ids, keys = [], []
    for key, n in counts.items():
        for i in range(n):
            ids.append(f"{key.replace('/', '_')}_{i:03d}")
            keys.append(key)
    return ids, keys


COUNTS = {"grey/a": 334, "colour/b": 108, "grey/c": 92, "grey/d": 7, "grey/e": 3, "grey/f": 1}


def test_every_stratum_split_proportionally_disjoint_complete() -> None:
    ids, keys = _synthetic(COUNTS)
    split = make_split(ids, keys, val_fraction=0.2, seed=3)
    train, val = set(split["train"]), set(split["val"])
    assert not train & val
    assert train | val == set(ids)
    assert len(val) == round(0.2 * len(ids))
    key_of = dict(zip(ids, keys, strict=True))
    val_per = Counter(key_of[i] for i in val)
    for key, n in COUNTS.items():
        assert abs(val_per[key] - 0.2 * n) < 1.0, key
        assert split["strata"][key] == {"n": n, "train": n - val_per[key], "val": val_per[key]}
    assert (split["strata"]["grey/a"]["val"], split["strata"]["colour/b"]["val"]) == (67, 22)
    assert split["train"] == sorted(split["train"]) and split["val"] == sorted(split["val"])


def test_deterministic_and_order_independent() -> None:
    ids, keys = _synthetic(COUNTS)
    a = make_split(ids, keys, seed=0)
    b = make_split(ids[::-1], keys[::-1], seed=0)
    assert a == b
    c = make_split(ids, keys, seed=1)
    assert c["val"] != a["val"]
    assert c["strata"] == a["strata"]


def test_stratum_unaffected_by_other_strata() -> None:
    ids, keys = _synthetic({"grey/a": 50, "colour/b": 20})
    ids2, keys2 = _synthetic({"grey/a": 50, "colour/b": 30, "grey/z": 10})
    a = make_split(ids, keys, seed=0)
    b = make_split(ids2, keys2, seed=0)
    assert [i for i in a["val"] if i.startswith("grey_a")] == [
        i for i in b["val"] if i.startswith("grey_a")
    ]


def test_extreme_fractions_and_bad_input() -> None:
    ids, keys = _synthetic({"x": 5, "y": 4})
    assert make_split(ids, keys, val_fraction=0.0)["val"] == []
    assert make_split(ids, keys, val_fraction=1.0)["train"] == []
    with pytest.raises(ValueError, match="duplicates"):
        make_split(["a", "a"], ["x", "x"])
    with pytest.raises(ValueError, match="length"):
        make_split(["a"], ["x", "y"])
    with pytest.raises(ValueError, match="val_fraction"):
        make_split(ids, keys, val_fraction=1.5)


def test_stratum_keys_groups_rare_sizes() -> None:
    kinds = ["grey"] * 12 + ["grey"] * 3 + ["grey"] * 2 + ["colour"] * 2
    shapes = [(256, 256)] * 12 + [(1040, 1388)] * 3 + [(260, 347)] * 2 + [(256, 256)] * 2
    keys = stratum_keys(kinds, shapes, min_count=10)
    assert keys[:12] == ["grey/256x256"] * 12
    assert keys[12:15] == ["grey/other-large"] * 3
    assert keys[15:17] == ["grey/other-small"] * 2
    assert keys[17:] == ["colour/other-small"] * 2


def test_load_split_bundled_and_errors(tmp_path: Path) -> None:
    split = load_split()
    assert len(split["train"]) == 536 and len(split["val"]) == 134
    assert not set(split["train"]) & set(split["val"])
    assert load_split(DEFAULT_SPLIT) == split
    with pytest.raises(InputError, match="not found"):
        load_split(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="JSON"):
        load_split(bad)
    bad.write_text(json.dumps({"train": ["a", "b"], "val": ["b"]}))
    with pytest.raises(InputError, match="both train and val"):
        load_split(bad)
    bad.write_text(json.dumps({"train": ["a"]}))
    with pytest.raises(InputError, match="'val' list"):
        load_split(bad)


def test_bundled_split_covers_real_data(dsb_root: Path) -> None:
    ids = {p.name for p in dsb_root.iterdir() if p.is_dir()}
    split = load_split()
    assert len(ids) == 670
    assert set(split["train"]) | set(split["val"]) == ids
    assert not set(split["train"]) & set(split["val"])
    stored = json.loads(DEFAULT_SPLIT.read_text())
    assert sum(c["n"] for c in stored["strata"].values()) == 670
    colour = sum(c["n"] for k, c in stored["strata"].items() if k.startswith("colour/"))
    assert colour == 108


# ----------------------------------------------------------------------------- per-source splits


def test_group_split_keeps_groups_together_and_is_deterministic() -> None:
    from bayescellseg.data.split import make_group_split

    ids = [f"p{g:02d}_{i}" for g in range(11) for i in range(g % 4 + 2)]  # 11 groups, 2-5 each
    groups = {i: i.split("_")[0] for i in ids}
    split = make_group_split(ids, groups, 0.2, seed=0, salt="tnbc")
    assert set(split["train"]) | set(split["val"]) == set(ids)
    assert not set(split["train"]) & set(split["val"])
    val_groups = {groups[i] for i in split["val"]}
    train_groups = {groups[i] for i in split["train"]}
    assert val_groups and train_groups and not val_groups & train_groups
    target = round(len(ids) * 0.2)
    assert abs(len(split["val"]) - target) <= 3  # whole groups of 2-5 images
    # the same inputs in another order, the same result; another seed, another split
    assert make_group_split(list(reversed(ids)), groups, 0.2, seed=0, salt="tnbc") == split
    others = [make_group_split(ids, groups, 0.2, seed=s, salt="tnbc") for s in range(1, 6)]
    assert any(o != split for o in others)


def test_group_split_never_puts_every_group_in_validation() -> None:
    from bayescellseg.data.split import make_group_split

    groups = {"a": "g1", "b": "g1", "c": "g2"}
    split = make_group_split(list(groups), groups, 0.9, seed=0)
    assert split["train"] and split["val"]


def test_split_one_source_stratifies_and_handles_tiny_sources() -> None:
    from bayescellseg.data.split import split_one_source

    ids = [f"g{i:02d}" for i in range(40)] + [f"c{i:02d}" for i in range(10)]
    strata = ["grey/256x256"] * 40 + ["colour/256x256"] * 10
    split = split_one_source("lab", ids, strata, None, 0.2, seed=1)
    assert sum(i.startswith("g") for i in split["val"]) == 8
    assert sum(i.startswith("c") for i in split["val"]) == 2
    assert split == split_one_source("lab", ids, strata, None, 0.2, seed=1)
    assert split_one_source("lab", ["only"], ["grey/x"], None, 0.2, 0) == {
        "train": ["only"],
        "val": [],
    }
    four = split_one_source("lab", list("abcd"), ["grey/x"] * 4, None, 0.2, 0)
    assert len(four["val"]) == 1 and len(four["train"]) == 3
    two = split_one_source("lab", ["a", "b"], ["grey/x"] * 2, None, 0.9, 0)
    assert len(two["train"]) >= 1


def test_bundled_split_is_used_only_for_dsb2018_ids() -> None:
    from bayescellseg.data.split import bundled_split_for

    bundled = load_split()
    ids = sorted(bundled["train"] + bundled["val"])
    assert bundled_split_for(ids) == bundled
    fewer = ids[6:]  # the corrected labels drop 6 images
    restricted = bundled_split_for(fewer)
    assert restricted is not None and set(restricted["val"]) <= set(bundled["val"])
    assert set(restricted["train"]) | set(restricted["val"]) == set(fewer)
    assert bundled_split_for(["img0", "img1"]) is None
    assert bundled_split_for(ids[:100]) is None  # a subset of DSB2018 is split afresh


def test_split_ids_for_reads_both_formats(tmp_path: Path) -> None:
    from bayescellseg.data.split import split_ids_for

    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"train": ["a"], "val": ["b"]}))
    assert split_ids_for(plain, tmp_path / "anything", "val") == ["b"]
    folder = tmp_path / "lab"
    folder.mkdir()
    doc = {"format": 2, "sources": {"lab": {"path": str(folder), "train": ["x"], "val": ["y"]}}}
    own = tmp_path / "split.json"
    own.write_text(json.dumps(doc))
    assert split_ids_for(own, folder, "train") == ["x"]
    with pytest.raises(InputError, match="not a source of the split"):
        split_ids_for(own, tmp_path / "other", "val")
    with pytest.raises(InputError, match="unknown split part"):
        split_ids_for(own, folder, "test")
