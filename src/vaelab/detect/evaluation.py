"""Detection metrics from labels and scores (scikit-learn does the arithmetic)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import DataError


def _binary_labels(y_true: Any, n: int) -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"y_true must hold one label per score ({n}), got shape {y.shape}")
    if y.dtype == bool:
        return y.astype(np.int64)
    if not np.isin(y, (0, 1)).all():
        raise DataError(f"y_true must be 1 (anomaly) or 0 (normal); found values {sorted(set(np.unique(y).tolist()))[:6]}. "
                        "Map your labels, e.g. y_true = (labels != normal_class)")
    return y.astype(np.int64)


def evaluate_detection(y_true: Any, scores: Any, threshold: float | None, flagged: Any = None) -> dict[str, Any]:
    """ROC-AUC, PR-AUC (average precision, anomalies positive) and, at ``threshold`` (flag when
    score > threshold), the confusion matrix [[tn, fp], [fn, tp]], TPR (= recall), FPR,
    precision, F1 and accuracy. ``y_true``: 1 = anomaly. ROC-AUC and PR-AUC are None when only
    one kind of image is present (they are undefined). ``flagged`` (1 / 0 per image) gives the flags
    instead of one threshold: a grouped detector's, each group at its own threshold."""
    from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score

    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or len(s) == 0:
        raise DataError(f"scores must be a non-empty 1-D array, got shape {s.shape}")
    if not np.isfinite(s).all():
        raise DataError("scores contain NaN or infinite values; they cannot be ranked")
    if flagged is None and (threshold is None or not math.isfinite(float(threshold))):
        raise DataError(f"threshold must be a finite number, got {threshold}")
    y = _binary_labels(y_true, len(s))
    pred = (s > threshold).astype(np.int64) if flagged is None else np.asarray(flagged).astype(np.int64).ravel()
    if len(pred) != len(s):
        raise DataError(f"{len(pred)} flags for {len(s)} scores")
    (tn, fp), (fn, tp) = confusion_matrix(y, pred, labels=[0, 1]).tolist()
    both = 0 < y.sum() < len(y)

    def ratio(a: int, b: int) -> float:
        return a / b if b else 0.0

    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    return {
        "roc_auc": float(roc_auc_score(y, s)) if both else None,
        "pr_auc": float(average_precision_score(y, s)) if both else None,
        "threshold": None if threshold is None else float(threshold),
        "confusion_matrix": [[tn, fp], [fn, tp]],
        "tn": tn, "fp": fp, "fn": fn, "tp": tp,
        "tpr": recall, "fpr": ratio(fp, fp + tn), "precision": precision, "recall": recall,
        "f1": ratio(2 * precision * recall, precision + recall) if precision + recall else 0.0,
        "accuracy": ratio(tp + tn, len(y)),
        "n": int(len(y)), "n_anomalies": int(y.sum()), "n_flagged": int(pred.sum()),
    }
