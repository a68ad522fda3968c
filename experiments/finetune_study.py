"""How much does fine-tuning a model on a few images of one source raise its score there?

The source's images are split once (stratified, seeded) into a held-out part and a pool; ``N``
images are drawn from the pool (seeded), linked into an ``images/`` + ``labels/`` folder and
used to fine-tune the model with ``bayescellseg train --init-from`` and its small-data defaults
(the fine-tuning run makes its own train / validation split of the ``N`` images). The model
before and after is scored on the held-out images with ``bayescellseg evaluate``. Prints a
markdown table and the fine-tuning time.

    python experiments/finetune_study.py --source ../shared/data/koyuncu_fluo --n 10 \
        --model bundled --work runs/finetune_koyuncu
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bayescellseg.cli import main as cli
from bayescellseg.data.sources import SourceSpec, sample_refs
from bayescellseg.data.split import split_one_source
from bayescellseg.train.config import init_folder


def _link_folder(folder: Path, pairs: list[tuple[Path, Path]]) -> Path:
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    for image, labels in pairs:
        (folder / "images" / image.name).symlink_to(image.resolve())
        (folder / "labels" / labels.name).symlink_to(labels.resolve())
    return folder


def _pairs(source: Path, ids: list[str]) -> list[tuple[Path, Path]]:
    images = {p.stem: p for p in (source / "images").iterdir()}
    labels = {p.stem: p for p in (source / "labels").iterdir()}
    return [(images[i], labels[i]) for i in ids]


def _score(model: str, data: Path, out: Path, limit: int | None) -> dict[str, float]:
    args = ["evaluate", "--model", model, "--data", str(data), "--out", str(out)]
    status = cli(args + (["--limit", str(limit)] if limit else []))
    if status != 0:
        raise SystemExit(f"evaluate failed ({status}): {' '.join(args)}")
    seg = json.loads((out / "metrics.json").read_text())["overall"]["segmentation"]
    return {k: float(seg[k]) for k in ("dsb", "ap50", "dice")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="images/ + labels/ folder")
    parser.add_argument("--n", type=int, default=10, help="images to fine-tune on")
    parser.add_argument("--model", default="bundled", help="model folder or 'bundled'")
    parser.add_argument("--work", type=Path, required=True, help="new folder for the runs")
    parser.add_argument("--held-out", type=float, default=0.25, help="share held out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="score at most N held-out")
    parser.add_argument("--train-args", nargs=argparse.REMAINDER, default=[],
                        help="more 'bayescellseg train' flags (last)")  # fmt: skip
    args = parser.parse_args()
    ids = [r.id for r in sample_refs(SourceSpec(name="s", path=str(args.source)))]
    split = split_one_source("study", ids, ["all"] * len(ids), None, args.held_out, args.seed)
    rng = np.random.default_rng(args.seed)
    chosen = sorted(rng.choice(split["train"], size=args.n, replace=False).tolist())
    work = args.work
    held = _link_folder(work / "held_out", _pairs(args.source, split["val"]))
    few = _link_folder(work / f"train_{args.n}", _pairs(args.source, chosen))
    model = str(init_folder(args.model))
    before = _score(model, held, work / "report_before", args.limit)
    t0 = time.perf_counter()
    status = cli(["train", "--data", str(few), "--out", str(work / "tuned"),
                  "--init-from", model, *args.train_args])  # fmt: skip
    seconds = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"fine-tuning failed ({status})")
    after = _score(str(work / "tuned"), held, work / "report_after", args.limit)
    print(f"\nSource {args.source.name}: fine-tuned on {args.n} images ({', '.join(chosen)}), "
          f"scored on {len(split['val'])} held-out images; fine-tuning took {seconds:.0f} s.\n")  # fmt: skip
    print("| model | DSB | AP50 | Dice |\n|---|---|---|---|")
    for name, scores in (("before", before), ("fine-tuned", after)):
        print(f"| {name} | {scores['dsb']:.3f} | {scores['ap50']:.3f} | {scores['dice']:.3f} |")


if __name__ == "__main__":
    main()
