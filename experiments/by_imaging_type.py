"""Split evaluation reports by imaging type (fluorescence vs brightfield/H&E).

Reads each report's ``per_image.csv`` and ``evaluate_config.json`` (for the data root), decides
each image's type with ``bayescellseg.data.normalize.imaging_type`` (colour H&E and grey
brightfield are told apart by ``is_colour``), and prints a markdown table of mean DSB, Dice and
image uncertainty per type.

    python experiments/by_imaging_type.py runs/decoder16.eval_mc runs/deterministic16.eval_det
    python experiments/by_imaging_type.py runs/eval_s31_auto runs/eval_dh_auto --source dsb2018
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


def image_path(root: Path, image: str) -> Path:
    """The image file of ``image`` under a data folder: DSB layout or ``images/`` + ``labels/``."""
    found = sorted((root / "images").glob(f"{image}.*")) if (root / "images").is_dir() else []
    return found[0] if found else root / image / "images" / f"{image}.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reports", nargs="+", type=Path, help="bayescellseg evaluate outputs")
    parser.add_argument("--source", help="only this source's images (per_image.csv 'dataset')")
    args = parser.parse_args()
    kinds: dict[str, str] = {}
    print("| report | imaging type | n | DSB | Dice | mean image uncertainty |")
    print("|---|---|---|---|---|---|")
    for report in args.reports:
        data = [Path(d) for d in json.loads((report / "evaluate_config.json").read_text())["data"]]
        roots = {d.name: d for d in data}
        rows = list(csv.DictReader((report / "per_image.csv").open()))
        if args.source:
            rows = [r for r in rows if r["dataset"] == args.source]
        for r in rows:
            key = f"{r['dataset']}/{r['image']}"
            if key not in kinds:
                root = roots.get(r["dataset"], data[0])
                kinds[key] = image_kind(image_path(root, r["image"]))
        groups: dict[str, list[dict[str, str]]] = {}
        for r in rows:
            kind = kinds[f"{r['dataset']}/{r['image']}"]
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
