"""The default detector on the one-class protocol (Fashion-MNIST, MNIST) and the MNIST OOD study: ROC-AUC, PR-AUC.

Anomaly detection with the library's default detector configuration (a conv `vae` trained 20
epochs, score `combo` = mean of the z-scored SSIM error, latent GMM density, encoder-feature kNN
distance and windowed reconstruction error `patch_mse`, i.e. vaelab.detect.DEFAULT_COMBO; see
the detect_scores benchmark for how they were chosen), beside the
plain reconstruction-MSE and negative-ELBO scores of the same models:

1. the one-class protocol (`vaelab.detect.one_class_protocol`, i.e. `vaelab bench one-class`) on
   Fashion-MNIST and MNIST: train on one class, score the whole test set, ROC-AUC per class, with
   the Grad2VAE paper's means beside it (its per-class values are not reproduced here);
2. the OOD study layout built from MNIST (`vaelab data build-ood-study`: 32x32, digits 0-4
   in-distribution, two representative sets of 1,052 images with 5% anomalies): a VAE trained on
   the unlabeled in-distribution set (the one-class models' network: --study-set, STUDY_SET), ROC-AUC / PR-AUC on both representative sets and the
   confusion matrix at the study's normalised threshold 0.3 (`vaelab detect`).

Targets (detection issue): mean ROC-AUC >= 0.94 (Fashion-MNIST), >= 0.975 (MNIST), the 10-class
protocol of one dataset in under 30 minutes on the 2-core machine; >= 0.95 on both study sets.

    VAELAB_DATA=../shared/data python -m benchmarks one_class [--epochs 20] [--seeds 1] [--jobs 1] [--runs DIR] [--study-seeds 1]

Rerunning into the same --runs reuses finished (class, seed) runs and study VAEs. A call's datasets (and its
study, unless --study-epochs 0) replace theirs in one_class.json; the file's other datasets and study are kept,
each with the settings and command that measured it.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import time
from pathlib import Path

from benchmarks._harness import Bench, fit_or_reuse
from benchmarks.detection import _study

SEED_PAPER = {"fashion-mnist": 0.964, "mnist": 0.9823}  # Grad2VAE, Table 1 means (as the issue quotes them)
TARGET = {"fashion-mnist": 0.94, "mnist": 0.975}
SCORES = "combo,mse,nelbo"
# The study VAE gets the network the one-class protocol measured: on 28x28 images the conv VAE has two
# stride-2 stages (32 and 64 channels, a 7x7 map); on the study's 32x32 the automatic choice would add a
# third (4x4). Fixed before its study figures were seen, for consistency with the validated network.
STUDY_SET = ["model.conv_channels=[32,64]"]
SMOKE = ["--datasets", "digits", "--classes", "0,1", "--epochs", "1", "--study-epochs", "1", "--study-limit", "500"]
NEEDS = ("mnist",)  # the data its smoke test reads (besides scikit-learn's)
USES_JOBS = True


def _study_seed(a: argparse.Namespace, runs: Path, path: Path, seed: int) -> dict:
    """Train (or reuse) the study VAE of one seed; its ROC-AUC / PR-AUC on both representative sets."""
    from vaelab.api import detect_run
    from vaelab.config import parse_set
    from vaelab.train import RunConfig

    # study-only overrides name the run, so that a finished run of another network is never reused;
    # seed 0 has no seed suffix (the name earlier runs have)
    suffix = "".join(f"-{re.sub(r'[^A-Za-z0-9]+', '_', o).strip('_')}" for o in a.study_set) + (f"-s{seed}" if seed else "")
    suffix += f"-limit{a.study_limit}" if a.study_limit else ""
    run = runs / f"study-vae-e{a.study_epochs}{suffix}"
    cfg = RunConfig.build(a.model, parse_set(["data.name=npz", f"data.path={path}", f"train.epochs={a.study_epochs}",
                                              "train.progress_bar=false", f"seed={seed}"] + a.set + a.study_set))
    _, seconds = fit_or_reuse(cfg, run)
    out = {"seed": seed, "train_seconds": round(seconds, 1)}
    for split in ("rep1", "rep2"):
        out_dir = runs / f"study-detect-{split}{suffix}"
        done = out_dir / "metrics.json"
        if (out_dir / "report.html").is_file() and done.stat().st_mtime > (run / "model.safetensors").stat().st_mtime:
            m = json.loads(done.read_text())  # an earlier call's detection of this very model: reused
        else:
            if out_dir.exists():
                shutil.rmtree(out_dir)  # of an earlier model, or killed before its report
            _, m = detect_run(run, str(path), split=split, threshold=0.3, out=out_dir)
        out[split] = {k: m[k] for k in ("roc_auc", "pr_auc", "confusion_matrix", "tpr", "fpr", "precision", "f1", "n",
                                        "n_anomalies", "calibration_flagged_fraction") if k in m}
        print(f"study seed {seed} {split}: ROC-AUC {m['roc_auc']:.4f}  PR-AUC {m['pr_auc']:.4f}  confusion at 0.3 "
              f"{m['confusion_matrix']}", flush=True)
    return out


def study(a: argparse.Namespace, runs: Path) -> dict:
    """The study's sets are drawn once (seed 0); --study-seeds VAEs (seeds 0, 1, ...) are trained on
    them. The seed-0 model's figures stay at the top level (as before); with more seeds, ``seeds``
    holds each one's and ``seed_mean`` / ``seed_std`` the ROC-AUC over them."""
    import numpy as np

    path = _study.build(runs / "ood-study.npz", a)
    per_seed = [_study_seed(a, runs, path, s) for s in range(a.study_seeds)]
    out = {"epochs": a.study_epochs, **{k: v for k, v in per_seed[0].items() if k != "seed"}}
    out["meets_target"] = all(out[s]["roc_auc"] >= 0.95 for s in ("rep1", "rep2"))
    if len(per_seed) > 1:
        out["seeds"] = per_seed
        for s in ("rep1", "rep2"):
            v = np.array([r[s]["roc_auc"] for r in per_seed])
            out.setdefault("seed_mean", {})[s] = float(v.mean())
            out.setdefault("seed_std", {})[s] = float(v.std(ddof=1))
            print(f"study {s}: ROC-AUC over {len(v)} seeds {v.mean():.4f} +- {v.std(ddof=1):.4f} "
                  f"(min {v.min():.4f}, max {v.max():.4f})", flush=True)
    return out


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--datasets", default="fashion-mnist,mnist")
    ap.add_argument("--model", default="vae")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--classes", default=None, help="comma list (default: all ten)")
    ap.add_argument("--scores", default=SCORES)
    ap.add_argument("--set", action="append", default=[], help="run-config overrides, e.g. model.latent_dim=32")
    ap.add_argument("--study-epochs", type=int, default=20, help="0: skip the OOD-study part")
    ap.add_argument("--study-set", action="append", default=None,
                    help="run-config overrides for the study VAE only (default: model.conv_channels=[32,64], the "
                         "one-class models' two stride-2 stages; give --study-set none for the 32x32 default's three)")
    ap.add_argument("--study-seeds", type=int, default=1, help="study VAEs to train, seeds 0..N-1, on the same sets "
                                                               "(default 1: seed 0)")
    _study.add_arguments(ap)


