"""Grad2VAE's one-class table on Fashion-MNIST beside the plain VAE's at the same budget (mean ROC-AUC per class).

Part (c) of the grad2vae experiment (results: grad2vae.json, beside the other parts' results): the
one-class table of grad2vae through vaelab.detect.one_class_protocol (every class by default, --epochs
epochs, --seeds seeds), beside the same protocol for each of --baselines (default: the plain vae) at
the same budget. Rerun into the same --runs to resume.

    python -m benchmarks grad2vae_table [--epochs 10] [--classes 0,1] [--limit N] [--test-limit N] [--jobs 2]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks._harness import Bench
from benchmarks.grad2vae._shared import DATASET, add_cut_arguments, overrides, record_part

RESULT = "grad2vae"
SMOKE = ["--classes", "0", "--epochs", "1", "--baselines", "", "--limit", "100", "--test-limit", "100", "--set", "model.latent_dim=4"]
NEEDS = ("fashion-mnist",)  # the data its smoke test reads (besides scikit-learn's)
USES_JOBS = True


def one_class_table(model: str, classes: list[int] | None, epochs: int, seeds: int, limit: int | None,
                    test_limit: int | None, runs: Path, jobs: int = 1, extra: dict | None = None) -> dict:
    from vaelab.config import deep_merge
    from vaelab.detect import DEFAULT_SCORE, one_class_protocol

    cut = {"data": {k: v for k, v in {"limit": limit, "test_limit": test_limit}.items() if v is not None}}
    out = runs / "one-class" if model == "grad2vae" else runs / f"one-class-{model}"
    result = one_class_protocol(DATASET, model, epochs, seeds, classes, DEFAULT_SCORE,
                                deep_merge(cut, extra or {}) if cut["data"] or extra else None, out, log=print, jobs=jobs)
    return {k: result[k] for k in ("auroc", "classes", "seeds", "class_names", "scores", "epochs", "seconds", "table", "runs")}


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--classes", default=None, help="normal classes (default: all 10)")
    ap.add_argument("--epochs", type=int, default=10, help="epochs per run (default 10)")
    ap.add_argument("--seeds", type=int, default=1, help="seeds per class (default 1)")
    ap.add_argument("--baselines", default="vae", help="models run through the same protocol beside grad2vae "
                                                       "(comma list; default vae; '' for none)")
    add_cut_arguments(ap)


def main(b: Bench) -> None:
    from vaelab.detect import DEFAULT_SCORE

    a = b.args
    t0 = time.perf_counter()
    classes = [int(c) for c in a.classes.split(",")] if a.classes else None
    extra = overrides(a)
    out = {"one_class": one_class_table("grad2vae", classes, a.epochs, a.seeds, a.limit, a.test_limit, b.runs, a.jobs, extra),
           "one_class_baselines": {m: one_class_table(m, classes, a.epochs, a.seeds, a.limit, a.test_limit, b.runs, a.jobs, extra)
                                   for m in a.baselines.split(",") if m.strip()}}
    means = {"grad2vae": out["one_class"]["auroc"][DEFAULT_SCORE]["mean"],
             **{m: r["auroc"][DEFAULT_SCORE]["mean"] for m, r in out["one_class_baselines"].items()}}
    print("(c) mean ROC-AUC: " + ", ".join(f"{m} {v:.4f}" for m, v in means.items()))
    record_part(b, "c", out, time.perf_counter() - t0)
