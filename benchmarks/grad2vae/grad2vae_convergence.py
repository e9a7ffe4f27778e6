"""Grad2VAE's convergence in one-class detection against the plain VAE: test ROC-AUC after each epoch.

Part (b) of the grad2vae experiment (results: grad2vae.json, beside the other parts' results): for
each of --classes of Fashion-MNIST, train on that class only and, after each of the first --epochs
epochs, score the whole test set with the detection package's default score (AutoencoderDetector,
as the one-class protocol does) and record the ROC-AUC (anomaly = another class). Models: grad2vae;
grad2vae with model.attention_weight=0 (the same network without the attention: the ablation); and
the default conv vae of about the same size (1.69 M vs 1.63 M parameters). Training continues epoch
by epoch by resuming the run (the trainer's resume is exact: same batches, same noise), so the curve
is that of one --epochs run. A call on some classes and models keeps the curves of the others.

    python -m benchmarks grad2vae_convergence [--classes 0,4,8] [--epochs 10] [--limit N] [--test-limit N]
"""
from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

from benchmarks._harness import Bench, print_table
from benchmarks.grad2vae._shared import CONV_MODELS, DATASET, add_cut_arguments, auroc, overrides, record_part

RESULT = "grad2vae"
SMOKE = ["--classes", "0", "--epochs", "2", "--models", "grad2vae", "--limit", "100", "--test-limit", "100", "--set",
         "model.latent_dim=4"]
NEEDS = ("fashion-mnist",)  # the data its smoke test reads (besides scikit-learn's)


def convergence(classes: list[int], epochs: int, limit: int | None, test_limit: int | None, seed: int,
                runs: Path, models: list[str] | None = None, paper_schedule: bool = False, extra: dict | None = None) -> list[dict]:
    from vaelab.config import deep_merge
    from vaelab.data import load_data
    from vaelab.train import RunConfig, fit

    rows = []
    for c in classes:
        data = None
        for label, (name, model_opts) in CONV_MODELS.items():
            if models is not None and label not in models:
                continue
            # the paper's schedule as a fixed milestone (train.schedule=paper would move it with the
            # growing train.epochs of the epoch-by-epoch runs)
            sched = {"schedule": "step", "step_milestones": [epochs // 2], "step_gamma": 0.01} if paper_schedule else {}
            base = deep_merge({"data": {"name": DATASET, "classes": [c], "limit": limit, "test_limit": test_limit},
                               "model": model_opts, "train": {"progress_bar": False, **sched}, "seed": seed}, extra or {})
            run_dir = runs / "convergence" / f"class{c}-{label}"
            if run_dir.exists():
                import shutil

                shutil.rmtree(run_dir)
            if data is None:
                data = load_data(RunConfig.build(name, base).data, seed)
            train, _, test = data
            seconds = 0.0
            for e in range(1, epochs + 1):
                cfg = RunConfig.build(name, deep_merge(base, {"train": {"epochs": e}}))
                t0 = time.perf_counter()
                model, _ = fit(cfg, run_dir, resume=e > 1, data=data)
                seconds += time.perf_counter() - t0
                auc = auroc(model, train, test, c, seed, cfg.train.eval_batch_size)
                rows.append({"part": "b", "class": c, "model": label, "epoch": e, "auroc": auc, "train_seconds": seconds,
                             "parameters": model.num_parameters(), "epochs": epochs, "limit": limit,
                             "schedule": "paper" if paper_schedule else "constant"})
                print(f"  class {c} {label:<15} epoch {e:>2}: ROC-AUC {auc:.4f} ({seconds:.0f} s)", flush=True)
    return rows


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--classes", default="0,4,8", help="normal classes (default 0,4,8)")
    ap.add_argument("--epochs", type=int, default=10, help="epochs, scored after each (default 10)")
    ap.add_argument("--models", default=None, help=f"which of {','.join(CONV_MODELS)} (default all)")
    ap.add_argument("--paper-schedule", action="store_true", help="lr / 100 after half of --epochs")
    add_cut_arguments(ap)


def main(b: Bench) -> None:
    a = b.args
    # resuming a run epoch by epoch: Lightning's CSV logger warns that the logs folder exists
    warnings.filterwarnings("ignore", ".*exists and is not empty.*")
    t0 = time.perf_counter()
    classes = [int(c) for c in a.classes.split(",") if c.strip()]
    models = [m for m in a.models.split(",") if m] if a.models else None
    rows = convergence(classes, a.epochs, a.limit, a.test_limit, a.seed, b.runs, models, a.paper_schedule, overrides(a))
    print("\n(b) test ROC-AUC after each epoch")
    table = []
    for c in classes:
        for e in range(1, a.epochs + 1):
            row = {"class": c, "epoch": e}
            for r in rows:
                if r["class"] == c and r["epoch"] == e:
                    row[r["model"]] = r["auroc"]
            table.append(row)
    print_table(table, ["class", "epoch", *CONV_MODELS])
    record_part(b, "b", {"convergence": rows}, time.perf_counter() - t0)
