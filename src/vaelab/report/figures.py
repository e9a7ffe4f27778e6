"""Figures as PNG files: image grids (no torchvision) and per-term loss curves."""
from __future__ import annotations

from pathlib import Path

from ..fileio import atomic_write_figure
from ..plotting import smooth, term_panels


def read_metrics_csv(path: Path) -> list[dict[str, str]]:
    """The complete rows of a run's logs/metrics.csv (a torn last line is dropped)."""
    from ..train.rundir import read_metrics_rows

    return read_metrics_rows(path) if path.is_file() else []


def same_series(rows: list[dict], a: str, b: str) -> bool:
    """Whether the logged terms ``a`` and ``b`` hold the same values (to float32 rounding) at every row,
    training and validation, where either is logged."""
    for r in rows:
        for split in ("train", "val"):
            va, vb = r.get(f"{split}/{a}"), r.get(f"{split}/{b}")
            if va in (None, "") and vb in (None, ""):
                continue
            if va in (None, "") or vb in (None, ""):
                return False
            x, y = float(va), float(vb)
            if abs(x - y) > 1e-5 * max(1.0, abs(x), abs(y)):
                return False
    return True


def loss_curves(csv_path: Path, out: Path) -> Path | None:
    """One panel per loss term: the training value every step (faint) under its exponential moving
    average, and the validation value per epoch. When the loss is the negative ELBO itself (a plain
    VAE), the two share one panel."""
    rows = read_metrics_csv(csv_path)
    if not rows:
        return None
    cols = rows[0].keys()
    terms = sorted({c.split("/", 1)[1] for c in cols if c.startswith("train/") and c not in ("train/lr", "train/kl_weight")})
    if not terms:
        return None
    titles = {t: t for t in terms}
    if "loss" in terms and "nelbo" in terms and same_series(rows, "loss", "nelbo"):  # a plain VAE: one curve, one panel
        terms.remove("loss")
        titles["nelbo"] = "nelbo (= loss)"
    fig, panels = term_panels(terms)
    for term, ax in panels:
        for split, style in (("train", "-"), ("val", "o-")):
            pts = [(float(r["step"]), float(r[f"{split}/{term}"])) for r in rows if r.get(f"{split}/{term}") not in (None, "")]
            if not pts:
                continue
            s, v = zip(*pts)
            if split == "train":  # every step's value faint, its moving average on top
                line = ax.plot(s, v, "-", lw=0.6, alpha=0.25)[0]
                ax.plot(s, smooth(v), "-", lw=1.4, color=line.get_color(), label="train (smoothed)")
            else:
                ax.plot(s, v, style, lw=1.5, ms=3, label=split)
        ax.set_title(titles[term])
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
        vals = [float(r[f"train/{term}"]) for r in rows if r.get(f"train/{term}") not in (None, "")]
        if vals and min(vals) > 0 and max(vals) / max(min(vals), 1e-12) > 50:
            ax.set_yscale("log")
    return atomic_write_figure(fig, out)
