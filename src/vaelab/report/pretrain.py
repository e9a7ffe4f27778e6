"""The figure of a `vaelab pretrain` run: per-layer reconstruction losses, then the fine-tuning losses."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..fileio import atomic_write_figure


def pretrain_curves(log: list[dict[str, Any]], out: Path) -> Path | None:
    """Left: each layer's reconstruction loss per pretraining epoch. Right: the cross-entropy per
    epoch of fine-tuning step 1 (head), step 2 (whole network) and the from-scratch baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not log:
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(9.0, 3.2))
    layers = sorted({r["layer"] for r in log if r["phase"] == "pretrain"})
    for layer in layers:
        pts = [(r["epoch"], r["loss"]) for r in log if r["phase"] == "pretrain" and r["layer"] == layer]
        a.plot(*zip(*pts), "o-", ms=3, label=f"layer {layer}")
    a.set_title("pretraining: reconstruction of the layer's input")
    a.set_xlabel("epoch")
    a.set_ylabel("squared error per image")
    if any(r["loss"] > 0 for r in log if r["phase"] == "pretrain"):
        a.set_yscale("log")
    if layers:
        a.legend(fontsize=8)
    offset = 0
    for phase, label in (("finetune_head", "step 1: head"), ("finetune_all", "step 2: all"), ("scratch", "from scratch")):
        pts = [(r["epoch"], r["loss"]) for r in log if r["phase"] == phase]
        if pts:
            start = offset if phase == "finetune_all" else 0
            b.plot([e + start for e, _ in pts], [v for _, v in pts], "-", label=label)
            if phase == "finetune_head":
                offset = len(pts)
    b.set_title("fine-tuning: cross-entropy on the labels")
    b.set_xlabel("epoch on the labelled images")
    b.legend(fontsize=8)
    return atomic_write_figure(fig, out)
