"""Is the size estimate what H&E images lose? DSB per image without resizing, with ``auto``
and with the true median nucleus diameter, on held-out folders (DSB2018 folders: colour images
only), with the bundled model.

    python experiments/he_scale_check.py runs/heldout/tnbc runs/heldout/dsb2018
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from bayescellseg.data.sizes import median_diameter
from bayescellseg.inference.segmenter import Segmenter
from bayescellseg.io.images import read_image, read_label_image
from bayescellseg.io.imaging import is_colour
from bayescellseg.metrics.matching import dsb_score


def main() -> None:
    seg = Segmenter.load()
    print(f"bundled model, nucleus_diameter {seg.nucleus_diameter:.1f} px")
    for folder in map(Path, sys.argv[1:]):
        rows = []
        for path in sorted((folder / "images").glob("*.png")):
            image = read_image(path)
            if folder.name == "dsb2018" and not is_colour(image):
                continue
            truth = read_label_image(next((folder / "labels").glob(path.stem + ".*")))
            true_d = median_diameter([truth])
            row = {"true diameter": true_d, "n_true": len(np.unique(truth)) - 1}
            for mode, diameter in (("none", None), ("auto", "auto"), ("true", true_d)):
                result = seg.predict(image, diameter=diameter)
                row[mode] = dsb_score(truth, result.labels)
                row[f"n {mode}"] = int(result.labels.max())
                if mode == "auto":
                    row["auto diameter"], row["auto scale"] = (
                        result.info.diameter,
                        result.info.scale,
                    )
            rows.append(row)
        means = pd.DataFrame(rows).mean().round(3)
        print(f"{folder.name} ({len(rows)} images):", means.to_dict(), flush=True)


if __name__ == "__main__":
    main()
