"""The training log: one row per member and epoch, written as ``train_log.csv`` and
plotted as ``training_curve.png`` in the run folder, and the line printed after each epoch."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from tqdm.auto import tqdm

from bayescellseg.io.atomic import write_bytes_atomic
from bayescellseg.io.tables import write_csv_atomic

__all__ = ["LOG_COLUMNS", "curve_png", "report_epoch", "write_log"]

LOG_COLUMNS = (
    "member",
    "epoch",
    "loss",
    "bce_fg",
    "dice_fg",
    "bce_contour",
    "kl",
    "kl_weight",
    "val_dice",
    "val_dsb",
    "val_ap50",
    "lr",
    "seconds",
    "patches_per_s",
)


def source_columns(history: list[dict[str, Any]]) -> list[str]:
    """The per-source validation columns (``val_<score>/<source>``) in first-seen order."""
    seen: dict[str, None] = {}
    for row in history:
        seen.update({k: None for k in row if k.startswith("val_") and "/" in k})
    return list(seen)


def _per_source_text(row: dict[str, Any]) -> str:
    names = list(dict.fromkeys(k.split("/", 1)[1] for k in row if k.startswith("val_dsb/")))
    if len(names) < 2:
        return ""
    parts = [
        f"{n} dsb {row[f'val_dsb/{n}']:.3f} ap50 {row[f'val_ap50/{n}']:.3f} "
        f"dice {row[f'val_dice/{n}']:.3f}"
        for n in names
    ]
    return " | " + "; ".join(parts)


def report_epoch(row: dict[str, Any], n_members: int) -> None:
    """Print one epoch's row (with each source's validation scores) above any progress bar."""
    who = f"member {row['member'] + 1} " if n_members > 1 else ""
    tqdm.write(
        f"{who}epoch {row['epoch']}: loss {row['loss']:.4f} | val dice {row['val_dice']:.3f} "
        f"dsb {row['val_dsb']:.3f} ap50 {row.get('val_ap50', float('nan')):.3f}"
        f"{_per_source_text(row)} | lr {row['lr']:.2e} | {row['patches_per_s']:.1f} patches/s "
        f"| {row['seconds']:.0f} s"
    )


def write_log(out_dir: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite ``train_log.csv`` (NaN as an empty cell) and ``training_curve.png``, atomically."""
    columns = [*LOG_COLUMNS, *source_columns(history)]
    write_csv_atomic(out_dir / "train_log.csv", columns, history, overwrite=True)
    write_bytes_atomic(out_dir / "training_curve.png", curve_png(history), overwrite=True)


def curve_png(history: list[dict[str, Any]]) -> bytes:
    """Training loss and validation DSB / Dice per epoch, a line per member, as PNG bytes."""
    fig = Figure(figsize=(9, 3.5), dpi=100)
    ax_loss, ax_val = fig.subplots(1, 2)
    for k in sorted({int(r["member"]) for r in history}):
        rows = [r for r in history if int(r["member"]) == k]
        ep = [r["epoch"] for r in rows]
        tag = f" (member {k + 1})" if k or len({r["member"] for r in history}) > 1 else ""
        ax_loss.plot(ep, [r["loss"] for r in rows], marker=".", label=f"train loss{tag}")
        ax_val.plot(ep, [r["val_dsb"] for r in rows], marker=".", label=f"val DSB score{tag}")
        ax_val.plot(
            ep, [r["val_dice"] for r in rows], marker=".", ls="--", label=f"val pixel Dice{tag}"
        )
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Training loss")
    ax_val.set(xlabel="epoch", ylabel="score", ylim=(0, 1), title="Validation")
    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
