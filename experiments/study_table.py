"""Collect the study's evaluation reports into one markdown table (printed to stdout).

Usage: python experiments/study_table.py RUNS_DIR

Reads ``RUNS_DIR/<model>.eval_<variant>/metrics.json`` (written by ``bayescellseg evaluate``),
``<...>.time.json`` (wall time of that evaluate command, from ``run_study.sh``) and
``RUNS_DIR/<model>/train_log.csv`` (training time = sum of the epochs' seconds).
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

from PIL import Image

VARIANTS = {
    "det": "sampling off",
    "mc": "MC sampling",
    "det_tta": "sampling off + TTA",
    "mc_tta": "MC sampling + TTA",
}
#: A deep ensemble without dropout has no sampling to switch: its "MC" rows average the members.
ENSEMBLE_VARIANTS = {"mc": "all members", "mc_tta": "all members + TTA"}


def model_doc(model_dir: Path) -> dict:
    """The model folder's ``config.json`` ({} if there is none)."""
    config = model_dir / "config.json"
    return json.loads(config.read_text()) if config.is_file() else {}


def variant_label(doc: dict, variant: str) -> str:
    cfg = doc.get("model", {})
    if cfg.get("method") == "ensemble" and not cfg.get("dropout_rate"):
        return ENSEMBLE_VARIANTS.get(variant, variant)
    return VARIANTS.get(variant, variant)


def _get(d: dict, *keys: str) -> float:
    for k in keys:
        if not isinstance(d, dict) or d.get(k) is None:
            return math.nan
        d = d[k]
    return float(d)


def _megapixels(report: Path) -> float:
    cfg = json.loads((report / "evaluate_config.json").read_text())
    root = Path(cfg["data"][0])
    total = 0
    with open(report / "per_image.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            img = root / row["image"] / "images" / f"{row['image']}.png"
            with Image.open(img) as im:
                total += im.size[0] * im.size[1]
    return total / 1e6


def _train_hours(model_dir: Path, doc: dict, member: int | None = None) -> float:
    """Sum of the epoch times (of one ensemble member when ``member`` is given).

    A partial ensemble (``ensemble_partial.py``) counts its members in the run it came from; an
    assembled one (``ensemble_assemble.py``) adds up its members' sources.
    """
    training = doc.get("training", {})
    if "assembled_from" in training and member is None:
        return sum(
            _train_hours(Path(s["source"]), model_doc(Path(s["source"])), s["member"])
            for s in training["assembled_from"]
        )
    log, keep = model_dir / "train_log.csv", None
    source = training.get("partial_ensemble_of")
    if not log.is_file() and source:
        log, keep = Path(source) / "train_log.csv", int(doc["model"]["n_members"])
    if not log.is_file():
        return math.nan
    with open(log, newline="") as fh:
        rows = [
            r
            for r in csv.DictReader(fh)
            if (member is None or int(r["member"]) == member)
            and (keep is None or int(r["member"]) < keep)
        ]
    return sum(float(r["seconds"]) for r in rows) / 3600


def row(runs: Path, report: Path) -> list[str]:
    """One table row for one evaluation report."""
    model, variant = report.name.split(".eval_")
    doc = model_doc(runs / model)
    m = json.loads((report / "metrics.json").read_text())["overall"]
    seg, cal, unc = m["segmentation"], m["calibration"], m["uncertainty"]
    timing = report.with_name(report.name + ".time.json")
    seconds = json.loads(timing.read_text())["seconds"] if timing.is_file() else math.nan
    values = [
        _get(seg, "dsb"),
        _get(seg, "ap50"),
        _get(seg, "dice"),
        _get(cal, "all_pixels", "ece"),
        _get(cal, "boundary_band", "ece"),
        _get(unc, "pixel", "entropy", "auroc"),
        _get(unc, "pixel", "epistemic", "auroc"),
        _get(unc, "nucleus", "auroc"),
        _get(unc, "image", "spearman_uncertainty_dsb"),
        _get(unc, "image", "retention", "auc_model"),
        _get(unc, "image", "retention", "auc_random"),
        _get(unc, "image", "retention", "auc_oracle"),
    ]
    cells = [f"{v:.3f}" if not math.isnan(v) else "n/a" for v in values]
    return [
        model,
        variant_label(doc, variant),
        str(int(m["n_images"])),
        *cells,
        f"{_train_hours(runs / model, doc):.2f}",
        f"{seconds / _megapixels(report):.1f}" if not math.isnan(seconds) else "n/a",
    ]


HEADER = [
    "model",
    "inference",
    "val images",
    "DSB",
    "AP50",
    "Dice",
    "ECE",
    "band ECE",
    "pixel AUROC (entropy)",
    "pixel AUROC (MI)",
    "nucleus AUROC",
    "image Spearman",
    "retention AUC",
    "random",
    "oracle",
    "train h",
    "eval s/Mpx",
]


def main(runs: Path) -> None:
    """Print the markdown table for every report under ``runs``."""
    reports = sorted(p for p in runs.glob("*.eval_*") if (p / "metrics.json").is_file())
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for report in reports:
        print("| " + " | ".join(row(runs, report)) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs"))
