"""Do explanations per feature point at the column that makes a row anomalous? Top-1 and top-3 hits on two tables.

On scikit-learn's breast
cancer (benign rows) and wine (all rows) tables, a detector trains on 70% of the normal rows; every other
row gets one column, drawn at random, moved 6 training standard deviations from its mean (up or down).
A row is explained correctly when its largest contribution (`det.explain`) is that column. Per dataset,
method ('reconstruction': each column's reconstruction error; 'gradient': gradient x input of the
default score) and seed.

    OMP_NUM_THREADS=1 python -m benchmarks explain_features
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks._harness import Bench, print_table

SMOKE = ["--datasets", "breast-cancer", "--seeds", "1", "--epochs", "2"]


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--datasets", default="breast-cancer,wine")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--shift", type=float, default=6.0, help="training standard deviations a corrupted column moves")


def main(b: Bench) -> None:
    import torch
    from sklearn.datasets import load_breast_cancer, load_wine

    from vaelab.detect import AutoencoderDetector

    a = b.args
    cancer = load_breast_cancer()
    tables = {"breast-cancer": ("breast cancer (benign rows)", lambda: cancer.data[cancer.target == 1]),
              "wine": ("wine (all rows)", lambda: load_wine().data)}
    sets = {tables[k][0]: tables[k][1]() for k in a.datasets.split(",")}
    seeds, epochs = range(a.seeds), a.epochs
    rows, t0 = [], time.perf_counter()
    for name, x in sets.items():
        for seed in seeds:
            rng = np.random.default_rng(seed)
            perm = rng.permutation(len(x))
            k = int(0.7 * len(x))
            train, test = x[perm[:k]], x[perm[k:]]
            mu, sd = train.mean(0), train.std(0)
            cols = rng.integers(0, x.shape[1], len(test))
            bad = test.copy()
            bad[np.arange(len(bad)), cols] = mu[cols] + a.shift * sd[cols] * rng.choice([-1, 1], len(bad))
            det = AutoencoderDetector(epochs=epochs, seed=seed).fit(torch.tensor(train, dtype=torch.float32))
            for method in ("reconstruction", "gradient"):
                c = det.explain(torch.tensor(bad, dtype=torch.float32), method)
                rows.append({"dataset": name, "seed": seed, "method": method, "rows": len(bad), "columns": x.shape[1],
                             "top1_hit": float((c.argmax(1) == cols).mean()),
                             "top3_hit": float(np.mean([c_ in np.argsort(-r)[:3] for r, c_ in zip(c, cols)]))})
                print(rows[-1], flush=True)
    summary = []
    for name in sets:
        for method in ("reconstruction", "gradient"):
            r = [row for row in rows if row["dataset"] == name and row["method"] == method]
            summary.append({"dataset": name, "method": method, "top1_hit_mean": float(np.mean([v["top1_hit"] for v in r])),
                            "top1_hit_min": float(np.min([v["top1_hit"] for v in r])),
                            "top3_hit_mean": float(np.mean([v["top3_hit"] for v in r]))})
    print_table(summary, ["dataset", "method", "top1_hit_mean", "top1_hit_min", "top3_hit_mean"])
    b.write(rows, summary=summary, shift=a.shift, epochs=epochs, seconds=round(time.perf_counter() - t0, 1))

