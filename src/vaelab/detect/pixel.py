"""Pixel-level evaluation of anomaly maps against ground-truth defect masks.

``pixel_roc_auc`` pools every pixel of every image (scikit-learn's ROC-AUC). ``aupro`` is the
area under the per-region overlap (PRO) curve of the MVTec AD benchmark (Bergmann et al., "The
MVTec Anomaly Detection Dataset", IJCV 2021): each connected defect region counts once, whatever
its size, so a small scratch weighs as much as a large stain. ``pro_curve`` gives the curve itself.

Maps are float arrays (N, H, W), higher = more anomalous; masks are bool or 0/1 arrays of the same
shape, True / 1 = defect. A single (H, W) map and mask are taken as one image.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError

# 8-connectivity within each image and none across images: the stack (N, H, W) is labelled in one
# call without merging regions of neighbouring images (MVTec's evaluation uses 8-connectivity)
_PLANAR_8 = np.zeros((3, 3, 3), dtype=bool)
_PLANAR_8[1] = True


def _maps_and_masks(maps: Any, masks: Any) -> tuple[np.ndarray, np.ndarray]:
    """Returns (maps float64 (N, H, W), masks bool (N, H, W)), or raise DataError."""
    try:
        a = np.asarray(maps, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DataError(f"maps must be an array of numbers (N, H, W): {e}") from None
    m = np.asarray(masks)
    if a.ndim == 2:
        a = a[None]
    if m.ndim == 2:
        m = m[None]
    if a.ndim != 3 or a.size == 0:
        raise DataError(f"maps must have shape (N, H, W) (one anomaly map per image), got {np.shape(maps)}")
    if m.shape != a.shape:
        raise DataError(f"masks must have the maps' shape {a.shape}, got {np.shape(masks)}; "
                        "resize the maps to the masks' size (or the masks to the maps') before evaluating")
    if not np.isfinite(a).all():
        raise DataError("maps contain NaN or infinite values; fix the scoring before evaluating")
    if m.dtype != bool:
        if not np.isin(m, (0, 1)).all():
            found = sorted(set(np.unique(m).tolist()))[:6]
            raise DataError(f"masks must be bool or 0/1 (1 = defect); found values {found}. "
                            "Binarise them, e.g. masks = masks > 127 for 0..255 images")
        m = m.astype(bool)
    return a, m


def _both_kinds(m: np.ndarray) -> None:
    n_defect = int(m.sum())
    if n_defect == 0:
        raise DataError("masks hold no defect pixel: pixel-level metrics are undefined; "
                        "evaluate on images that contain defects (with their masks)")
    if n_defect == m.size:
        raise DataError("masks hold no normal pixel: the false-positive rate is undefined; "
                        "include normal pixels (or defect-free images) in the evaluation")


def pixel_roc_auc(maps: Any, masks: Any) -> float:
    """Returns the ROC-AUC of the anomaly maps' pixels against the masks' pixels, all images pooled
    (scikit-learn's ``roc_auc_score`` on the flattened arrays). Raises DataError when the masks hold
    only defect pixels or none."""
    from sklearn.metrics import roc_auc_score

    a, m = _maps_and_masks(maps, masks)
    _both_kinds(m)
    return float(roc_auc_score(m.ravel(), a.ravel()))


def _quantise(scores: np.ndarray, num_thresholds: int) -> tuple[np.ndarray, np.ndarray]:
    """Maps each score to the index of the highest of ``num_thresholds`` evenly spaced thresholds
    (min to max of the scores) that it reaches, so that ``score >= grid[j]`` iff ``index >= j``."""
    grid = np.linspace(scores.min(), scores.max(), num_thresholds)
    return np.searchsorted(grid, scores, side="right") - 1, grid


def pro_curve(maps: Any, masks: Any, num_thresholds: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns ``(fpr, pro, thresholds)``: at each threshold t (decreasing, a pixel is flagged when
    its score >= t), the false-positive rate over the normal pixels of all images and the
    per-region overlap, the mean over every connected region of every mask (8-connectivity within
    an image, ``scipy.ndimage.label``) of the fraction of its pixels flagged. The curve starts at
    (0, 0) with t = +inf and ends at (1, 1).

    ``num_thresholds=None`` uses every distinct score (the exact curve); an integer uses that many
    evenly spaced thresholds from the lowest to the highest score. Both are one sort of the pixels
    and cumulative sums: no loop over thresholds.
    """
    from scipy import ndimage

    a, m = _maps_and_masks(maps, masks)
    _both_kinds(m)
    if num_thresholds is not None:
        if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, (int, np.integer)) or num_thresholds < 2:
            raise ConfigError(f"num_thresholds must be None (every distinct score) or an integer >= 2, "
                              f"got {num_thresholds!r}")
    regions, n_regions = ndimage.label(m, structure=_PLANAR_8)
    lab = regions.ravel()
    scores = a.ravel()
    grid = None
    if num_thresholds is not None:
        scores, grid = _quantise(scores, int(num_thresholds))

    size = np.bincount(lab, minlength=n_regions + 1)  # size[0]: the normal pixels
    normal = lab == 0
    pro_step = np.where(normal, 0.0, 1.0 / (n_regions * size[lab]))  # each region's pixels sum to 1 / n_regions
    order = np.argsort(scores, kind="stable")[::-1]  # descending
    s_sorted = scores[order]
    fp = np.cumsum(normal[order], dtype=np.int64)
    pro = np.cumsum(pro_step[order])
    last = np.r_[s_sorted[1:] != s_sorted[:-1], True]  # the last pixel of each run of equal scores
    fpr = np.r_[0.0, fp[last] / size[0]]
    pro = np.r_[0.0, np.minimum(pro[last], 1.0)]
    cut = s_sorted[last]
    thresholds = np.r_[np.inf, grid[cut] if grid is not None else cut]
    return fpr, pro, thresholds


