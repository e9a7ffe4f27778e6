"""Callbacks chosen by what a model can do. ``model_callbacks`` is the one place the training loop
asks which extra Lightning callbacks a model's Trainer gets (none for the plain family)."""
from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl

from ..data import ImageSet


def model_callbacks(model, run_dir: Path, train: ImageSet) -> list[pl.Callback]:
    return []
