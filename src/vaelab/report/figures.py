"""Figures as PNG files: image grids (no torchvision) and per-term loss curves."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch

from ..fileio import atomic_write_bytes, atomic_write_figure, output_format


def image_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] -> H' x W' x 3 uint8 grid."""
    x = images.detach().float().clamp(0, 1).cpu()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    n, c, h, w = x.shape
    nrow = nrow or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / nrow))
    grid = torch.full((3, rows * (h + pad) + pad, nrow * (w + pad) + pad), pad_value)
    for i in range(n):
        r, k = divmod(i, nrow)
        grid[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + k * (w + pad) : pad + k * (w + pad) + w] = x[i]
    return (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


# the image formats an output file name may ask for, by suffix (Pillow writes each)
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".pdf": "PDF", ".tif": "TIFF", ".tiff": "TIFF",
                 ".webp": "WEBP", ".bmp": "BMP"}


def image_format(path: str | Path) -> str:
    """The format an output image's suffix names (Pillow writes each of IMAGE_FORMATS)."""
    return output_format(path, IMAGE_FORMATS, "image")


def png_bytes(arr: np.ndarray, scale: int = 1, fmt: str = "PNG") -> bytes:
    """An H x W x 3 uint8 array encoded as ``fmt`` (PNG by default; JPEG at quality 95)."""
    from PIL import Image

    im = Image.fromarray(arr)
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, scale: int = 2) -> Path:
    """Write a grid of images in the format the file name's suffix names (.png, .jpg, .pdf, ...)."""
    atomic_write_bytes(path, png_bytes(image_grid(images, nrow), scale, image_format(path)))
    return Path(path)


def read_metrics_csv(path: Path) -> list[dict[str, str]]:
    """The complete rows of a run's logs/metrics.csv (a torn last line is dropped)."""
    from ..train.run import read_metrics_rows

    return read_metrics_rows(path) if path.is_file() else []


def loss_curves(csv_path: Path, out: Path) -> Path | None:
    """One panel per loss term: the training value every step, the validation value per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics_csv(csv_path)
    if not rows:
        return None
    cols = rows[0].keys()
    terms = sorted({c.split("/", 1)[1] for c in cols if c.startswith("train/") and c not in ("train/lr", "train/kl_weight")})
    if not terms:
        return None
    ncol = min(3, len(terms))
    nr = int(math.ceil(len(terms) / ncol))
    fig, axes = plt.subplots(nr, ncol, figsize=(4.2 * ncol, 3.0 * nr), squeeze=False)
    for ax, term in zip(axes.flat, terms):
        for split, style in (("train", "-"), ("val", "o-")):
            pts = [(float(r["step"]), float(r[f"{split}/{term}"])) for r in rows if r.get(f"{split}/{term}") not in (None, "")]
            if pts:
                s, v = zip(*pts)
                ax.plot(s, v, style, lw=0.8 if split == "train" else 1.5, ms=3, label=split, alpha=0.8 if split == "train" else 1)
        ax.set_title(term)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
        vals = [float(r[f"train/{term}"]) for r in rows if r.get(f"train/{term}") not in (None, "")]
        if vals and min(vals) > 0 and max(vals) / max(min(vals), 1e-12) > 50:
            ax.set_yscale("log")
    for ax in list(axes.flat)[len(terms):]:
        ax.axis("off")
    return atomic_write_figure(fig, out)
