"""Does the conformal rule keep its false-alarm promise on real scores? Mean and spread over random calibration splits.

A VAE trained on Fashion-MNIST
scores the whole test split (all normal for that run) with the default score. Then, --splits times,
the scores are split at random into n calibration scores and the rest; the threshold of
`threshold_rule="conformal"` at rate alpha is taken from the calibration part, and the share of the
rest above it is that split's false-alarm rate. Theory, for exchangeable scores: its mean is
floor(alpha (n + 1)) / (n + 1) <= alpha, and across splits it spreads as a Beta(n + 1 - k, k) variable
(k = ceil((n + 1)(1 - alpha))) plus the binomial noise of the finite test part.

    VAELAB_DATA=../shared/data OMP_NUM_THREADS=1 python -m benchmarks conformal
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

from benchmarks._harness import Bench, print_table, train_or_reuse

SMOKE = ["--data", "digits", "--limit", "1000", "--epochs", "1", "--splits", "20"]


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--limit", type=int, default=10000, help="training images")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--splits", type=int, default=200)
    ap.add_argument("--n-cal", default="100,1000", help="calibration sizes")
    ap.add_argument("--alphas", default="0.01,0.05,0.1")


def main(b: Bench) -> None:
    a = b.args
    data, limit, epochs, splits = a.data, a.limit, a.epochs, a.splits

    from vaelab.data import load_data
    from vaelab.detect import AutoencoderDetector
    from vaelab.detect.conformal import conformal_threshold
    from vaelab.train import RunConfig, load_run

    run = train_or_reuse("vae", data, epochs, b.runs / f"limit{limit}", [f"data.limit={limit}"])
    t0 = time.perf_counter()
    cfg = RunConfig.load(run / "config.yaml")
    train, _, test = load_data(cfg.data, cfg.seed)
    det = AutoencoderDetector(load_run(run), normalize=False, calibration=0, seed=cfg.seed).fit(train)
    scores = det.raw_scores(test)  # every test image is normal for a run trained on all classes
    rng = np.random.default_rng(0)
    rows = []
    for n in (int(v) for v in a.n_cal.split(",")):
        if n > len(scores) // 2:
            print(f"n_cal {n}: more than half of the {len(scores)} scores; skipped")
            continue
        perms = [rng.permutation(len(scores)) for _ in range(splits)]
        for alpha in (float(v) for v in a.alphas.split(",")):
            k = math.ceil((n + 1) * (1 - alpha) - 1e-9)
            if k > n:
                continue
            fpr = np.array([(scores[p[n:]] > conformal_threshold(scores[p[:n]], alpha)).mean() for p in perms])
            m = len(scores) - n
            ba, bb = n + 1 - k, k  # the conditional false-alarm rate ~ Beta(n + 1 - k, k)
            mean = ba / (ba + bb)
            var_beta = ba * bb / ((ba + bb) ** 2 * (ba + bb + 1))
            # E[f(1 - f)] / m for f ~ Beta: the binomial noise of a test part of m images
            var_binom = (mean - (var_beta + mean ** 2)) / m
            rows.append({"n_cal": n, "alpha": alpha, "splits": splits, "mean_fpr": float(fpr.mean()),
                         "theory_mean": mean, "sd_fpr": float(fpr.std(ddof=1)), "theory_sd": math.sqrt(var_beta + var_binom),
                         "max_fpr": float(fpr.max()), "se_mean": float(fpr.std(ddof=1) / math.sqrt(splits)),
                         "mean_at_most_alpha": bool(fpr.mean() <= alpha + 2 * fpr.std(ddof=1) / math.sqrt(splits))})
    print_table(rows, ["n_cal", "alpha", "mean_fpr", "theory_mean", "sd_fpr", "theory_sd", "max_fpr"])
    b.write(rows, run=str(run), data=data, n_scores=len(scores), score=det.score,
                 seconds=round(time.perf_counter() - t0, 1))

