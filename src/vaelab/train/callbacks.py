"""Callbacks chosen by what a model can do. ``model_callbacks`` is the one place the training loop
asks which extra Lightning callbacks a model's Trainer gets (none for the plain family).

A model with ``attention_maps(x, generator)`` (grad2vae) gets :class:`AttentionGrid`: its attention
on a fixed set of training images, drawn after every epoch into ``RUN_DIR/attention/epoch_XXX.png``.
The train stage draws with matplotlib itself: it may not import explain/ or report/."""
from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch

from ..data import ImageSet
from ..fileio import atomic_write_figure

ATTENTION_DIR = "attention"


def model_callbacks(model, run_dir: Path, train: ImageSet) -> list[pl.Callback]:
    callbacks: list[pl.Callback] = []
    if callable(getattr(model, "attention_maps", None)) and len(train):
        callbacks.append(AttentionGrid(Path(run_dir), train))
    return callbacks


def attention_epoch_path(run_dir: Path, epoch: int) -> Path:
    """Where the grid after (1-based) ``epoch`` goes."""
    return Path(run_dir) / ATTENTION_DIR / f"epoch_{epoch:03d}.png"


class AttentionGrid(pl.Callback):
    """After every training epoch, the model's attention on ``n`` fixed training images (evenly
    spaced through the training set): one column per image, rows input / attention (overlaid on
    the input) / reconstruction (decode(E[z|x])) / attention reconstruction (when the model has
    ``attention_reconstruct``). Written atomically; only by the first process. The attention's
    noise comes from a generator of its own, so training's random stream is untouched and the
    grids of successive epochs use the same posterior noise."""

    def __init__(self, run_dir: Path, train: ImageSet, n: int = 8, seed: int = 0):
        self.run_dir, self.seed = Path(run_dir), seed
        idx = torch.linspace(0, len(train) - 1, min(n, len(train))).round().long().unique()
        self.images = train.subset(idx).float()  # [0, 1]

    @torch.no_grad()
    def _draw(self, model, epoch: int) -> Path:
        x = self.images.to(next(model.parameters()).device)
        rows = [("input", x, None),
                ("attention", x, model.attention_maps(x, torch.Generator().manual_seed(self.seed))),
                ("reconstruction", model.reconstruct(x), None)]
        if callable(getattr(model, "attention_reconstruct", None)):
            rows.append(("attention rec.", model.attention_reconstruct(x, torch.Generator().manual_seed(self.seed)), None))
        return draw_rows(rows, attention_epoch_path(self.run_dir, epoch), f"epoch {epoch}")

    def on_train_epoch_end(self, trainer: pl.Trainer, lit: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        model = lit.model
        was_training = model.training
        model.eval()
        try:
            self._draw(model, trainer.current_epoch + 1)
        finally:
            model.train(was_training)


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
