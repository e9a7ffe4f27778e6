"""Tabular anomaly detection on the breast-cancer table: the VAE detector beside IsolationForest and PCA.

A VAE detector on scikit-learn's bundled breast-cancer table (569 rows,
30 numeric columns), the benign class (357 rows) as normal, the malignant class (212) as anomalies.

Each seed draws its own split of the benign rows: 80% train (the model sees benign rows only,
10% of them held out for validation), 20% test beside every malignant row. The test rows are
scored through the API (AutoencoderDetector on the trained run, default score: the default
combo's members that are defined on vectors) and through `vaelab detect RUN --data FILE.npz`,
which must give the same ROC-AUC. Two references from scikit-learn score the same split on the
same standardised columns: IsolationForest and the PCA reconstruction error (as many components
as the VAE's latent units). Nothing is tuned: the VAE has vaelab's defaults for vectors (MLP
512-256, Gaussian likelihood, latent 16) except ``--epochs``.

    python -m benchmarks tabular [--seeds 0,1,2] [--epochs 50] [--runs DIR]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks._harness import Bench, print_table, train_or_reuse, vaelab_command

SMOKE = ["--seeds", "0", "--epochs", "1"]


def split(seed: int):
    from sklearn.datasets import load_breast_cancer

    b = load_breast_cancer()
    x, y = b.data.astype(np.float64), b.target  # target 1 = benign
    rng = np.random.default_rng(seed)
    benign, malignant = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    benign = rng.permutation(benign)
    n_train = int(round(0.8 * len(benign)))
    tr, te = benign[:n_train], np.concatenate([benign[n_train:], malignant])
    # labels: 0 = normal (benign), 1 = anomaly (malignant), so `vaelab detect --anomaly-classes 1` reads them
    return x[tr], np.zeros(len(tr), np.int64), x[te], (y[te] == 0).astype(np.int64)


def one_seed(seed: int, epochs: int, runs: Path) -> dict:
    import torch
    from sklearn.decomposition import PCA
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import roc_auc_score, average_precision_score

    import vaelab
    from vaelab.data import load_data, load_split
    from vaelab.detect import AutoencoderDetector
    from vaelab.train import RunConfig

    xtr, ytr, xte, yte = split(seed)
    d = runs / f"seed{seed}"
    d.mkdir(parents=True, exist_ok=True)
    npz = d / "breast_cancer.npz"
    np.savez(npz, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    t0 = time.perf_counter()
    run = train_or_reuse("vae", "npz", epochs, d, [f"data.path={npz}", "train.batch_size=64", f"seed={seed}"],
                         latent_dim=None, name=f"vae-e{epochs}")  # a finished run is reused
    seconds = time.perf_counter() - t0
    cfg = RunConfig.load(run / "config.yaml")
    model = vaelab.load(run)
    train = load_data(cfg.data, cfg.seed)[0]  # the training rows without the validation ones, as `vaelab detect` calibrates
    test = load_split(cfg.data, "test")
    det = AutoencoderDetector(model, seed=seed).fit(train)
    s = det.decision_function(test, clip=False)
    auc, ap = roc_auc_score(yte, s), average_precision_score(yte, s)

    # the same through the command line (its parser and job, in this process)
    out = d / f"detect-e{epochs}"
    if not (out / "metrics.json").is_file():
        vaelab_command(["detect", str(run), "--data", str(npz), "--split", "test", "--anomaly-classes", "1", "--out", str(out)],
                       fresh=False)
    cli_auc = json.loads((out / "metrics.json").read_text())["roc_auc"]

    z_tr, z_te = train.images.double().numpy(), test.images.double().numpy()  # the run's standardised columns
    iso = IsolationForest(random_state=seed).fit(z_tr)
    pca = PCA(n_components=cfg.model.latent_dim, random_state=seed).fit(z_tr)
    pca_err = ((z_te - pca.inverse_transform(pca.transform(z_te))) ** 2).mean(1)
    return {"seed": seed, "epochs": epochs, "n_train": len(xtr), "n_test": len(xte), "n_anomalies": int(yte.sum()),
            "score": det.score_.spec(), "roc_auc": round(float(auc), 4), "pr_auc": round(float(ap), 4),
            "cli_roc_auc": round(float(cli_auc), 4), "isolation_forest_roc_auc": round(float(roc_auc_score(yte, -iso.score_samples(z_te))), 4),
            "pca_roc_auc": round(float(roc_auc_score(yte, pca_err)), 4), "train_seconds": round(seconds, 1),
            "torch_threads": torch.get_num_threads()}


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=50)


def main(b: Bench) -> None:
    a = b.args
    rows = [one_seed(int(s), a.epochs, b.runs) for s in a.seeds.split(",")]
    cols = ["seed", "roc_auc", "cli_roc_auc", "pr_auc", "isolation_forest_roc_auc", "pca_roc_auc", "train_seconds"]
    print_table(rows, cols)
    summary = {k: {"mean": round(float(np.mean([r[k] for r in rows])), 4), "sd": round(float(np.std([r[k] for r in rows])), 4),
                   "min": round(float(np.min([r[k] for r in rows])), 4)}
               for k in ("roc_auc", "pr_auc", "isolation_forest_roc_auc", "pca_roc_auc")}
    print(json.dumps(summary, indent=1))
    b.write(rows, summary=summary)
