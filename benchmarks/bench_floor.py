"""The bundled model's network against this machine's arithmetic floor.

Counts the network's floating-point operations per megapixel (``torch.utils.flop_counter``:
convolutions and matrix products, 2 per multiply-add, all members), measures what this CPU
computes per second at fp32 and at bf16 (one large matrix product, and the best
convolution of the network's own shapes), and times the network alone on a bundled sample
tiled to ``--size`` (tiled sampling as ``predict`` runs it, no post-processing). The floor is
FLOPs / peak; the ratio says how far the network runs above it.

Usage::

    python benchmarks/bench_floor.py                 # 2 threads, 1024x1024, fp32 and bf16
    python benchmarks/bench_floor.py --size 2048 --threads 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from bench_predict import _bundled_image  # the sample bench_predict.py --bundled tiles
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bayescellseg.data.normalize import normalize
from bayescellseg.inference.arguments import as_float_rgb
from bayescellseg.inference.sampling import SamplingOptions, members_of, sample_image
from bayescellseg.inference.segmenter import Segmenter


def _best_of(fn, repeats: int) -> float:
    fn()  # warm-up (oneDNN picks and caches its kernels)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def network_gflop_per_mpx(members: list[nn.Module], side: int = 512) -> float:
    """Convolution and matmul GFLOP of one pass of every member, per megapixel of input."""
    x = torch.zeros(1, 3, side, side)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        for member in members:
            member(x)
    return counter.get_total_flops() / 1e9 / (side * side / 1e6)


def matmul_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of one n x n x n matrix product in ``dtype``."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    with torch.inference_mode():
        seconds = _best_of(lambda: a @ b, repeats)
    return 2 * n**3 / seconds / 1e9


def conv_gflops(dtype: torch.dtype, channels: int, side: int, repeats: int = 5) -> float:
    """GFLOP/s of a 3x3 ``channels`` -> ``channels`` convolution, batch 2, channels-last."""
    conv = nn.Conv2d(channels, channels, 3, padding=1).eval()
    x = torch.randn(2, channels, side, side).contiguous(memory_format=torch.channels_last)
    conv = conv.to(memory_format=torch.channels_last)
    flops = 2 * 2 * channels * channels * 9 * side * side

    def run() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            conv(x)

    with torch.inference_mode():
        seconds = _best_of(run, repeats)
    return flops / seconds / 1e9


def network_s_per_mpx(segmenter: Segmenter, image: np.ndarray, repeats: int) -> float:
    """The network alone (tiled sampling, as ``predict`` runs it) in s/Mpx."""
    normalised = normalize(as_float_rgb(image), mode=segmenter.config.normalization)
    options = SamplingOptions(precision=segmenter.resolved_precision())
    seconds = _best_of(
        lambda: sample_image(segmenter.model, segmenter.config, normalised, options, 512), repeats
    )
    return seconds / (image.shape[0] * image.shape[1] / 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="tiled image side (default 1024)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fp32 = Segmenter.load(precision="fp32")
    gflop = network_gflop_per_mpx(members_of(fp32.model))
    image = _bundled_image(args.size)
    print(f"bundled model: {len(members_of(fp32.model))} members, {gflop:.0f} GFLOP/Mpx "
          f"(convolutions and matmuls); {args.size}² tiled sample, {args.threads} thread(s)\n")  # fmt: skip
    print("| precision | matmul 2048³ GFLOP/s | best conv 3x3 GFLOP/s | floor s/Mpx (conv peak) "
          "| network s/Mpx | network / floor |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        if name == "bf16" and Segmenter.load(precision="auto").resolved_precision() != "bf16":
            print("| bf16 | - | - | - | - | this CPU has no native bf16 |")
            continue
        segmenter = fp32 if name == "fp32" else Segmenter.load(precision="bf16")
        mm = matmul_gflops(dtype, repeats=args.repeats)
        conv = max(conv_gflops(dtype, c, s, args.repeats) for c, s in ((64, 128), (128, 64)))
        floor = gflop / conv
        net = network_s_per_mpx(segmenter, image, args.repeats)
        print(f"| {name} | {mm:.0f} | {conv:.0f} | {floor:.2f} | {net:.2f} | {net / floor:.2f}x |",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