def main(b: Bench) -> None:
    a, runs = b.args, b.runs
    a.study_set = STUDY_SET if a.study_set is None else [o for o in a.study_set if o != "none"]

    from vaelab.config import parse_set
    from vaelab.detect import one_class_protocol

    classes = [int(c) for c in a.classes.split(",")] if a.classes else None
    protocol = {}
    for ds in a.datasets.split(","):
        t0 = time.perf_counter()
        r = one_class_protocol(ds, a.model, a.epochs, a.seeds, classes, a.scores, parse_set(a.set), runs / ds, jobs=a.jobs)
        wall = time.perf_counter() - t0
        default = r["scores"][0]
        # training + scoring time of every (class, seed) run, as recorded when it ran (a rerun that
        # reuses finished runs has a short wall time but the same run_seconds)
        run_seconds = sum(x["train_seconds"] + sum(x["score_seconds"].values()) for x in r["runs"])
        # the protocol's time: its wall time, or when runs were reused (short wall) their recorded
        # time shared among the --jobs processes
        protocol_seconds = max(wall, run_seconds / a.jobs)
        protocol[ds] = {"auroc": r["auroc"], "table": r["table"], "wall_seconds": wall, "run_seconds": run_seconds,
                        "protocol_seconds": protocol_seconds,
                        # mean seconds to fit and apply each score to one run (as recorded when it was scored)
                        "score_seconds_per_run": {s: sum(x["score_seconds"][s] for x in r["runs"]) / len(r["runs"])
                                                  for s in r["scores"]},
                        "mean_auroc": {s: r["auroc"][s]["mean"] for s in r["scores"]},
                        "seed_paper_mean": SEED_PAPER.get(ds), "target": TARGET.get(ds),
                        "meets_target": r["auroc"][default]["mean"] >= TARGET.get(ds, 1.0),
                        "under_30_minutes": protocol_seconds < 1800}
        print(f"{ds}: mean ROC-AUC " + ", ".join(f"{s} {v:.4f}" for s, v in protocol[ds]["mean_auroc"].items())
              + f" (seed paper {SEED_PAPER.get(ds)}, target {TARGET.get(ds)}), {run_seconds:.0f} s of runs, {wall:.0f} s wall",
              flush=True)
    for ds in protocol:  # what each dataset's figures were measured with, kept with them
        protocol[ds]["settings"] = {"model": a.model, "epochs": a.epochs, "seeds": a.seeds, "scores": a.scores,
                                    "jobs": a.jobs, "overrides": a.set, "classes": classes, "command": b.command}
    studied = study(a, runs) if a.study_epochs > 0 else None

    def change(payload: dict) -> None:
        """This call's datasets (and study) replace theirs; the file's other datasets and study are kept."""
        res = payload["results"]
        res.setdefault("protocol", {}).update(protocol)
        if studied is not None:
            res["study"] = {**studied, "settings": {"model": a.model, "overrides": a.set, "study_overrides": a.study_set,
                                                    "study_limit": a.study_limit, "command": b.command}}
        payload.update(model=a.model, epochs=a.epochs, seeds=a.seeds, scores=a.scores, jobs=a.jobs, overrides=a.set,
                       study_overrides=a.study_set, classes=classes, study_limit=a.study_limit)

    b.update(change)
