"""Does a distance-map output separate H&E nuclei better than the contour watershed?

An experiment for the generalist-model issue (the instance representation is open). One member
of the bundled ensemble gets a third output channel, the normalised distance of each nucleus
pixel to its nucleus's edge (1 at the centre, as the DSB2018 winners and HoVer-Net use), and
is fine-tuned on the bundled model's own data and split (DSB2018 corrected labels + TNBC by
patient, zoom 0.5-2) with the contour and foreground losses kept. Its instances are then decoded
two ways from the same network: the package's contour watershed, and a watershed of the
distance map seeded by its cores (``distance > --core``), so the comparison isolates the
representation. The bundled member alone (contour watershed) is the reference.

    python experiments/distance_head.py train --out runs/dist_head --steps 2400
    python experiments/distance_head.py eval --out runs/dist_head \
        runs/heldout/dsb2018 runs/heldout/tnbc runs/heldout/koyuncu runs/heldout/monuseg

    python experiments/distance_head.py export --out runs/ensemble16_dh runs/dist_head runs/dist_head_m1 ...

``export`` writes the bundled ensemble with the fine-tuned members in place (their distance
channel dropped, so the folder is an ordinary two-channel model), uncalibrated.
``train`` checkpoints every 100 steps and resumes from ``--out``; ``eval`` runs every image once
at its own scale (no resizing, one pass, bf16 where supported) and prints DSB / AP50 per source
and decoder.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi
from scipy.special import expit
from skimage.segmentation import watershed
from torch import nn

import bayescellseg.data.dataset as dataset_module
from bayescellseg.data.dataset import CropDataset
from bayescellseg.data.normalize import normalize
from bayescellseg.data.targets import make_targets
from bayescellseg.inference.arguments import as_float_rgb
from bayescellseg.inference.recalibrate import tempered
from bayescellseg.inference.sampling import members_of
from bayescellseg.inference.segmenter import Segmenter
from bayescellseg.io.images import read_image, read_label_image
from bayescellseg.metrics.matching import match
from bayescellseg.model.build import Ensemble
from bayescellseg.model.store import bundled_model_path, load_model, save_model
from bayescellseg.postprocess.watershed import (
    WatershedParams,
    _fill_holes_per_label,
    _remove_small,
    instances_from_maps,
)
from bayescellseg.train.config import TrainConfig
from bayescellseg.train.loss import segmentation_loss
from bayescellseg.train.prepare import prepare_data


def distance_target(labels: np.ndarray) -> np.ndarray:
    """Per nucleus: Euclidean distance to its edge over its largest distance (0 outside)."""
    out = np.zeros(labels.shape, np.float32)
    for index, slices in enumerate(ndi.find_objects(labels), start=1):
        if slices is None:
            continue
        padded = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in slices)
        inside = labels[padded] == index
        dist = ndi.distance_transform_edt(np.pad(inside, 1))[1:-1, 1:-1]
        peak = dist.max()
        if peak > 0:
            out[padded][inside] = (dist[inside] / peak).astype(np.float32)
    return out


def three_targets(labels: np.ndarray) -> np.ndarray:
    """[foreground, contour, distance]."""
    return np.concatenate([make_targets(labels), distance_target(labels)[None]])


def with_distance_head(member: nn.Module) -> nn.Module:
    """The member with a 3-channel head: the two trained channels copied, a new third one."""
    old = member.head.conv
    new = nn.Conv2d(old.in_channels, 3, 1)
    with torch.no_grad():
        new.weight[:2] = old.weight
        new.bias[:2] = old.bias
        nn.init.normal_(new.weight[2:], std=0.01)
        new.bias[2:] = -2.0
    member.head.conv = new
    return member


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    seg = Segmenter.load(args.init)
    stored = dict(seg.extras["training"]["config"])
    stored.update(init_from=None, cache_dir=str(args.cache_dir), progress=False)
    config = TrainConfig.from_dict(stored)
    data = prepare_data(config, args.out, resume=False)
    dataset_module.make_targets = three_targets  # CropDataset's targets get the third channel
    crops = CropDataset(
        data.train, crop=256, seed=args.seed, length=args.steps * args.batch,
        weights=data.weights, scale_range=(0.5, 2.0),
    )  # fmt: skip
    net = with_distance_head(members_of(seg.model)[args.member]).to(
        memory_format=torch.channels_last
    )
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    warm = max(1, args.steps // 20)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, args.steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    ckpt = args.out / "checkpoint.pt"
    start = 0
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=False)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start = state["step"]
    record = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    (args.out / "run.json").write_text(json.dumps(record, indent=1))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(crops, range(start * args.batch, args.steps * args.batch)),
        batch_size=args.batch, num_workers=0, drop_last=True,
    )  # fmt: skip
    net.train()
    t0, sums, n = time.perf_counter(), np.zeros(3), 0
    for step, (x, y) in enumerate(loader, start=start):
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = net(x)
        logits = logits.float()
        seg_loss = segmentation_loss(logits[:, :2], y[:, :2])["total"]
        dist_loss = F.binary_cross_entropy_with_logits(logits[:, 2], y[:, 2])
        loss = seg_loss + args.distance_weight * dist_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        sched.step()
        sums += [loss.item(), seg_loss.item(), dist_loss.item()]
        n += 1
        if (step + 1) % 100 == 0 or step + 1 == args.steps:
            rate = n * args.batch / (time.perf_counter() - t0)
            print(f"step {step + 1}/{args.steps} loss {sums[0] / n:.4f} seg {sums[1] / n:.4f} "
                  f"dist {sums[2] / n:.4f} lr {sched.get_last_lr()[0]:.2e} {rate:.1f} patches/s",
                  flush=True)  # fmt: skip
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"model": net.state_dict(), "opt": opt.state_dict(),
                        "sched": sched.state_dict(), "step": step + 1}, tmp)  # fmt: skip
            tmp.replace(ckpt)
            sums, n, t0 = np.zeros(3), 0, time.perf_counter()


def distance_instances(
    fg: np.ndarray,
    dist: np.ndarray,
    core: float,
    flood: np.ndarray | None = None,
    min_size: int = 10,
) -> np.ndarray:
    """Watershed of ``-flood`` (default ``-dist``) inside ``fg > 0.5`` from the cores
    ``dist > core``."""
    mask = fg > 0.5
    if not mask.any():
        return np.zeros(fg.shape, np.uint32)
    markers, n = ndi.label((dist > core) & mask)
    if n:
        markers = _remove_small(markers, 4)
    labels = watershed(-(dist if flood is None else flood), markers=markers, mask=mask)
    orphans, n_orphans = ndi.label(mask & (labels == 0))
    if n_orphans:
        labels = np.where(orphans > 0, orphans + int(labels.max()), labels)
    return _fill_holes_per_label(_remove_small(labels, min_size))


@torch.inference_mode()
def logits_of(net: nn.Module, image: np.ndarray, mode: str) -> np.ndarray:
    x = normalize(as_float_rgb(image), mode=mode)
    t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(t.contiguous(memory_format=torch.channels_last))
    return out.float()[0].numpy()


def evaluate(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    seg = Segmenter.load(args.init, precision="fp32")
    mode, temp, bias = seg.config.normalization, seg.extras["temperature"], seg.extras["logit_bias"]
    shipped = WatershedParams.from_dict(seg.extras["postprocess"])
    member = members_of(seg.model)[args.member]
    net = with_distance_head(copy.deepcopy(member))
    net.load_state_dict(torch.load(args.out / "checkpoint.pt", weights_only=False)["model"])
    reference = member.eval().to(memory_format=torch.channels_last)
    net = net.eval().to(memory_format=torch.channels_last)
    rows = []
    for folder in args.folders:
        for path in sorted((folder / "images").iterdir()):
            image = read_image(path)
            truth = read_label_image(next((folder / "labels").glob(path.stem + ".*")))
            z = logits_of(reference, image, mode)
            found = {"reference contour": instances_from_maps(
                tempered(z[0], temp, bias), expit(z[1]), shipped)}  # fmt: skip
            z = logits_of(net, image, mode)
            fg, contour, dist = tempered(z[0], temp, bias), expit(z[1]), expit(z[2])
            found["new contour"] = instances_from_maps(fg, contour, shipped)
            for c in args.cores:
                found[f"new distance {c:g}"] = distance_instances(fg, dist, c)
                found[f"new distance x (1 - contour) {c:g}"] = distance_instances(
                    fg, dist * (1 - contour), c)  # fmt: skip
                found[f"new distance cores, contour flood {c:g}"] = distance_instances(
                    fg, dist, c, flood=fg - contour)  # fmt: skip
            for name, labels in found.items():
                m = match(truth, labels)
                rows.append({"source": folder.name, "image": path.stem, "decoder": name,
                             "dsb": m.score, "ap50": m.at(0.5)["precision"],
                             "n_pred": int(labels.max()), "n_true": int(truth.max())})  # fmt: skip
        print(f"done {folder.name}", flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "eval_per_image.csv", index=False)
    summary = table.groupby(["decoder", "source"])[["dsb", "ap50", "n_pred", "n_true"]].mean()
    print(summary.round(3).to_string())


STAGE_FILES = ("training_config.json", "train_log.csv", "training_curve.png", "train_log_init.csv",
               "split.json")  # fmt: skip


def step_log(run: Path, member: int) -> list[dict[str, float]]:
    """The rows of a run's ``train.log`` (one per 100 steps) as numbers."""
    rows = []
    for line in (run / "train.log").read_text().splitlines():
        words = line.split()
        if words[:1] != ["step"]:
            continue
        rows.append({"member": member, "step": int(words[1].split("/")[0]),
                     "loss": float(words[3]), "seg": float(words[5]), "dist": float(words[7]),
                     "lr": float(words[9]), "patches_per_s": float(words[10])})  # fmt: skip
    return rows


