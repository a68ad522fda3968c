"""Does bf16 change the results that matter? ``bayescellseg evaluate`` at fp32 and at bf16 on
the 134 DSB2018 validation images, and the differences of the headline metrics.

The check passes when DSB, band ECE, nucleus-error AUROC and Spearman(image uncertainty, DSB)
are all within ``--tolerance`` (0.005) of fp32. Each run takes a few minutes on 2 cores.

Usage::

    python benchmarks/bf16_check.py --data ../shared/data/dsb2018/stage1_train --out /tmp/bf16
    python benchmarks/bf16_check.py --reuse --out /tmp/bf16   # only compare earlier runs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

#: (label, path in metrics.json under "overall", checked against the tolerance)
METRICS = (
    ("DSB score", ("segmentation", "dsb"), True),
    ("band ECE", ("calibration", "boundary_band", "ece"), True),
    ("nucleus-error AUROC", ("uncertainty", "nucleus", "auroc"), True),
    (
        "Spearman(image uncertainty, DSB)",
        ("uncertainty", "image", "spearman_uncertainty_dsb"),
        True,
    ),
    ("all-pixel ECE", ("calibration", "all_pixels", "ece"), False),
    ("pixel-error AUROC (entropy)", ("uncertainty", "pixel", "entropy", "auroc"), False),
)


def _get(metrics: dict, path: tuple[str, ...]) -> float:
    value = metrics["overall"]
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return float("nan") if value is None else float(value)


def _evaluate(args: argparse.Namespace, precision: str) -> float:
    """Run ``bayescellseg evaluate`` at ``precision``; return its wall time in seconds."""
    out = Path(args.out) / precision
    cmd = [
        sys.executable, "-m", "bayescellseg.cli", "evaluate", "--model", str(args.model),
        "--data", str(args.data), "--split", "val", "--out", str(out), "--precision", precision,
        "--overwrite",
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="src/bayescellseg/pretrained/nuclei")
    parser.add_argument("--data", default="../shared/data/dsb2018/stage1_train")
    parser.add_argument("--out", required=True, help="parent folder of the fp32/ and bf16/ runs")
    parser.add_argument("--tolerance", type=float, default=0.005)
    parser.add_argument("--reuse", action="store_true", help="compare existing runs only")
    parser.add_argument(
        "--runs", nargs="+", default=["fp32", "bf16"], help="precisions to (re)run (default both)"
    )
    args = parser.parse_args()

    seconds = {}
    if not args.reuse:
        for precision in args.runs:
            seconds[precision] = _evaluate(args, precision)
    runs = {
        p: json.loads((Path(args.out) / p / "metrics.json").read_text()) for p in ("fp32", "bf16")
    }
    n_images = runs["fp32"]["overall"]["n_images"]
    load = os.getloadavg()
    print(
        f"{n_images} validation images, model {args.model}, load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n"
    )
    print("| metric | fp32 | bf16 | bf16 - fp32 | within tolerance |")
    print("|---|---|---|---|---|")
    ok = True
    for label, path, checked in METRICS:
        a, b = _get(runs["fp32"], path), _get(runs["bf16"], path)
        within = abs(b - a) <= args.tolerance
        ok &= within or not checked
        verdict = ("yes" if within else "**no**") if checked else "(not checked)"
        print(f"| {label} | {a:.4f} | {b:.4f} | {b - a:+.4f} | {verdict} |")
    if len(seconds) == 2:
        print(
            f"| evaluate wall time, s | {seconds['fp32']:.0f} | {seconds['bf16']:.0f} | "
            f"{seconds['bf16'] / seconds['fp32']:.2f}x | |"
        )
    print(f"\n{'PASS' if ok else 'FAIL'}: tolerance {args.tolerance}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
