"""Shared by zoo.py and bidirectional.py: train a model on a dataset with the CLI, evaluate every
metric with the CLI, and reuse a finished run of the same configuration instead of retraining."""
from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The options zoo.py and bidirectional.py share."""
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--datasets", default="fashion-mnist,mnist")
    ap.add_argument("--runs", default=None, help="run directories (reused when already finished)")
    ap.add_argument("--nll-k", type=int, default=1000)
    ap.add_argument("--nll-images", type=int, default=500)
    ap.add_argument("--fid-images", type=int, default=5000)
    ap.add_argument("--finished-only", action="store_true", help="write the rows already evaluated in --runs; train nothing")


def get_row(model: str, dataset: str, a: argparse.Namespace, runs: Path) -> dict | None:
    """The evaluated row of (model, dataset): trained and evaluated now, or with --finished-only
    the row of an earlier call (None when there is none)."""
    if a.finished_only:
        return finished(model, dataset, a.epochs, runs)
    return run_and_evaluate(model, dataset, a.epochs, runs, a.nll_k, a.nll_images, a.fid_images)


def finished(model: str, dataset: str, epochs: int, runs: Path) -> dict | None:
    """The evaluated row of an earlier call, or None."""
    f = runs / f"{model}-{dataset}-e{epochs}" / "zoo_metrics.json"
    return json.loads(f.read_text()) if f.is_file() else None


def train_or_reuse(model: str, dataset: str, epochs: int, runs: Path, extra: list[str] | None = None) -> Path:
    """The run directory of (model, dataset, epochs) under ``runs``: trained now with `vaelab train`
    (default networks, latent 16), resumed when a killed run left a checkpoint, reused when finished."""
    run = runs / f"{model}-{dataset}-e{epochs}"
    if not (run / "metrics.json").is_file():
        if (run / "checkpoints" / "last.ckpt").is_file():  # a killed run: continue it, keep its epochs
            cmd = ["vaelab", "train", "--resume", str(run), "--epochs", str(epochs), "--set", "train.progress_bar=false"]
        else:  # vaelab starts a run stopped before its first checkpoint again, and refuses one another process trains
            cmd = ["vaelab", "train", model, "--data", dataset, "--epochs", str(epochs), "--latent-dim", "16", "--out", str(run),
                   "--set", "train.progress_bar=false", *(extra or [])]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return run


def run_and_evaluate(model: str, dataset: str, epochs: int, runs: Path, nll_k: int, nll_images: int,
                     fid_images: int, extra: list[str] | None = None) -> dict:
    run = runs / f"{model}-{dataset}-e{epochs}"
    result_file = run / "zoo_metrics.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    train_or_reuse(model, dataset, epochs, runs, extra)
    cmd = ["vaelab", "evaluate", str(run), "--metrics", "all", "--json", "--nll-k", str(nll_k),
           "--nll-images", str(nll_images), "--fid-images", str(fid_images)]
    print("$", " ".join(cmd), flush=True)
    ev = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    train = json.loads((run / "metrics.json").read_text())
    row = {"model": model, "dataset": dataset, "epochs": epochs, "parameters": train["parameters"],
           "train_seconds": train["train_seconds"], **ev}
    result_file.write_text(json.dumps(row, indent=2))
    return row