def export(args: argparse.Namespace) -> None:
    """The fine-tuned members, back to the package's two channels, as one ensemble folder.

    Beside the model: ``finetune.json`` (each run's settings and the init weights' sha256),
    ``finetune_log.csv`` (the runs' step logs) and the init folder's own training record
    (``STAGE_FILES``: how the weights fine-tuned here were trained), copied unchanged.
    """
    init = Path(args.init) if args.init else bundled_model_path()
    loaded = load_model(init)
    members = members_of(loaded.model)
    runs, log = [], []
    for run in args.runs:
        record = json.loads((run / "run.json").read_text())
        k = int(record["member"])
        net = with_distance_head(members[k])
        net.load_state_dict(torch.load(run / "checkpoint.pt", weights_only=False)["model"])
        head = nn.Conv2d(net.head.conv.in_channels, 2, 1)
        with torch.no_grad():
            head.weight.copy_(net.head.conv.weight[:2])
            head.bias.copy_(net.head.conv.bias[:2])
        net.head.conv = head
        members[k] = net
        runs.append({"member": k, "run": str(run), "steps": record["steps"],
                     "batch": record["batch"], "lr": record["lr"], "seed": record["seed"],
                     "distance_weight": record["distance_weight"]})  # fmt: skip
        log += step_log(run, k)
    extras = dict(loaded.extras)
    training = dict(extras["training"])
    training["fine_tuned_with_distance_head"] = runs
    extras = {"training": training, "nucleus_diameter": extras["nucleus_diameter"]}
    save_model(args.out, Ensemble(nn.ModuleList(members)), loaded.config, extras)
    digest = hashlib.sha256((init / "weights.safetensors").read_bytes()).hexdigest()
    record = {"script": "experiments/distance_head.py", "init_weights_sha256": digest,
              "crop": 256, "scale_range": [0.5, 2.0], "schedule": "AdamW wd 1e-4, 5 % warm-up, cosine",
              "precision": "bf16 autocast, channels_last", "runs": runs}  # fmt: skip
    (args.out / "finetune.json").write_text(json.dumps(record, indent=1) + "\n")
    pd.DataFrame(log).to_csv(args.out / "finetune_log.csv", index=False)
    for name in STAGE_FILES:
        if (init / name).is_file():
            shutil.copyfile(init / name, args.out / name)
    print(f"wrote {args.out} ({len(runs)} fine-tuned member(s), init {init})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--steps", type=int, default=2400)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--lr", type=float, default=3e-4)
    t.add_argument("--distance-weight", type=float, default=1.0)
    t.add_argument("--member", type=int, default=0)
    t.add_argument("--seed", type=int, default=5)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--cache-dir", type=Path, default=Path("runs/cache"))
    e = sub.add_parser("eval")
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("folders", type=Path, nargs="+")
    e.add_argument("--member", type=int, default=0)
    e.add_argument("--cores", type=float, nargs="+", default=[0.4, 0.5, 0.6])
    e.add_argument("--threads", type=int, default=2)
    x = sub.add_parser("export")
    x.add_argument("--out", type=Path, required=True)
    x.add_argument("runs", type=Path, nargs="+")
    for p in (t, e, x):
        p.add_argument("--init", type=Path, default=None,
                       help="model folder fine-tuned (default: the bundled model)")  # fmt: skip
    args = parser.parse_args()
    {"train": train, "eval": evaluate, "export": export}[args.command](args)


if __name__ == "__main__":
    main()
