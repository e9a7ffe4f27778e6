"""One-class CIFAR-10 with attribute restoration (arnet): train on one class, score the whole test set; ROC-AUC per class.

Ten tasks, each with one class normal and the other nine anomalies on the 10,000 test images
(`vaelab bench one-class`, i.e. `vaelab.api.one_class_run`). The model is `arnet` (colour and
orientation erased and restored, with the rotation head), trained --epochs per class on the
JPEG-compressed CIFAR-10 copy; its own scores `restoration` and `transform_nll` stand beside the
reconstruction scores `mse` and `ssim` of the same models. The published from-scratch autoencoder
results this compares with are about 0.86 mean ROC-AUC (ARNet, GEOM).

    VAELAB_DATA=../shared/data OMP_NUM_THREADS=1 python -m benchmarks one_class_cifar10 [--epochs 15] [--runs DIR]

Rerunning into the same --runs reuses the trained classes and the scores already computed.
"""
from __future__ import annotations

import argparse

from benchmarks._harness import Bench, print_table

SMOKE = ["--epochs", "1", "--classes", "0", "--set", "data.limit=100", "--set", "data.test_limit=50",
         "--set", "model.latent_dim=8"]
NEEDS = ("cifar10",)
SCORES = "restoration,transform_nll,mse,ssim"


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--epochs", type=int, default=15, help="per class (default 15)")
    ap.add_argument("--classes", help="comma-separated normal classes (default: all ten)")
    ap.add_argument("--scores", default=SCORES)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more run-config keys")


def main(b: Bench) -> None:
    from vaelab.api import one_class_run
    from vaelab.config import parse_set

    a = b.args
    sets = ["model.latent_dim=64", "model.transform_head=true", "train.progress_bar=false", *a.set]
    classes = [int(c) for c in a.classes.split(",")] if a.classes else None
    out, result = one_class_run("cifar10", "arnet", a.epochs, 1, classes, a.scores, parse_set(sets), b.runs,
                                keep_checkpoints=True)
    names = {c: v["name"] for c, v in result["auroc"][result["scores"][0]]["per_class"].items()}
    rows = [{"class": c, "name": names[c], **{s: result["auroc"][s]["per_class"][c]["mean"] for s in result["scores"]}}
            for c in names]
    rows.append({"class": "mean", "name": "", **{s: result["auroc"][s]["mean"] for s in result["scores"]}})
    print_table(rows, ["class", "name", *result["scores"]])
    b.write(rows, summary={f"{s}_mean_roc_auc": result["auroc"][s]["mean"] for s in result["scores"]},
            epochs=a.epochs, settings=sets, seconds=result.get("seconds"))
