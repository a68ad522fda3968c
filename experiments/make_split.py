"""Regenerate (or verify) the bundled DSB2018 stage1_train train/validation split.

Stratified by imaging type (grey fluorescence vs colour brightfield / H&E: an image is colour
when its R, G, B channels differ) and image size (sizes with fewer than 10 images of a type are
grouped into ``other-small`` / ``other-large``). 80/20, seed 0.

Usage:
    python experiments/make_split.py --root ../shared/data/dsb2018/stage1_train          # write
    python experiments/make_split.py --root ../shared/data/dsb2018/stage1_train --check  # verify
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from bayescellseg.data.split import DEFAULT_SPLIT, make_split, stratum_keys
from bayescellseg.io.atomic import write_json_atomic

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "dsb2018" / "stage1_train"


def describe(path: Path) -> tuple[str, tuple[int, int]]:
    """Imaging kind (``"grey"`` / ``"colour"``) and ``(height, width)`` of one PNG."""
    with Image.open(path) as im:
        arr = np.asarray(im)
    if arr.ndim == 3 and arr.shape[2] >= 3:
        rgb = arr[..., :3]
        grey = np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
    else:
        grey = True
    return ("grey" if grey else "colour"), (int(arr.shape[0]), int(arr.shape[1]))


def build(root: Path, val_fraction: float, seed: int) -> dict:
    """Scan ``root`` (Kaggle layout) and make the stratified split."""
    ids = sorted(p.name for p in root.iterdir() if (p / "images" / f"{p.name}.png").is_file())
    if not ids:
        raise SystemExit(f"{root}: no <id>/images/<id>.png found")
    info = [describe(root / i / "images" / f"{i}.png") for i in ids]
    keys = stratum_keys([k for k, _ in info], [s for _, s in info])
    return make_split(ids, keys, val_fraction=val_fraction, seed=seed)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--out", type=Path, default=DEFAULT_SPLIT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--check", action="store_true", help="verify --out equals a regeneration")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    split = build(args.root, args.val_fraction, args.seed)
    for key, c in split["strata"].items():
        print(f"{key:24s} n={c['n']:4d} train={c['train']:4d} val={c['val']:4d}")
    print(f"total: train={len(split['train'])} val={len(split['val'])}")
    if args.check:
        stored = json.loads(args.out.read_text(encoding="utf-8"))
        if stored != split:
            print(f"MISMATCH: {args.out} differs from the regenerated split", file=sys.stderr)
            return 1
        print(f"OK: {args.out} is identical to the regenerated split")
        return 0
    write_json_atomic(args.out, split, overwrite=args.overwrite)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
