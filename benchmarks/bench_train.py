"""Training throughput and peak memory of every method, on this machine.

Measures optimiser steps (forward + loss + backward + AdamW step) on 256 x 256 patches, the same
step the trainer runs (``bayescellseg.train.trainer``), and prints markdown tables:

1. every method at base width 16 and 32, in fp32 and with bf16 autocast (fp32 master weights
   and loss, as the trainer runs it), both channels-last (the trainer's default);
2. a sweep of precision, ``channels_last`` on / off and ``torch.set_num_threads`` (1 vs all
   cores) on one method, to choose the trainer's defaults.

``--malloc default tuned`` measures each configuration with glibc's allocator as it comes and
as ``bayescellseg`` tunes it (:mod:`bayescellseg.malloc`); the default is ``tuned``, what the
``bayescellseg train`` command runs with.

Throughput is reported for the fastest timed step (other processes on a shared machine only
ever slow a step down) and as the mean over the timed steps. Each configuration runs in its own
subprocess so its peak resident memory (``psutil`` when
installed, else ``ru_maxrss``) is its own. Usage::

    python benchmarks/bench_train.py                 # defaults: batch 4, 3 timed steps
    python benchmarks/bench_train.py --steps 5 --widths 32 --device cuda
    python benchmarks/bench_train.py --batch 8 --widths 16 --methods deterministic \
        --malloc default tuned --no-sweep
    python benchmarks/bench_train.py --batch 8 --widths 16 --methods "ensemble member" \
        --precisions fp32 bf16 --steps 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

METHODS = {
    # label -> (preset, extra ModelConfig fields)
    "deterministic": ("deterministic", {}),
    "mc_dropout original": ("original", {}),
    "mc_dropout decoder": ("decoder", {}),
    "variational": ("variational", {}),
    "ensemble member": ("ensemble", {}),
}


def _peak_rss_mib() -> float:
    try:
        import psutil  # type: ignore[import-not-found]

        info = psutil.Process().memory_info()
        return getattr(info, "peak_wset", info.rss) / 2**20  # rss is a lower bound on Linux
    except ImportError:
        pass
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 1024


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one configuration in this process; returns patches/s and peak memory."""
    import torch

    from bayescellseg.malloc import keep_freed_memory
    from bayescellseg.model.build import build_model
    from bayescellseg.model.config import config_from_preset
    from bayescellseg.model.layers import kl_divergence
    from bayescellseg.train.loss import elbo_loss, segmentation_loss

    if spec.get("malloc", "tuned") == "tuned":
        keep_freed_memory()
    torch.manual_seed(0)
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    preset, extra = METHODS[spec["method"]]
    norm = {"norm": spec["norm"]} if spec.get("norm") else {}
    cfg = config_from_preset(preset, base_channels=spec["width"], **{**extra, **norm})
    model = build_model(cfg, seed=0)
    net = model.members[0] if hasattr(model, "members") else model  # one ensemble member
    net.to(device).train()
    fmt = torch.channels_last if spec["channels_last"] else torch.contiguous_format
    net.to(memory_format=fmt)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    b, c = spec["batch"], spec["crop"]
    x = torch.rand(b, 3, c, c, device=device).contiguous(memory_format=fmt)
    y = (torch.rand(b, 2, c, c, device=device) > 0.7).float()
    amp = device.type == "cuda" or spec.get("precision", "fp32") == "bf16"

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = net(x)
        if cfg.method == "variational":
            loss = elbo_loss(logits.float(), y, kl_divergence(net), 536)["total"]
        else:
            loss = segmentation_loss(logits.float(), y)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(spec["warmup"]):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    cpu0 = os.times()
    for _ in range(spec["steps"]):
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    cpu1 = os.times()
    kernel, user = cpu1.system - cpu0.system, cpu1.user - cpu0.user
    result = {
        **spec,
        "params_m": sum(p.numel() for p in net.parameters()) / 1e6,
        # best step: on a shared machine the other processes only ever slow a step down
        "patches_per_s": b / min(times),
        "mean_patches_per_s": b * len(times) / sum(times),
        "peak_mib": _peak_rss_mib(),
        # share of the process's CPU time spent in the kernel (page faults of fresh mmaps)
        "kernel_share": kernel / max(kernel + user, 1e-9),
    }
    if device.type == "cuda":
        result["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def _run_isolated(spec: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--single", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"benchmark {spec} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    lines = ["| " + " | ".join(h for h, _, _ in columns) + " |"]
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    for r in rows:
        lines.append("| " + " | ".join(format(r[k], f) for _, k, f in columns) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--sweep-method", default="mc_dropout decoder", choices=list(METHODS))
    parser.add_argument("--sweep-widths", type=int, nargs="+", default=[16])
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument(
        "--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"],
        help="fp32, and/or bf16 autocast (the trainer's default on CPUs with native bf16)",
    )  # fmt: skip
    parser.add_argument(
        "--norm", choices=["group", "batch"], default=None,
        help="normalisation layers (default: the preset's, group; the bundled model uses batch)",
    )  # fmt: skip
    parser.add_argument(
        "--malloc", nargs="+", default=["tuned"], choices=["default", "tuned"],
        help="glibc allocator as it comes and/or as bayescellseg tunes it",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.single:
        print(json.dumps(measure(json.loads(args.single))))
        return 0
    cores = os.cpu_count() or 1
    base = {
        "batch": args.batch, "crop": args.crop, "steps": args.steps, "warmup": args.warmup,
        "device": args.device, "norm": args.norm,
    }  # fmt: skip
    print(f"# Training throughput ({args.device}, {cores} cores, {args.threads or cores} threads, "
          f"batch {args.batch}, norm {args.norm or 'of the preset'}, "
          f"{args.crop}x{args.crop} patches, {args.steps} timed steps)\n")  # fmt: skip
    rows = []
    for width in args.widths:
        for method in args.methods:
            for malloc in args.malloc:
                for precision in args.precisions:
                    spec = {**base, "method": method, "width": width, "channels_last": True,
                            "threads": args.threads or cores, "malloc": malloc,
                            "precision": precision}  # fmt: skip
                    rows.append(_run_isolated(spec))
                    print(f"  measured {method} / {width} / {malloc} / {precision}: "
                          f"{rows[-1]['patches_per_s']:.2f} patches/s", file=sys.stderr)  # fmt: skip
    mem_col = ("peak GPU MiB", "peak_gpu_mib", ".0f") if args.device != "cpu" else None
    cols = [("method", "method", "s"), ("width", "width", "d"), ("malloc", "malloc", "s"),
            ("precision", "precision", "s"),
            ("params (M)", "params_m", ".2f"),
            ("patches/s (best step)", "patches_per_s", ".2f"),
            ("patches/s (mean)", "mean_patches_per_s", ".2f"),
            ("kernel CPU share", "kernel_share", ".2f"),
            ("peak RSS MiB", "peak_mib", ".0f")]  # fmt: skip
    print(_table(rows, cols + ([mem_col] if mem_col else [])))
    if args.no_sweep or args.device != "cpu":
        return 0
    sweep = []
    for width in args.sweep_widths:
        for precision in args.precisions:
            for channels_last in (False, True):
                for threads in sorted({1, cores}):
                    spec = {**base, "method": args.sweep_method, "width": width,
                            "channels_last": channels_last, "threads": threads,
                            "precision": precision}  # fmt: skip
                    sweep.append(_run_isolated(spec))
    print(f"\n## Sweep: {args.sweep_method}\n")
    print(_table(sweep, [("width", "width", "d"), ("precision", "precision", "s"),
                         ("channels_last", "channels_last", ""),
                         ("threads", "threads", "d"), ("patches/s", "patches_per_s", ".2f"),
                         ("peak RSS MiB", "peak_mib", ".0f")]))  # fmt: skip
    for width in args.sweep_widths:
        best = max((r for r in sweep if r["width"] == width), key=lambda r: r["patches_per_s"])
        print(f"\nfastest at width {width}: {best['precision']}, "
              f"channels_last={best['channels_last']}, "
              f"threads={best['threads']} ({best['patches_per_s']:.2f} patches/s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
