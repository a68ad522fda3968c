"""Per-source tables of ``evaluate`` reports, one row per model: DSB / AP50 / Dice, nucleus
AUROC / image Spearman, and the band / all-pixel ECE of the foreground probability.

    python experiments/per_source_table.py runs/heldout_report_ensemble16 \
        runs/heldout_report_generalist16_m1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _row(report: Path) -> tuple[list[str], dict[str, dict]]:
    metrics = json.loads((report / "metrics.json").read_text())
    datasets = metrics["datasets"]
    return list(datasets), {n: d for n, d in datasets.items()} | {"all": metrics["overall"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", type=Path, nargs="+", help="evaluate report folders")
    args = parser.parse_args()
    names, _ = _row(args.reports[0])
    cols = [*names, "all"]
    _table(args.reports, cols, "DSB / AP50 / Dice", _seg)
    _table(args.reports, cols, "nucleus AUROC / Spearman", _uq)
    _table(args.reports, cols, "band ECE / ECE", _ece)


def _table(reports: list[Path], cols: list[str], what: str, cell) -> None:
    """One markdown table: a row per report, ``cell(entry)`` per column."""
    print("\n| model | " + " | ".join(f"{c} {what}" for c in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for report in reports:
        _, rows = _row(report)
        print(f"| {report.name} | " + " | ".join(cell(rows[c]) for c in cols) + " |")


def _seg(entry: dict) -> str:
    seg = entry["segmentation"]
    return f"{seg['dsb']:.3f} / {seg['ap50']:.3f} / {seg['dice']:.3f} (n={entry['n_images']})"


def _ece(entry: dict) -> str:
    cal = entry.get("calibration") or {}
    values = [cal.get(k, {}).get("ece") for k in ("boundary_band", "all_pixels")]
    return " / ".join("-" if v is None else f"{v:.3f}" for v in values)


def _uq(entry: dict) -> str:
    unc = entry.get("uncertainty", {})
    auroc = unc.get("nucleus", {}).get("auroc")
    rho = unc.get("image", {}).get("spearman_uncertainty_dsb")
    return " / ".join("-" if v is None else f"{v:.3f}" for v in (auroc, rho))


if __name__ == "__main__":
    main()
