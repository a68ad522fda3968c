"""Benchmark of stochastic inference: seconds per megapixel and peak memory vs T, with and without
decoder-tail sharing, for a base-32 depth-4 U-Net with ``last_k`` MC dropout (random weights).

Every configuration runs in its own subprocess so that its peak RSS (``ru_maxrss``) is its own.

Usage::

    python benchmarks/bench_predict.py                 # the T / sharing table on a 512x512 image
    python benchmarks/bench_predict.py --big 4096      # plus the full Segmenter on 4096x4096, T=20
    python benchmarks/bench_predict.py --threads 2 --last-k 1 2
    python benchmarks/bench_predict.py --malloc default   # glibc's allocator untuned
    python benchmarks/bench_predict.py --samples --bundled 4096  # only the bundled model, 4096x4096
    python benchmarks/bench_predict.py --samples --bundled 2048 --diameter auto  # cost of auto

``--malloc tuned`` (the default) runs as the ``bayescellseg`` command does, with
:func:`bayescellseg.malloc.keep_freed_memory`; ``default`` leaves glibc as it comes.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: A bundled fluorescence sample (696x520), tiled for ``--bundled``.
BUNDLED_SAMPLE = "4d09672bcf5a2661eea00891bbb8191225a06619a849aece37ad10d9dedbde3e"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _tune(args: argparse.Namespace) -> None:
    from bayescellseg.malloc import keep_freed_memory

    if args.malloc == "tuned":
        keep_freed_memory()


def _run_one(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    _tune(args)
    from bayescellseg.inference.sampling import SamplingOptions, sample_image
    from bayescellseg.model.build import build_model
    from bayescellseg.model.config import ModelConfig

    torch.set_num_threads(args.threads)
    if args.method == "deterministic":
        config = ModelConfig(base_channels=32, depth=4, method="deterministic")
    else:
        config = ModelConfig(
            base_channels=32,
            depth=4,
            method="mc_dropout",
            dropout_placement="last_k",
            dropout_last_k=args.k,
        )
    model = build_model(config, seed=0).eval()
    image = np.random.default_rng(0).uniform(size=(args.size, args.size, 3)).astype(np.float32)
    options = SamplingOptions(n_samples=args.t, share=args.share == 1, seed=0)
    sample_image(model, config, image[:64, :64], options, tile_size=512)  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        sample_image(model, config, image, options, tile_size=512)
        times.append(time.perf_counter() - start)
    seconds = min(times)
    return {
        "seconds": seconds,
        "s_per_mpx": seconds / (args.size**2 / 1e6),
        "rss_mb": _peak_rss_mb(),
    }


def _timed_predict(
    segmenter, image, n_samples: int | None, diameter: float | str | None = None
) -> dict:
    """Time one ``Segmenter.predict``; seconds per megapixel, peak RSS and what it found."""
    start = time.perf_counter()
    result = segmenter.predict(image, n_samples=n_samples, seed=0, diameter=diameter)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "s_per_mpx": seconds / (image.shape[0] * image.shape[1] / 1e6),
        "rss_mb": _peak_rss_mb(),
        "n_nuclei": int(result.summary["n_nuclei"]),
        "n_samples": int(result.summary["n_samples"]),
    }


def _run_big(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    _tune(args)
    from bayescellseg.inference.segmenter import Segmenter
    from bayescellseg.model.build import build_model
    from bayescellseg.model.config import ModelConfig
    from bayescellseg.model.store import save_model

    torch.set_num_threads(args.threads)
    config = ModelConfig(
        base_channels=32, depth=4, method="mc_dropout", dropout_placement="last_k",
        dropout_last_k=args.k,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        save_model(Path(tmp) / "m", build_model(config, seed=0), config)
        segmenter = Segmenter.load(Path(tmp) / "m")
    rng = np.random.default_rng(0)
    image = (rng.uniform(size=(args.size, args.size)) * 255).astype(np.uint8)
    return _timed_predict(segmenter, image, n_samples=args.t)


def _run_bundled(args: argparse.Namespace) -> dict:
    """The bundled model's Segmenter on a bundled sample image tiled to size x size."""
    import numpy as np
    import torch

    _tune(args)
    from bayescellseg.inference.segmenter import Segmenter
    from bayescellseg.io.dsb import read_dsb_sample
    from bayescellseg.samples import sample_root

    torch.set_num_threads(args.threads)
    segmenter = Segmenter.load()
    tile = read_dsb_sample(sample_root(), BUNDLED_SAMPLE).image
    reps = (-(-args.size // tile.shape[0]), -(-args.size // tile.shape[1])) + (1,) * (tile.ndim - 2)
    image = np.ascontiguousarray(np.tile(tile, reps)[: args.size, : args.size])
    diameter = None if args.diameter == "none" else args.diameter  # predict parses auto / pixels
    return _timed_predict(segmenter, image, n_samples=None, diameter=diameter)


def _child(cmd: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, *cmd], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="image side for the T table")
    parser.add_argument(
        "--samples", type=int, nargs="*", default=[1, 10, 20, 50], help="none: no T table"
    )
    parser.add_argument("--last-k", dest="last_k", type=int, nargs="+", default=[2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--big", type=int, default=0, help="also run the Segmenter on BIGxBIG")
    parser.add_argument("--big-samples", dest="big_samples", type=int, default=20)
    parser.add_argument("--one", nargs=5, metavar=("METHOD", "K", "T", "SHARE", "SIZE"))
    parser.add_argument("--one-big", dest="one_big", nargs=3, metavar=("K", "T", "SIZE"))
    parser.add_argument("--malloc", default="tuned", choices=["default", "tuned"])
    parser.add_argument(
        "--bundled", type=int, default=0, help="also run the bundled model on a tiled sample"
    )
    parser.add_argument(
        "--diameter", default="none", help="for --bundled: none (default), auto or pixels"
    )
    parser.add_argument("--one-bundled", dest="one_bundled", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:
        method, k, t, share, size = args.one
        ns = argparse.Namespace(
            method=method, k=int(k), t=int(t), share=int(share), size=int(size),
            threads=args.threads, repeats=args.repeats, malloc=args.malloc,
        )  # fmt: skip
        print(json.dumps(_run_one(ns)))
        return
    if args.one_bundled:
        ns = argparse.Namespace(
            size=args.one_bundled, threads=args.threads, malloc=args.malloc, diameter=args.diameter
        )
        print(json.dumps(_run_bundled(ns)))
        return
    if args.one_big:
        k, t, size = map(int, args.one_big)
        ns = argparse.Namespace(k=k, t=t, size=size, threads=args.threads, malloc=args.malloc)
        print(json.dumps(_run_big(ns)))
        return

    common = [
        "--threads",
        str(args.threads),
        "--repeats",
        str(args.repeats),
        "--malloc",
        args.malloc,
    ]
    if args.samples:
        base = _child(["--one", "deterministic", "0", "1", "1", str(args.size), *common])
        print(
            f"{args.size}x{args.size} image, base 32, depth 4, {args.threads} thread(s), CPU, "
            f"malloc {args.malloc}\n"
        )
        print(
            f"deterministic single pass: {base['s_per_mpx']:.2f} s/Mpx, "
            f"peak RSS {base['rss_mb']:.0f} MB\n"
        )
        print("| dropout | T | shared tail | s / Mpx | x deterministic | peak RSS (MB) |")
        print("|---|---|---|---|---|---|")
        for k in args.last_k:
            for t in args.samples:
                for share in (1, 0):
                    r = _child(
                        ["--one", "mc_dropout", str(k), str(t), str(share), str(args.size)] + common
                    )
                    ratio = r["s_per_mpx"] / base["s_per_mpx"]
                    print(
                        f"| last_k={k} | {t} | {'yes' if share else 'no'} | {r['s_per_mpx']:.2f} | "
                        f"{ratio:.1f} | {r['rss_mb']:.0f} |",
                        flush=True,
                    )
    if args.big:
        r = _child(
            ["--one-big", str(args.last_k[0]), str(args.big_samples), str(args.big), "--threads",
             str(args.threads), "--malloc", args.malloc]
        )  # fmt: skip
        print(
            f"\nSegmenter.predict on {args.big}x{args.big}, T={args.big_samples}, "
            f"last_k={args.last_k[0]} (sampling + watershed + per-sample stability): "
            f"{r['seconds']:.0f} s ({r['s_per_mpx']:.2f} s/Mpx), peak RSS {r['rss_mb']:.0f} MB, "
            f"{r['n_nuclei']} objects"
        )

    if args.bundled:
        r = _child(
            ["--one-bundled", str(args.bundled), "--threads", str(args.threads),
             "--malloc", args.malloc, "--diameter", args.diameter]
        )  # fmt: skip
        print(
            f"\nbundled model on a {args.bundled}x{args.bundled} tiled sample, "
            f"T={r['n_samples']}, diameter {args.diameter}, {args.threads} thread(s): "
            f"{r['seconds']:.0f} s "
            f"({r['s_per_mpx']:.2f} s/Mpx), peak RSS {r['rss_mb']:.0f} MB, {r['n_nuclei']} nuclei"
        )


if __name__ == "__main__":
    main()
