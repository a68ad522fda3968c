"""Split evaluation reports by imaging type (fluorescence vs brightfield/H&E).

Reads each report's ``per_image.csv`` and ``evaluate_config.json`` (for the data root), decides
each image's type with ``bayescellseg.data.normalize.imaging_type`` (colour H&E and grey
brightfield are told apart by ``is_colour``), and prints a markdown table of mean DSB, Dice and
image uncertainty per type.

    python experiments/by_imaging_type.py runs/decoder16.eval_mc runs/deterministic16.eval_det
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from bayescellseg.data.normalize import imaging_type, is_colour
from bayescellseg.io.images import read_image


def image_kind(path: Path) -> str:
    """``fluorescence``, ``H&E (colour)`` or ``brightfield (grey)``."""
    image = read_image(path)
    if imaging_type(image) == "fluorescence":
        return "fluorescence"
    return "H&E (colour)" if is_colour(image) else "brightfield (grey)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reports", nargs="+", type=Path, help="bayescellseg evaluate outputs")
    args = parser.parse_args()
    kinds: dict[str, str] = {}
    print("| report | imaging type | n | DSB | Dice | mean image uncertainty |")
    print("|---|---|---|---|---|---|")
    for report in args.reports:
        root = Path(json.loads((report / "evaluate_config.json").read_text())["data"][0])
        rows = list(csv.DictReader((report / "per_image.csv").open()))
        for r in rows:
            if r["image"] not in kinds:
                kinds[r["image"]] = image_kind(root / r["image"] / "images" / f"{r['image']}.png")
        groups: dict[str, list[dict[str, str]]] = {}
        for r in rows:
            kind = kinds[r["image"]]
            groups.setdefault(kind, []).append(r)
            if kind != "fluorescence":
                groups.setdefault("brightfield + H&E", []).append(r)
        for kind in ("fluorescence", "brightfield + H&E", "H&E (colour)", "brightfield (grey)"):
            g = groups.get(kind, [])
            if not g:
                continue
            mean = {
                k: np.mean([float(r[k]) for r in g]) for k in ("dsb", "dice", "image_uncertainty")
            }
            print(
                f"| {report.name} | {kind} | {len(g)} | {mean['dsb']:.3f} | {mean['dice']:.3f} "
                f"| {mean['image_uncertainty']:.3f} |"
            )


if __name__ == "__main__":
    main()
