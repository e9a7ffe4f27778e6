"""What the detector takes in, checked and put in shape: images or vectors (``as_images``), the held-out
calibration part (``calibration_split``), group labels, and the normalisation's quantiles (``resolve_norm_range``)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..data import ImageSet
from ..errors import ConfigError, DataError

# named normalisations: the quantiles of the training scores that map to 0 and 1. 'quantile' (the
# default) anchors the median and the 99.9th percentile, so a fixed threshold flags about the same
# share of normal images on every model (benchmarks/detect_tasks.py); 'minmax' is the training
# scores' min and max (the earlier default), which one extreme training image can stretch.
NORM_RANGES: dict[str, tuple[float, float]] = {"quantile": (0.5, 0.999), "minmax": (0.0, 1.0)}
DEFAULT_NORM_RANGE = "quantile"


def resolve_norm_range(norm_range: Any) -> tuple[float, float]:
    """The two quantiles of ``norm_range``: a name of NORM_RANGES or two numbers 0 <= low < high <= 1
    (a sequence, or the text "LOW,HIGH" as the command line gives it)."""
    if isinstance(norm_range, str) and "," in norm_range:  # the command line's LOW,HIGH
        try:
            norm_range = tuple(float(q) for q in norm_range.split(","))
        except ValueError:
            raise ConfigError(f"norm_range takes a name ({', '.join(NORM_RANGES)}) or two quantiles LOW,HIGH, e.g. "
                              f"0.5,0.99; got {norm_range!r}") from None
    if isinstance(norm_range, str):
        if norm_range not in NORM_RANGES:
            raise ConfigError(f"unknown norm_range {norm_range!r}; name one of {', '.join(NORM_RANGES)} or give two "
                              "quantiles 0 <= low < high <= 1 of the training scores (e.g. (0.5, 0.99))")
        return NORM_RANGES[norm_range]
    try:  # any two numbers: a tuple, a list, a numpy array
        r = tuple(float(q) for q in norm_range)
    except (TypeError, ValueError):
        r = ()
    if len(r) != 2 or not all(math.isfinite(q) for q in r) or not 0 <= r[0] < r[1] <= 1:
        raise ConfigError(f"norm_range is two quantiles 0 <= low < high <= 1 of the training scores, mapped to 0 and 1 "
                          f"(e.g. (0, 1), the min and max, or (0.5, 0.99)), or a name ({', '.join(NORM_RANGES)}); "
                          f"got {norm_range!r}")
    return r


def standardizer(center: Any, scale: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """A run's (``data.center``, ``data.scale``) of vectors as float32 tensors."""
    return torch.tensor(center, dtype=torch.float32), torch.tensor(scale, dtype=torch.float32)


def as_images(X: Any, name: str = "X") -> torch.Tensor:
    """An ImageSet, or a uint8 / float-in-[0, 1] array or tensor of images (N, C, H, W), (N, H, W)
    or (N, H, W, C) -> a (N, C, H, W) tensor, uint8 kept as uint8 (converted batch by batch)."""
    if isinstance(X, ImageSet):
        return X.images
    if isinstance(X, np.ndarray):
        X = torch.from_numpy(np.ascontiguousarray(X))
    if not isinstance(X, torch.Tensor):
        raise DataError(f"{name}: expected an ImageSet or an array / tensor of images, got {type(X).__name__}")
    if X.ndim == 2:  # vectors (tabular data): any finite numbers
        if len(X) == 0:
            raise DataError(f"{name}: no vectors")
        X = X.float()
        if not torch.isfinite(X).all():
            raise DataError(f"{name}: vectors must be finite; drop or impute the rows with NaN or infinite values")
        return X
    if X.ndim == 3:
        X = X.unsqueeze(1)
    elif X.ndim == 4 and X.shape[1] not in (1, 3) and X.shape[-1] in (1, 3):
        X = X.permute(0, 3, 1, 2)
    if X.ndim != 4 or X.shape[1] not in (1, 3):
        raise DataError(f"{name}: images must have shape (N, C, H, W), (N, H, W) or (N, H, W, C) with C in 1, 3; "
                        f"got {tuple(X.shape)}")
    if len(X) == 0:
        raise DataError(f"{name}: no images")
    if X.dtype == torch.uint8:
        return X
    if not X.is_floating_point():
        raise DataError(f"{name}: images must be uint8 in 0..255 or floats in [0, 1], got {X.dtype}; "
                        "convert integer images with x.to(torch.uint8)")
    if not torch.isfinite(X).all() or X.min() < 0 or X.max() > 1:
        raise DataError(f"{name}: float images must be finite and lie in [0, 1]; rescale them (x / 255) or pass uint8")
    return X


def calibration_split(n: int, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The sorted indices (fitted, held out) of ``n`` items with ``fraction`` held out (at least one
    when the fraction is positive), drawn under ``seed``; nothing held out at fraction 0."""
    if fraction <= 0:
        return np.arange(n), np.arange(0)
    n_out = max(1, int(round(n * fraction)))
    if n - n_out < 2:
        raise DataError(f"{n} training items are too few to hold out a calibration part ({fraction:g} of them) and "
                        "still fit on the rest; give more normal data, or calibration=0 to calibrate on the fitted data")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_out:]), np.sort(perm[:n_out])


def group_labels(groups: Any, n: int, name: str = "groups") -> np.ndarray:
    """One group label per item (numbers or names) as a numpy array, checked against the items' count."""
    if isinstance(groups, torch.Tensor):
        groups = groups.cpu().numpy()
    g = np.asarray(groups)
    if g.ndim != 1 or len(g) != n:
        raise DataError(f"{name} gives {g.shape[0] if g.ndim else 0} labels for {n} items; give one group label per item")
    if g.dtype.kind not in "iuUSO":
        raise DataError(f"{name} are labels (integers or names), got {g.dtype}")
    return g.astype(str) if g.dtype.kind in "USO" else g.astype(np.int64)


def calibration_images(calibration_set: Any, images: torch.Tensor) -> torch.Tensor:
    cal = as_images(calibration_set, "calibration_set")
    if cal.shape[1:] != images.shape[1:]:
        raise DataError(f"calibration_set: shape {tuple(cal.shape[1:])} per item, X has {tuple(images.shape[1:])}; "
                        "give held-out normal data of the same kind as X")
    return cal


def as_imageset(X: Any, images: torch.Tensor) -> ImageSet:
    """X as the ImageSet the trainer takes: an ImageSet as it is; vectors as they are (the model sees them
    standardised by the training part's statistics); uint8 or float images as 8-bit images."""
    if images.ndim == 2:
        return ImageSet(images)
    if isinstance(X, ImageSet):
        return X
    return ImageSet(images) if images.dtype == torch.uint8 else ImageSet.from_float(images)


def subset(X: Any, images: torch.Tensor, idx: np.ndarray) -> Any:
    """Items ``idx`` of X, an ImageSet kept an ImageSet (its labels with it), anything else as a tensor."""
    if len(idx) == len(images):
        return X
    if isinstance(X, ImageSet):
        return X.subset(torch.as_tensor(idx), X.name)
    return images[torch.as_tensor(idx)]
