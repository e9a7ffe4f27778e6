"""Shared by zoo and bidirectional: a model trained on a dataset (the harness's train_or_reuse),
every metric evaluated, and the evaluated row kept in the run directory so that a later call (or the
other benchmark, given the same --runs) reuses it."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks._harness import add_metric_arguments, train_or_reuse

SMOKE = ["--datasets", "digits", "--epochs", "1", "--nll-k", "4", "--nll-images", "32", "--fid-images", "64", "--n-labels", "20",
         "--few-label-repeats", "1"]


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The options zoo and bidirectional share."""
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--datasets", default="fashion-mnist,mnist")
    add_metric_arguments(ap, nll_k=1000, nll_images=500, fid_images=5000, few_label=True)
    ap.add_argument("--finished-only", action="store_true", help="write the rows already evaluated in --runs; train nothing")


def get_row(model: str, dataset: str, a: argparse.Namespace, runs: Path) -> dict | None:
    """The evaluated row of (model, dataset): trained and evaluated now, or with --finished-only
    the row of an earlier call (None when there is none)."""
    if a.finished_only:
        return finished(model, dataset, a.epochs, runs)
    return run_and_evaluate(model, dataset, a.epochs, runs, nll_k=a.nll_k, nll_images=a.nll_images, fid_images=a.fid_images,
                            n_labels=a.n_labels, few_label_repeats=a.few_label_repeats)


def finished(model: str, dataset: str, epochs: int, runs: Path) -> dict | None:
    """The evaluated row of an earlier call, or None."""
    f = runs / f"{model}-{dataset}-e{epochs}" / "zoo_metrics.json"
    return json.loads(f.read_text()) if f.is_file() else None


def run_and_evaluate(model: str, dataset: str, epochs: int, runs: Path, **options) -> dict:
    """Every metric of the run (`vaelab evaluate RUN --metrics all --json` with the metrics' OPTIONS:
    metrics.json updated, the report not redrawn), with its parameters and training time; cached in
    RUN/zoo_metrics.json."""
    from vaelab.api import evaluate_run

    run = runs / f"{model}-{dataset}-e{epochs}"
    result_file = run / "zoo_metrics.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    train_or_reuse(model, dataset, epochs, runs)
    print(f"evaluating {run}: every metric", flush=True)
    ev = evaluate_run(run, ["all"], update_report=True, redraw=False, **options)
    train = json.loads((run / "metrics.json").read_text())
    row = {"model": model, "dataset": dataset, "epochs": epochs, "parameters": train["parameters"],
           "train_seconds": train["train_seconds"], **ev}
    result_file.write_text(json.dumps(row, indent=2))
    return row
