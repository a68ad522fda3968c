"""Time Cellpose's network (CPnet, default size, random weights) on one image, tiled as Cellpose
tiles it (224x224 tiles, 10 % overlap, batches of 8, two input channels, float32).

Run by a Python that has cellpose installed (a separate venv: cellpose must not change this
project's torch); called by ``bench_predict.py --cellpose PYTHON``. No weights are downloaded:
random weights cost the same as trained ones. Prints one JSON line (s/Mpx, peak RSS).

Usage::

    /tmp/cpvenv/bin/python benchmarks/cellpose_net.py image.npy --threads 2
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import resource
import time
from importlib import metadata

import numpy as np
import torch

BSIZE, OVERLAP, BATCH = 224, 0.1, 8


def tile_starts(size: int) -> list[int]:
    """Cellpose's ``make_tiles`` start positions along one axis."""
    if size <= BSIZE:
        return [0]
    n = max(2, int(math.ceil((1.0 + 2 * OVERLAP) * size / BSIZE)))
    return [int(round(v)) for v in np.linspace(0, size - BSIZE, n)]


def build_cpnet() -> torch.nn.Module:
    """CPnet with Cellpose's default size (nbase 2-32-64-128-256, 3 outputs, 3x3 kernels)."""
    from cellpose.resnet_torch import CPnet

    params = inspect.signature(CPnet).parameters
    kwargs = {"nbase": [2, 32, 64, 128, 256], "nout": 3, "sz": 3}
    if "mkldnn" in params:
        kwargs["mkldnn"] = False
    return CPnet(**{k: v for k, v in kwargs.items() if k in params}).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", help=".npy image (H, W) or (H, W, C)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image = np.load(args.image).astype(np.float32)
    grey = image.mean(axis=2) if image.ndim == 3 else image
    x = np.stack([grey, np.zeros_like(grey)])  # Cellpose's nuclei input: channel + empty
    rows, cols = tile_starts(x.shape[1]), tile_starts(x.shape[2])
    tiles = [x[:, r : r + BSIZE, c : c + BSIZE] for r in rows for c in cols]
    net = build_cpnet()
    with torch.inference_mode():
        net(torch.from_numpy(np.stack(tiles[:BATCH])))  # warm-up
        start = time.perf_counter()
        for i in range(0, len(tiles), BATCH):
            net(torch.from_numpy(np.ascontiguousarray(np.stack(tiles[i : i + BATCH]))))
        seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "s_per_mpx": seconds / (grey.size / 1e6),
                "seconds": seconds,
                "n_tiles": len(tiles),
                "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "cellpose": metadata.version("cellpose"),
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
