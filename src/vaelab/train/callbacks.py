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
from ..plotting import draw_rows

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


