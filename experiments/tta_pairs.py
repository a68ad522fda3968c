"""Does test-time augmentation help? Each TTA report against the same model without TTA.

The study's TTA rows cover only the first 24 validation images, so their figures cannot be
compared with the 134-image rows directly. This script pairs every ``<name>.eval_<v>_tta``
report in a runs folder with ``<name>.eval_<v>`` and scores the report without TTA on the
images that the TTA report covers (from both ``per_image.csv`` files): mean DSB and the
Spearman correlation of image uncertainty with DSB, with and without TTA.

    python experiments/tta_pairs.py runs
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from study_table import model_doc, variant_label


def per_image(report: Path) -> dict[str, tuple[float, float]]:
    """``image -> (dsb, image_uncertainty)`` from a report's ``per_image.csv``."""
    with open(report / "per_image.csv", newline="") as f:
        return {
            r["image"]: (float(r["dsb"]), float(r["image_uncertainty"])) for r in csv.DictReader(f)
        }


def paired(without: dict, with_tta: dict) -> dict[str, float]:
    """Mean DSB and Spearman of both reports on the images of ``with_tta``."""
    missing = sorted(set(with_tta) - set(without))
    if missing:
        raise ValueError(f"{len(missing)} TTA image(s) absent without TTA, e.g. {missing[0]}")
    keys = sorted(with_tta)
    out: dict[str, float] = {"n": float(len(keys))}
    for tag, rows in (("without", without), ("with", with_tta)):
        dsb = np.array([rows[k][0] for k in keys])
        unc = np.array([rows[k][1] for k in keys])
        out[f"dsb_{tag}"] = float(dsb.mean())
        out[f"rho_{tag}"] = float(spearmanr(unc, dsb)[0]) if np.ptp(unc) > 0 else float("nan")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", type=Path)
    args = parser.parse_args()
    print("| model | inference | images | DSB without TTA | with TTA | change | "
          "Spearman without | with |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for tta in sorted(args.runs.glob("*.eval_*_tta")):
        base = tta.with_name(tta.name.removesuffix("_tta"))
        if not (tta / "per_image.csv").is_file() or not (base / "per_image.csv").is_file():
            continue
        name, variant = tta.name.split(".eval_")
        p = paired(per_image(base), per_image(tta))
        kind = variant_label(model_doc(args.runs / name), variant.removesuffix("_tta"))
        print(
            f"| {name} | {kind} | {p['n']:.0f} | {p['dsb_without']:.3f} | {p['dsb_with']:.3f} | "
            f"{p['dsb_with'] - p['dsb_without']:+.3f} | {p['rho_without']:.3f} | "
            f"{p['rho_with']:.3f} |"
        )


if __name__ == "__main__":
    main()
