"""The foundation's quality check: the default VAE's test -ELBO after 10 epochs on Fashion-MNIST and MNIST.

`vaelab train vae --data D --epochs 10 --latent-dim 16` with the default conv networks and Bernoulli
likelihood, on Fashion-MNIST and MNIST; test negative ELBO against the foundation issue's targets.
Its runs are the zoo's (--runs defaults to the zoo's folder): a finished run of the same settings is reused.

    VAELAB_DATA=../shared/data python -m benchmarks vae_baseline [--epochs 10] [--datasets fashion-mnist,mnist]
"""
from __future__ import annotations

import argparse
import json

from benchmarks._harness import Bench, print_table, train_or_reuse

TARGETS = {"fashion-mnist": 243.0, "mnist": 102.0}  # from the foundation issue: plain PyTorch conv VAE 240.1 / 100.0
SMOKE = ["--datasets", "digits", "--epochs", "1"]
RUNS_OF = "zoo"


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--datasets", default="fashion-mnist,mnist")


def main(b: Bench) -> None:
    a = b.args
    rows = []
    for ds in a.datasets.split(","):
        run = train_or_reuse("vae", ds, a.epochs, b.runs)
        m = json.loads((run / "metrics.json").read_text())
        rows.append({"dataset": ds, "epochs": a.epochs, "parameters": m["parameters"], "test_nelbo": m["nelbo"],
                     "test_rec": m["rec"], "test_kl": m["kl"], "psnr": m["psnr"], "train_seconds": m["train_seconds"],
                     "target_nelbo": TARGETS.get(ds), "meets_target": m["nelbo"] <= TARGETS.get(ds, float("inf"))})
    print_table(rows, ["dataset", "epochs", "parameters", "test_nelbo", "target_nelbo", "meets_target", "psnr", "train_seconds"])
    b.write(rows)
