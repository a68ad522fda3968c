"""Regenerate the README figures in docs/images from an evaluation report and the demo output.

    make demo
    python experiments/readme_figures.py --report runs/decoder16_ft.eval_mc --demo demo_out/pred

Copies the validation report's retention, uncertainty-vs-score and reliability plots, the demo
overlay of one bundled sample, and renders that sample's epistemic (mutual information) map on a
square-root colour scale (0 to its 99.9th percentile), so that small values stay visible.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from bayescellseg.report.overlay import colorize

DEMO_SAMPLE = "4d09672bcf5a2661eea00891bbb8191225a06619a849aece37ad10d9dedbde3e"
PLOTS = {
    "retention.png": "val_retention.png",
    "uncertainty_vs_score.png": "val_uncertainty_vs_score.png",
    "reliability.png": "val_reliability.png",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--report", type=Path, required=True, help="evaluate output (val split)")
    parser.add_argument("--demo", type=Path, default=Path("demo_out/pred"), help="predict output")
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for src, dst in PLOTS.items():
        shutil.copyfile(args.report / src, args.out / dst)
    shutil.copyfile(args.demo / f"{DEMO_SAMPLE}_overlay.png", args.out / "demo_overlay.png")
    epistemic = tifffile.imread(args.demo / f"{DEMO_SAMPLE}_epistemic.tif")
    vmax = max(float(np.percentile(epistemic, 99.9)), 1e-6)
    rgb = colorize(np.sqrt(np.clip(epistemic, 0.0, None)), vmin=0.0, vmax=float(np.sqrt(vmax)))
    Image.fromarray(rgb).save(args.out / "demo_epistemic.png")
    print(
        f"wrote {len(PLOTS) + 2} figures to {args.out} (epistemic: sqrt scale, 0-{vmax:.3f} bits)"
    )


if __name__ == "__main__":
    main()
