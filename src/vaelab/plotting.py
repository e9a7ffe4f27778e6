"""Plotting primitives every stage may use (a leaf: it imports nothing of vaelab above the file
I/O): image grids written in the format a file name asks for, labelled rows with heat-map
overlays, interleaved rows of originals and reconstructions, and per-map min-max normalisation."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch

from .fileio import atomic_write_bytes, atomic_write_figure, output_format


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


def draw_rows(rows: list[tuple[str, torch.Tensor, torch.Tensor | None]], path: Path, title: str = "",
              col_titles: list[str] | None = None, pad: int = 2) -> Path:
    """A labelled grid: one row per (label, images [N, C, H, W] in [0, 1], overlay maps [N, 1, H, W]
    in [0, 1] or None), one column per image (``col_titles`` above them); a map is blended 50 / 50
    in matplotlib's 'jet' colours over its image. The tiles are composed into one array and drawn
    with a single imshow (fast enough to run after every epoch)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    jet = matplotlib.colormaps["jet"]
    n = rows[0][1].shape[0]
    h, w = rows[0][1].shape[-2:]
    grid = np.ones((len(rows) * (h + pad) + pad, n * (w + pad) + pad, 3))
    for r, (_, imgs, maps) in enumerate(rows):
        rgb = imgs.detach().float().clamp(0, 1).cpu().expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy()
        if maps is not None:
            heat = jet(maps[:, 0].detach().float().clamp(0, 1).cpu().numpy())[..., :3]
            rgb = 0.5 * rgb + 0.5 * heat
        for k in range(n):
            y0, x0 = pad + r * (h + pad), pad + k * (w + pad)
            grid[y0 : y0 + h, x0 : x0 + w] = rgb[k]
    fig, ax = plt.subplots(figsize=(1.0 * n + 1.2, 1.0 * len(rows) + (0.8 if title or col_titles else 0.3)))
    ax.imshow(grid, interpolation="nearest")
    ax.set_yticks([pad + r * (h + pad) + h / 2 for r in range(len(rows))], [r[0] for r in rows], fontsize=8)
    if col_titles:
        ax.xaxis.tick_top()
        ax.set_xticks([pad + k * (w + pad) + w / 2 for k in range(n)], col_titles, fontsize=8)
    else:
        ax.set_xticks([])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=9)
    return atomic_write_figure(fig, path)


def normalize_maps(m: torch.Tensor) -> torch.Tensor:
    """Min-max scale each map of [B, 1, H, W] to [0, 1]; a constant map becomes all zeros."""
    lo = m.amin((1, 2, 3), keepdim=True)
    span = m.amax((1, 2, 3), keepdim=True) - lo
    return torch.where(span > 0, (m - lo) / span.clamp_min(torch.finfo(m.dtype).tiny), torch.zeros_like(m))


def interleave_rows(a: torch.Tensor, b: torch.Tensor, per_row: int) -> torch.Tensor:
    """Rows of ``per_row`` originals, each followed by the row of their reconstructions."""
    out = []
    for i in range(0, len(a), per_row):
        out += [a[i : i + per_row], b[i : i + per_row]]
    return torch.cat(out)


def smooth(values, span: int | None = None) -> np.ndarray:
    """The exponential moving average of a series (bias-corrected, so it starts at the first value);
    ``span`` defaults to 2% of its length (at least 1: no smoothing)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return v
    span = span or max(1, len(v) // 50)
    a = 2.0 / (span + 1.0)
    out, m, w = np.empty_like(v), 0.0, 0.0
    for i, x in enumerate(v):
        m, w = (1 - a) * m + a * x, (1 - a) * w + a
        out[i] = m / w
    return out


def term_panels(terms: list[str], width: float = 4.3, height: float = 3.0):
    """A figure with one panel per loss term (three to a row), the panels left over hidden:
    (figure, [(term, axes), ...])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncol = min(3, len(terms))
    nr = int(math.ceil(len(terms) / ncol))
    fig, axes = plt.subplots(nr, ncol, figsize=(width * ncol, height * nr), squeeze=False)
    for ax in list(axes.flat)[len(terms):]:
        ax.axis("off")
    return fig, list(zip(terms, axes.flat))
