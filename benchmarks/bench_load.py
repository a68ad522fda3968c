"""Benchmark: cold decode vs warm cache load of a DSB-layout dataset.

Usage:
    python benchmarks/bench_load.py [--root ../shared/data/dsb2018/stage1_train] [--workers 2]

Prints a table: cold decode time (empty cache), warm cache load time, cache size on disk,
decoded size in memory and peak RSS. The cache goes to a temporary folder (removed afterwards)
unless --cache-dir is given.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bayescellseg.data.dataset import load_samples

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "dsb2018" / "stage1_train"


def _mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:,.0f} MiB"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=None, help="only the first N samples")
    args = parser.parse_args(argv)

    tmp = None
    cache = args.cache_dir
    if cache is None:
        tmp = tempfile.mkdtemp(prefix="bcs-bench-")
        cache = Path(tmp) / "cache"
    try:
        ids = None
        if args.limit:
            from bayescellseg.io.dsb import list_dsb_ids

            ids = list_dsb_ids(args.root)[: args.limit]
        t0 = time.perf_counter()
        cold = load_samples(args.root, ids=ids, cache_dir=cache, workers=args.workers)
        t_cold = time.perf_counter() - t0
        n = len(cold)
        mem = sum(s.image.nbytes + s.labels.nbytes for s in cold)
        del cold
        t0 = time.perf_counter()
        warm = load_samples(args.root, ids=ids, cache_dir=cache, workers=args.workers)
        t_warm = time.perf_counter() - t0
        assert len(warm) == n
        disk = sum(p.stat().st_size for p in Path(cache).glob("*.npz"))
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        rows = [
            ("samples", f"{n}"),
            (f"cold decode ({args.workers} workers)", f"{t_cold:.1f} s"),
            ("warm cache load", f"{t_warm:.2f} s"),
            ("cache size on disk", _mib(disk)),
            ("decoded size in memory", _mib(mem)),
            ("peak RSS (main process)", _mib(own)),
            ("peak RSS (largest worker)", _mib(kids)),
        ]
        width = max(len(k) for k, _ in rows)
        print(f"{'measure':<{width}}  value")
        print(f"{'-' * width}  {'-' * 10}")
        for key, value in rows:
            print(f"{key:<{width}}  {value}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
