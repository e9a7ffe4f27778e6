"""Does a fixed normalised threshold flag the same share of normal images from one model to the next?

The study's rule is "normalised score above 0.3". For each trained run (--trained, e.g. the study VAEs
of `python -m benchmarks one_class --study-seeds 3`, under its --runs) the default score is fitted on the run's training split
(as `vaelab detect` calibrates: the run's data config, its validation part held out) and applied to
the OOD study's representative sets. Then, for each --norm-ranges anchor pair (the
training-score quantiles mapped to 0 and 1, `AutoencoderDetector(norm_range=...)`, `vaelab detect
--norm-range`), it reports the share of normal images flagged at --threshold and the anomalies
caught. The runs are scored once; the anchors only rescale the scores.

    VAELAB_DATA=../shared/data python -m benchmarks threshold_stability --runs DIR --study ood-study.npz \\
        --trained study-vae-e20 study-vae-e20-s1 study-vae-e20-s2
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks._harness import Bench

SMOKE = ["--study", "ood-study-limit500.npz", "--trained", "study-vae-e1-model_conv_channels_32_64-limit500"]
NEEDS = ("mnist",)  # the data its smoke test reads (besides scikit-learn's)
RUNS_OF = "one_class"


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--study", required=True, help="the OOD-study .npz the runs were trained on (a relative path not found "
                                                   "is taken under --runs)")
    ap.add_argument("--trained", nargs="+", required=True, help="run directories (one model each, e.g. one per seed; "
                                                                "relative ones not found are taken under --runs)")
    ap.add_argument("--norm-ranges", default="0,1;0.001,0.999;0.5,0.99;0.5,0.999",
                    help="semicolon-separated LOW,HIGH quantile pairs (default: min-max first)")
    ap.add_argument("--threshold", type=float, default=0.3)


def main(b: Bench) -> None:
    from vaelab.data import load_data
    from vaelab.detect import DEFAULT_SCORE, AutoencoderDetector, load_ood_study
    from vaelab.train import load_run
    from vaelab.train import RunConfig

    a = b.args
    if not b.path(a.study).is_file():
        b.smoke_first("one_class")
    ranges = [tuple(float(q) for q in r.split(",")) for r in a.norm_ranges.split(";")]
    study = load_ood_study(b.path(a.study))
    per_run, t0 = [], time.perf_counter()
    for run in map(b.path, a.trained):
        cfg = RunConfig.load(Path(run) / "config.yaml")
        det = AutoencoderDetector(load_run(run), DEFAULT_SCORE, normalize=False, seed=cfg.seed,
                                  batch_size=cfg.train.eval_batch_size).fit(load_data(cfg.data, cfg.seed)[0])
        train = det.decision_scores_
        sets = {s: (det.raw_scores(study.get(s)), study.anomalies(s)) for s in ("rep1", "rep2")}
        rows = {}
        for lo, hi in ranges:
            a0, a1 = np.quantile(train, [lo, hi])
            row = {"train_flagged": float(((train - a0) / (a1 - a0) > a.threshold).mean())}
            for s, (raw, y) in sets.items():
                n = (raw - a0) / (a1 - a0)
                row[s] = {"normal_flagged": float((n[y == 0] > a.threshold).mean()),
                          "anomalies_caught": int((n[y == 1] > a.threshold).sum()), "anomalies": int(y.sum())}
            rows[f"{lo:g},{hi:g}"] = row
        per_run.append({"run": str(run), "train_max_over_q999": float(train.max() / np.quantile(train, 0.999)),
                        "by_norm_range": rows})
    print(f"share of normal images flagged at {a.threshold} (anomalies caught), per run:")
    summary = {}
    for lo, hi in ranges:
        k = f"{lo:g},{hi:g}"
        for s in ("rep1", "rep2"):
            f = [r["by_norm_range"][k][s]["normal_flagged"] for r in per_run]
            c = [r["by_norm_range"][k][s]["anomalies_caught"] for r in per_run]
            summary.setdefault(k, {})[s] = {"normal_flagged": f, "spread": float(max(f) - min(f)), "anomalies_caught": c}
            print(f"  norm_range {k:12s} {s}: " + "  ".join(f"{x:.3f} ({n})" for x, n in zip(f, c))
                  + f"   spread {max(f) - min(f):.3f}")
    b.write({"summary": summary, "per_run": per_run}, study=str(b.path(a.study)), runs=[str(b.path(r)) for r in a.trained],
            threshold=a.threshold, score=DEFAULT_SCORE, seconds=time.perf_counter() - t0)
