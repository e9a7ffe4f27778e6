"""Detection figures as PNG (matplotlib, Agg), written atomically through vaelab.fileio."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import atomic_write_figure


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: Path) -> Path:
    return atomic_write_figure(fig, out)


def score_histogram(scores: np.ndarray, threshold: float | None, out: Path, y_true: np.ndarray | None = None,
                    score_name: str = "score") -> Path:
    """Histograms of the scores (normal and anomalous apart when labels are known) and the threshold (none
    drawn for a grouped detector, whose groups each have their own)."""
    plt = _plt()
    s = np.asarray(scores, dtype=np.float64)
    bins = np.histogram_bin_edges(s if threshold is None else np.append(s, threshold), bins=50)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    if y_true is None:
        ax.hist(s, bins=bins, color="tab:blue", alpha=0.8, label=f"all ({len(s)})")
    else:
        y = np.asarray(y_true).astype(bool)
        ax.hist(s[~y], bins=bins, color="tab:blue", alpha=0.6, density=True, label=f"normal ({int((~y).sum())})")
        ax.hist(s[y], bins=bins, color="tab:red", alpha=0.6, density=True, label=f"anomalous ({int(y.sum())})")
        ax.set_ylabel("density")
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=1.2, label=f"threshold {threshold:.3g}")
    ax.set_xlabel(f"anomaly score ({score_name})")
    ax.legend(fontsize=8)
    return _save(fig, out)


def feature_figure(contributions: np.ndarray, out: Path, top: int = 12) -> Path:
    """The features with the largest mean contribution to the flagged rows' scores, as horizontal bars."""
    plt = _plt()
    mean = np.asarray(contributions, dtype=np.float64).mean(0)
    order = np.argsort(-mean)[:top][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(order) + 1.2))
    ax.barh([f"column {j}" for j in order], mean[order], color="tab:red", alpha=0.8)
    ax.set_xlabel("mean contribution to the score")
    return _save(fig, out)


def roc_figure(y_true: np.ndarray, scores: np.ndarray, out: Path) -> Path:
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _plt()
    fpr, tpr, _ = roc_curve(y_true, scores)
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.plot(fpr, tpr, lw=1.5, label=f"AUC {roc_auc_score(y_true, scores):.4f}")
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls=":")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC curve")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, out)


def pr_figure(y_true: np.ndarray, scores: np.ndarray, out: Path) -> Path:
    from sklearn.metrics import average_precision_score, precision_recall_curve

    plt = _plt()
    precision, recall, _ = precision_recall_curve(y_true, scores)
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.step(recall, precision, where="post", lw=1.5, label=f"AP {average_precision_score(y_true, scores):.4f}")
    ax.axhline(float(np.mean(y_true)), color="0.6", lw=0.8, ls=":", label="chance")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_ylim(0, 1.02)
    ax.set_title("Precision-recall curve (anomalies positive)")
    ax.legend(loc="best", fontsize=8)
    return _save(fig, out)


def confusion_figure(matrix: list[list[int]], out: Path) -> Path:
    plt = _plt()
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(3.8, 3.4))
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > m.max() / 2 else "black", fontsize=12)
    ax.set_xticks([0, 1], ["normal", "anomaly"])
    ax.set_yticks([0, 1], ["normal", "anomaly"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix at the threshold")
    return _save(fig, out)


def detection_figures(out_dir: Path, scores: np.ndarray, threshold: float | None, y_true: np.ndarray | None = None,
                      metrics: dict[str, Any] | None = None, score_name: str = "score") -> list[tuple[str, Path]]:
    """(caption, path) of the histogram and, when labels are known, ROC, PR and confusion figures."""
    out_dir = Path(out_dir)
    figs = [("Anomaly scores with the threshold (dashed)",
             score_histogram(scores, threshold, out_dir / "score_histogram.png", y_true, score_name))]
    if y_true is not None and 0 < int(np.sum(y_true)) < len(y_true):
        figs.append(("ROC curve", roc_figure(y_true, scores, out_dir / "roc.png")))
        figs.append(("Precision-recall curve", pr_figure(y_true, scores, out_dir / "pr.png")))
    if y_true is not None and metrics is not None and "confusion_matrix" in metrics:
        figs.append(("Confusion matrix at the threshold",
                     confusion_figure(metrics["confusion_matrix"], out_dir / "confusion.png")))
    return figs
