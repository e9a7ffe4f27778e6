"""One model for many categories (fit(..., groups=labels)) against one model per category: ROC-AUC and time.

For MNIST and Fashion-MNIST, each of
the ten classes is in turn the normal category; every test image of another class is an anomaly for it.
"one model": `AutoencoderDetector(...).fit(X, groups=labels)` trains one VAE on all ten classes and
calibrates each class on its own (score state, normalisation, threshold); class c's ROC-AUC scores the
test set with group c. "ten models": a VAE trained per class on that class alone (the one-class protocol).
Both see the same images for the same number of epochs, so the same number of training steps; the table
gives ROC-AUC per class, their mean, and the time to train and calibrate.

    VAELAB_DATA=../shared/data OMP_NUM_THREADS=1 python -m benchmarks groups
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks._harness import Bench, print_table

SMOKE = ["--datasets", "digits", "--epochs", "1", "--classes", "3"]


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--datasets", default="mnist,fashion-mnist")
    ap.add_argument("--per-class", type=int, default=1000, help="training images per class")
    ap.add_argument("--test-limit", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--score", default="combo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--classes", type=int, default=10, help="the first N classes are the categories")


def main(b: Bench) -> None:
    import torch
    from sklearn.metrics import roc_auc_score

    from vaelab.data import DataConfig, ImageSet, load_split
    from vaelab.detect import AutoencoderDetector

    a = b.args
    datasets, epochs, n_classes = a.datasets.split(","), a.epochs, a.classes
    rows, summary = [], []
    for ds in datasets:
        full = load_split(DataConfig(name=ds), "train")
        parts = [full.subset(torch.nonzero(full.labels == c).squeeze(1)).limit(a.per_class, a.seed) for c in range(n_classes)]
        train = ImageSet(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]), ds)
        test = load_split(DataConfig(name=ds), "test").limit(a.test_limit, a.seed)
        y = test.labels.numpy()
        t0 = time.perf_counter()
        one = AutoencoderDetector(score=a.score, epochs=epochs, seed=a.seed).fit(train, groups=train.labels)
        t_one = time.perf_counter() - t0
        auc_one = [roc_auc_score(y != c, one.decision_function(test, clip=False, groups=np.full(len(test), c)))
                   for c in range(n_classes)]
        auc_ten, t_ten = [], 0.0
        for c in range(n_classes):
            t0 = time.perf_counter()
            det = AutoencoderDetector(score=a.score, epochs=epochs, seed=a.seed).fit(parts[c])
            t_ten += time.perf_counter() - t0
            auc_ten.append(roc_auc_score(y != c, det.decision_function(test, clip=False)))
            print(f"{ds} class {c}: one model {auc_one[c]:.4f}, its own model {auc_ten[-1]:.4f}", flush=True)
        for c in range(n_classes):
            rows.append({"dataset": ds, "class": c, "auroc_one_model": float(auc_one[c]), "auroc_own_model": float(auc_ten[c])})
        summary.append({"dataset": ds, "mean_auroc_one_model": float(np.mean(auc_one)), "mean_auroc_ten_models": float(np.mean(auc_ten)),
                        "train_seconds_one_model": round(t_one, 1), "train_seconds_ten_models": round(t_ten, 1),
                        "n_train": len(train), "n_test": len(test)})
    print_table(summary, ["dataset", "mean_auroc_one_model", "mean_auroc_ten_models", "train_seconds_one_model",
                          "train_seconds_ten_models"])
    b.write(rows, summary=summary, epochs=epochs, per_class=a.per_class, score=a.score, seed=a.seed)

