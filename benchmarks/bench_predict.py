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
    python benchmarks/bench_predict.py --samples --bundled 2048 --cellpose /tmp/cpvenv/bin/python

``--bundled`` prints a side-by-side table of ``--precision`` (default fp32 and bf16): the whole
``Segmenter.predict`` and the network alone (tiled sampling, no post-processing) in s/Mpx, peak
RSS, and the time to write the outputs as TIFF (zlib at its default level and at level 1).
``--cellpose PYTHON`` adds Cellpose's network (CPnet, default size, random weights: no download
is possible and the weights do not change the cost) on the same image and threads, run by a
Python that has cellpose installed (``benchmarks/cellpose_net.py``).

``--malloc tuned`` (the default) runs as the ``bayescellseg`` command does, with
:func:`bayescellseg.malloc.keep_freed_memory`; ``default`` leaves glibc as it comes.
"""

from __future__ import annotations

import argparse
import json
import os
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
        "n_nuclei": int(result.summary.n_nuclei),
        "n_samples": int(result.info.n_samples),
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


def _bundled_image(size: int):
    """A bundled sample image tiled to size x size."""
    import numpy as np

    from bayescellseg.io.dsb import read_dsb_sample
    from bayescellseg.samples import sample_root

    tile = read_dsb_sample(sample_root(), BUNDLED_SAMPLE).image
    reps = (-(-size // tile.shape[0]), -(-size // tile.shape[1])) + (1,) * (tile.ndim - 2)
    return np.ascontiguousarray(np.tile(tile, reps)[:size, :size])


def _tiff_seconds(result, level: int | None) -> float:
    """Seconds to write the labels and the six float32 maps as zlib TIFF (level None: the
    default level, as ``predict`` writes them)."""
    import numpy as np
    import tifffile

    extra = {} if level is None else {"compressionargs": {"level": level}}
    arrays = [result.labels.astype(np.uint16)] + [
        v.astype(np.float32) for v in result.maps().values()
    ]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        for i, array in enumerate(arrays):
            tifffile.imwrite(Path(tmp) / f"{i}.tif", array, compression="zlib", **extra)
        return time.perf_counter() - start


def _run_bundled(args: argparse.Namespace) -> dict:
    """The bundled model's Segmenter on a bundled sample image tiled to size x size: the whole
    prediction, then the network alone, then writing the outputs."""
    import torch

    _tune(args)
    from bayescellseg.data.normalize import normalize
    from bayescellseg.inference.sampling import SamplingOptions, sample_image
    from bayescellseg.inference.segmenter import Segmenter, as_float_rgb

    torch.set_num_threads(args.threads)
    segmenter = Segmenter.load(precision=args.precision)
    image = _bundled_image(args.size)
    diameter = None if args.diameter == "none" else args.diameter  # predict parses auto / pixels
    segmenter.predict(image[:256, :256], seed=0)  # warm-up (oneDNN kernels, fused copies)
    start = time.perf_counter()
    result = segmenter.predict(image, seed=0, diameter=diameter)
    seconds = time.perf_counter() - start
    rss = _peak_rss_mb()
    normalised = normalize(as_float_rgb(image), mode=segmenter.config.normalization)
    options = SamplingOptions(precision=segmenter.resolved_precision())
    start = time.perf_counter()
    sample_image(segmenter.model, segmenter.config, normalised, options, tile_size=512)
    network = time.perf_counter() - start
    mpx = image.shape[0] * image.shape[1] / 1e6
    return {
        "seconds": seconds,
        "s_per_mpx": seconds / mpx,
        "net_s_per_mpx": network / mpx,
        "rss_mb": rss,
        "n_nuclei": int(result.summary.n_nuclei),
        "n_samples": int(result.info.n_samples),
        "precision": result.info.precision,
        "tiff_default_s": _tiff_seconds(result, None),
        "tiff_level1_s": _tiff_seconds(result, 1),
    }


def _run_cellpose(args: argparse.Namespace) -> dict | None:
    """Cellpose's CPnet on the bundled image, run by ``args.cellpose`` (None if it fails)."""
    import numpy as np

    script = Path(__file__).with_name("cellpose_net.py")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "image.npy"
        np.save(path, _bundled_image(args.bundled))
        done = subprocess.run(
            [args.cellpose, str(script), str(path), "--threads", str(args.threads)],
            capture_output=True,
            text=True,
        )
    if done.returncode != 0:
        print(f"\nCellpose run failed:\n{done.stderr.strip()[-2000:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def _print_bundled(args: argparse.Namespace) -> None:
    """The side-by-side table of --bundled (one child process per precision)."""
    rows = [
        _child(
            [
                "--one-bundled",
                str(args.bundled),
                "--threads",
                str(args.threads),
                "--malloc",
                args.malloc,
                "--diameter",
                args.diameter,
                "--precision",
                precision,
            ]
        )  # fmt: skip
        for precision in args.precisions
    ]
    cellpose = _run_cellpose(args) if args.cellpose else None
    load = os.getloadavg()
    print(
        f"\nbundled model on a {args.bundled}x{args.bundled} tiled sample, "
        f"T={rows[0]['n_samples']}, diameter {args.diameter}, {args.threads} thread(s), "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end\n"
    )
    table = {
        "whole predict, s/Mpx": [f"{r['s_per_mpx']:.2f}" for r in rows],
        "network only, s/Mpx": [f"{r['net_s_per_mpx']:.2f}" for r in rows],
        "peak RSS, MB": [f"{r['rss_mb']:.0f}" for r in rows],
        "nuclei found": [str(r["n_nuclei"]) for r in rows],
        "TIFF outputs, zlib default / level 1, s": [
            f"{r['tiff_default_s']:.2f} / {r['tiff_level1_s']:.2f}" for r in rows
        ],
    }
    header = [r["precision"] for r in rows]
    if cellpose:
        header.append(f"Cellpose {cellpose['cellpose']} CPnet")
        extra = {"network only, s/Mpx": f"{cellpose['s_per_mpx']:.2f}"}
        extra["peak RSS, MB"] = f"{cellpose['rss_mb']:.0f}"
        for name, values in table.items():
            values.append(extra.get(name, "-"))
    print("| | " + " | ".join(header) + " |")
    print("|---" * (len(header) + 1) + "|")
    for name, values in table.items():
        print(f"| {name} | " + " | ".join(values) + " |")
    base = rows[0]
    for r in rows[1:]:
        print(
            f"\n{r['precision']} vs {base['precision']}: whole predict "
            f"{base['s_per_mpx'] / r['s_per_mpx']:.2f}x, network "
            f"{base['net_s_per_mpx'] / r['net_s_per_mpx']:.2f}x faster"
        )
    for r in rows if cellpose else []:
        print(
            f"{r['precision']} whole predict takes {r['s_per_mpx'] / cellpose['s_per_mpx']:.2f}x "
            "the time of Cellpose's network alone"
        )


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
    parser.add_argument(
        "--precisions", nargs="+", default=["fp32", "bf16"], help="for --bundled: precisions"
    )
    parser.add_argument("--precision", default="auto", help=argparse.SUPPRESS)
    parser.add_argument(
        "--cellpose", default=None, help="for --bundled: a Python with cellpose, to time CPnet"
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
            size=args.one_bundled, threads=args.threads, malloc=args.malloc,
            diameter=args.diameter, precision=args.precision,
        )  # fmt: skip
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
        _print_bundled(args)


if __name__ == "__main__":
    main()
