"""scikit-learn's bundled 8x8 digits: always there, for examples and quick tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..imageset import ImageSet
from .base import Source, register_source


class DigitsSource(Source):
    """scikit-learn's bundled 8x8 digits (1,797 images, values 0..16 scaled to 0..255); 20% test."""

    def locate(self) -> Path | None:
        import sklearn

        return Path(sklearn.__file__).parent / "datasets" / "data"

    def load(self, split: str, path: str | None = None) -> ImageSet:
        from sklearn.datasets import load_digits

        b = load_digits()
        x = torch.from_numpy((b.images * 255.0 / 16.0).round().astype(np.uint8))[:, None]
        full = ImageSet(x, torch.from_numpy(b.target.astype(np.int64)), self.name, self.class_names)
        train, test = full.split(0.2, seed=0)
        return train if split == "train" else ImageSet(test.images, test.labels, self.name, full.class_names)


DIGITS = register_source(DigitsSource("digits", "scikit-learn's bundled 8x8 digits, 1,797 images", (), "ships with scikit-learn",
                                      class_names=[str(i) for i in range(10)], shape=(1, 8, 8)))
