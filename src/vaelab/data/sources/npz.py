"""Arrays you saved with numpy.savez: images or vectors, with or without labels and test split."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from ...errors import DataError
from ..imageset import UNKNOWN_LABEL, ImageSet
from ..parsers import images_to_tensor, load_npz
from .base import Source, register_source


class NpzSource(Source):
    """Arrays you saved with numpy.savez: x_train (and y_train, x_test, y_test), or x (and y; 10%
    held out as the test split). Images are uint8 N x H x W, N x H x W x C or N x C x H x W, or
    floats in [0, 1]; an N x D array is N vectors of D numbers (tabular data). A label of -1 means
    unknown. A labelled set x_labeled / y_labeled (the OOD study's layout) joins the training split
    after x_train, whose images then carry the unknown label unless y_train gives theirs: a
    semi-supervised model (ssvae) learns from those labels, the others ignore them."""

    def locate(self) -> Path | None:
        return None

    def claims(self, path: Path) -> int:
        """Any .npz; any other file too, last (its error names what an npz source expects)."""
        return 2 if path.suffix == ".npz" else int(path.is_file())

    def scored_whole(self, path: Path) -> bool:
        """An npz of one array x (no x_test) is scored whole."""
        try:
            names = {n[:-4] for n in zipfile.ZipFile(path).namelist()}
        except (OSError, zipfile.BadZipFile):
            return False  # the loader names the problem
        return "x_test" not in names and "x" in names

    def load(self, split: str, path: str | None = None) -> ImageSet:
        p = self._path(path, "arrays.npz")
        if not p.is_file():
            raise DataError(f"npz file {p} does not exist")
        z = load_npz(p)
        if f"x_{split}" in z:
            x, y = z[f"x_{split}"], z.get(f"y_{split}")
            if split == "train" and "x_labeled" in z and "y_labeled" in z:  # a labelled set beside the training
                # images (the OOD study's layout): both train, the others with the unknown label
                if z["x_labeled"].shape[1:] != x.shape[1:]:
                    raise DataError(f"{p}: x_labeled's images are {z['x_labeled'].shape[1:]}, x_train's {x.shape[1:]}; "
                                    "they must have one shape")
                y = np.concatenate([np.full(len(x), UNKNOWN_LABEL, np.int64) if y is None else y.astype(np.int64),
                                    z["y_labeled"].astype(np.int64)])
                x = np.concatenate([x, z["x_labeled"]])
            if f"masks_{split}" in z:  # defect masks (vaelab data build-defects): pixel-level evaluation
                s = self._make(x, y, p)
                return ImageSet(s.images, s.labels, s.name, s.class_names, masks=torch.from_numpy(z[f"masks_{split}"].astype(bool)))
        elif "x" in z:
            full = self._make(z["x"], z.get("y"), p)
            if split == "all":
                return full
            train, test = full.split(0.1, seed=0)
            return train if split == "train" else ImageSet(test.images, test.labels, full.name)
        else:
            raise DataError(f"{p}: expected arrays x_train/x_test (with optional y_train/y_test) or x (and y); found {sorted(z)}")
        return self._make(x, y, p)

    def _make(self, x: np.ndarray, y: np.ndarray | None, p: Path) -> ImageSet:
        if x.ndim not in (2, 3, 4):
            raise DataError(f"{p}: images must be an array N x H x W, N x H x W x C or N x C x H x W, or vectors N x D; "
                            f"got shape {x.shape}")
        if x.size == 0:
            raise DataError(f"{p}: the array is empty (shape {x.shape})")
        labels = labels_tensor(y, len(x), p)
        if x.ndim == 2:  # vectors
            if x.dtype.kind not in "fiub":
                raise DataError(f"{p}: vectors must be numbers, got dtype {x.dtype}")
            return ImageSet(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), labels, p.stem)
        if x.dtype.kind == "f":
            if not np.isfinite(x).all():
                raise DataError(f"{p}: images contain NaN or infinite values; clean them first")
            if x.min() < 0 or x.max() > 1:
                raise DataError(f"{p}: float images must be in [0, 1]; found [{x.min():.3g}, {x.max():.3g}]")
            x = np.round(x.astype(np.float64) * 255).astype(np.uint8)
        return ImageSet(images_to_tensor(x, str(p)), labels, p.stem)


def labels_tensor(y: np.ndarray | None, n: int, p: Path) -> torch.Tensor | None:
    if y is None:
        return None
    if y.dtype.kind not in "iu" or y.shape != (n,):
        raise DataError(f"{p}: labels must be {n} integers, got {y.dtype} {y.shape}")
    if y.size and (y.min() < UNKNOWN_LABEL or int(y.max()) > np.iinfo(np.int64).max):
        raise DataError(f"{p}: labels must be class numbers 0, 1, 2, ... (or {UNKNOWN_LABEL} for an unknown label); found "
                        f"{y.min()} .. {y.max()}")
    return torch.from_numpy(y.astype(np.int64))



NPZ = register_source(NpzSource("npz", "arrays you saved with numpy.savez (x_train, y_train, x_test, y_test)", (),
                                "set data.path to the .npz file", needs_path=True))
