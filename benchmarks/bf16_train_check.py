"""Does bf16 training reach the same validation curve as fp32? Two short runs, side by side.

The same data, seed and schedule are trained twice, once in fp32 and once with bf16 autocast
(fp32 master weights and loss, channels-last), and the training loss and validation DSB / Dice
of every epoch are printed next to each other with the patches/s of each run. Two fp32 runs
from different seeds give the noise to compare the difference with (``--noise``).

    python benchmarks/bf16_train_check.py --data ../shared/data/dsb2018/stage1_train \
        --n-train 60 --n-val 20 --epochs 4 --steps 25 --noise
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bayescellseg.data.sources import SourceSpec, load_source
from bayescellseg.data.split import split_one_source
from bayescellseg.train.config import TrainConfig, load_train_config
from bayescellseg.train.trainer import fit


def _run(train: list, val: list, config: TrainConfig, out: Path) -> tuple[list[dict], float]:
    t0 = time.perf_counter()
    fit(train, val, config, out)
    seconds = time.perf_counter() - t0
    with open(out / "train_log.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return rows, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--labels", type=Path, default=None, help="label folder override")
    parser.add_argument("--n-train", type=int, default=60)
    parser.add_argument("--n-val", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--noise", action="store_true", help="also an fp32 run with seed 1")
    args = parser.parse_args()
    spec = SourceSpec(
        name="d", path=str(args.data), labels=str(args.labels) if args.labels else None
    )
    samples = load_source(spec).samples
    parts = split_one_source("d", [s.id for s in samples], ["x"] * len(samples), None, 0.25, 0)
    by_id = {s.id: s for s in samples}
    train = [by_id[i] for i in parts["train"][: args.n_train]]
    val = [by_id[i] for i in parts["val"][: args.n_val]]
    base = load_train_config(None, {
        "preset": "deterministic", "base_channels": args.width, "epochs": args.epochs,
        "steps_per_epoch": args.steps, "progress": False, "seed": 0,
    })  # fmt: skip
    runs = {"fp32": replace(base, amp=False), "bf16": replace(base, amp=True)}
    if args.noise:
        runs["fp32 seed 1"] = replace(base, amp=False, seed=1)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, config in runs.items():
            results[name] = _run(train, val, config, Path(tmp) / name.replace(" ", "_"))
    names = list(results)
    print(f"\n{len(train)} training, {len(val)} validation images of {args.data.name}; "
          f"width {args.width}, {args.epochs} x {args.steps} steps of 8 crops\n")  # fmt: skip
    head = " | ".join(f"{n} loss | {n} val DSB | {n} val Dice" for n in names)
    print(f"| epoch | {head} |\n|---|" + "---|" * (3 * len(names)))
    for e in range(args.epochs):
        cells = []
        for n in names:
            row = results[n][0][e]
            cells += [f"{float(row['loss']):.4f}", f"{float(row['val_dsb']):.3f}",
                      f"{float(row['val_dice']):.3f}"]  # fmt: skip
        print(f"| {e + 1} | " + " | ".join(cells) + " |")
    print("\n| run | seconds | patches/s (mean of epochs) |\n|---|---|---|")
    for n in names:
        rows, seconds = results[n]
        speed = sum(float(r["patches_per_s"]) for r in rows) / len(rows)
        print(f"| {n} | {seconds:.0f} | {speed:.2f} |")


if __name__ == "__main__":
    main()