def aupro(maps: Any, masks: Any, fpr_limit: float = 0.3, num_thresholds: int | None = None) -> float:
    """Returns the area under the PRO curve (``pro_curve``) for false-positive rates in
    [0, ``fpr_limit``], divided by ``fpr_limit`` so that a perfect map scores 1 (MVTec AD's
    AU-PRO, usually at 0.3). The curve is integrated by the trapezoid rule, linearly interpolated
    at ``fpr_limit``; a constant map scores ``fpr_limit / 2``.

    Ties: pixels of equal score are flagged together (score >= t), so a run of tied scores is one
    straight step of the curve, as in scikit-learn's ROC curve. The MVTec AD evaluation code
    differs there: it ranks tied normal pixels as if they were apart and counts a defect pixel as
    found only when its score is strictly above the threshold, so a constant map scores 0 in it.
    Without ties the two differ by less than 1 / (2 n ``fpr_limit``), n the number of normal pixels
    (the reference joins the same curve points by chords, this function by the exact staircase).

    Raises DataError when the masks hold no defect pixel or no normal pixel, ConfigError for an
    ``fpr_limit`` outside (0, 1].
    """
    if isinstance(fpr_limit, bool) or not isinstance(fpr_limit, (int, float, np.floating)) \
            or not (math.isfinite(fpr_limit) and 0 < fpr_limit <= 1):
        raise ConfigError(f"fpr_limit must be in (0, 1] (the false-positive rate up to which the PRO curve is "
                          f"integrated, usually 0.3), got {fpr_limit!r}")
    fpr, pro, _ = pro_curve(maps, masks, num_thresholds)
    i = int(np.searchsorted(fpr, fpr_limit, side="left"))  # fpr[i - 1] < fpr_limit <= fpr[i]; fpr[0] = 0
    x0, x1, y0, y1 = fpr[i - 1], fpr[i], pro[i - 1], pro[i]
    y_at = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
    x = np.r_[fpr[:i], fpr_limit]
    y = np.r_[pro[:i], y_at]
    # the trapezoid rule, written out: numpy renamed trapz to trapezoid in 2.0
    area = float(np.sum(np.diff(x) * (y[1:] + y[:-1])) / 2)
    return area / fpr_limit


__all__ = ["aupro", "pixel_roc_auc", "pro_curve"]
