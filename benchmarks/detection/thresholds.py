"""Threshold rules (contamination, f1, mad, iqr, gmm) on the one-class runs: F1, precision, recall, normal flagged.

Threshold rules on the trained one-class runs: F1, precision, recall and the share of normal
images flagged at the thresholds of `contamination` (0.05), `f1`, `mad`, `iqr` and `gmm`
(vaelab.detect.thresholds), for the library's default detector (score `combo`, min-max
normalisation on the training scores).

The runs are those of `python -m benchmarks one_class --runs DIR` (a conv `vae` per class, 20 epochs by
default; --runs defaults to its folder); this benchmark trains nothing. For each (dataset, class) run the detector is fitted on that
class's training images, as `vaelab detect` does. The test set (every class; anomaly = another
class) is split in two halves with a fixed seed: `f1` picks its threshold on the first half (its
labelled validation set), and every rule is reported on the second half only, so the supervised
rule is never scored on the images it was chosen on. The unsupervised rules see the training scores
only.

    VAELAB_DATA=../shared/data python -m benchmarks thresholds --runs /work/runs/oc20 [--datasets fashion-mnist,mnist]
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np

from benchmarks._harness import Bench, print_table

RULES = ("contamination", "f1", "mad", "iqr", "gmm")
CONTAMINATION = 0.05
SPLIT_SEED = 1234  # fixed before any figure was seen
SMOKE = ["--datasets", "digits"]
NEEDS = ("mnist",)  # the data its smoke test reads (besides scikit-learn's)
RUNS_OF = "one_class"


def _metrics(flags: np.ndarray, y: np.ndarray) -> dict:
    tp, fp = int(((flags == 1) & (y == 1)).sum()), int(((flags == 1) & (y == 0)).sum())
    fn = int(((flags == 0) & (y == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"f1": f1, "precision": precision, "recall": recall, "normal_flagged": float(flags[y == 0].mean()),
            "anomalies_share": float(y.mean())}


def one_run(run: Path, score: str) -> dict:
    from vaelab.data import load_data
    from vaelab.detect import AutoencoderDetector
    from vaelab.detect.thresholds import ThresholdFallbackWarning, choose_threshold
    from vaelab.train import RunConfig, load_run

    cfg = RunConfig.load(run / "config.yaml")
    c = int(cfg.data.classes[0])
    model = load_run(run)
    train, _, test = load_data(cfg.data, cfg.seed)
    det = AutoencoderDetector(model, score, contamination=CONTAMINATION, seed=cfg.seed,
                              batch_size=cfg.train.eval_batch_size).fit(train)
    y = (test.labels != c).numpy().astype(np.int64)
    scores = det.decision_function(test, clip=False)
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(y))
    val, rep = perm[: len(y) // 2], perm[len(y) // 2 :]
    out = {"class": c, "n_train": len(train), "n_val": len(val), "n_report": len(rep), "rules": {}}
    for rule in RULES:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ThresholdFallbackWarning)
            thr, info = choose_threshold(rule, det.decision_scores_, scores[val] if rule == "f1" else None,
                                         y[val] if rule == "f1" else None, CONTAMINATION, seed=cfg.seed)
        m = _metrics((scores[rep] > thr).astype(np.int64), y[rep])
        m.update(threshold=float(thr), fallback=info.get("fallback"),
                 warned=[str(w.message) for w in caught if issubclass(w.category, ThresholdFallbackWarning)])
        out["rules"][rule] = m
    return out


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--datasets", default="fashion-mnist,mnist")
    ap.add_argument("--score", default="combo")
    ap.add_argument("--classes", default=None, help="comma list (default: every finished run)")


def finished_runs(folder: Path, classes: str | None) -> list[Path]:
    """The finished (class, seed 0) runs of a one-class protocol's folder, by class."""
    runs = sorted(folder.glob("class*-seed0"), key=lambda p: int(p.name[5:].split("-")[0]))
    runs = [r for r in runs if (r / "result.json").is_file()]  # the protocol writes it when a run is finished
    if classes:
        runs = [r for r in runs if int(r.name[5:].split("-")[0]) in {int(c) for c in classes.split(",")}]
    return runs


def main(b: Bench) -> None:
    a = b.args
    results, rows = {}, []
    for ds in [d.strip() for d in a.datasets.split(",") if d.strip()]:
        runs = finished_runs(b.runs / ds / "runs", a.classes)
        if not runs:
            b.smoke_first("one_class")
            runs = finished_runs(b.runs / ds / "runs", a.classes)
        if not runs:
            raise SystemExit(f"no finished one-class runs under {b.runs / ds / 'runs'}: run `python -m benchmarks one_class "
                             f"--runs {b.runs}` first")
        per_class = []
        for r in runs:
            res = one_run(r, a.score)
            per_class.append(res)
            print(f"{ds} class {res['class']}: " + "  ".join(f"{k} F1 {v['f1']:.3f}" for k, v in res["rules"].items()),
                  flush=True)
        mean = {rule: {k: float(np.mean([p["rules"][rule][k] for p in per_class]))
                       for k in ("f1", "precision", "recall", "normal_flagged")} for rule in RULES}
        for rule in RULES:
            mean[rule]["fallbacks"] = sum(p["rules"][rule]["fallback"] is not None for p in per_class)
            mean[rule]["normal_flagged_max"] = float(max(p["rules"][rule]["normal_flagged"] for p in per_class))
            rows.append({"dataset": ds, "rule": rule, **{k: mean[rule][k] for k in
                                                          ("f1", "precision", "recall", "normal_flagged",
                                                           "normal_flagged_max", "fallbacks")}})
        results[ds] = {"classes": [p["class"] for p in per_class], "mean": mean, "per_class": per_class}
    print_table(rows, ["dataset", "rule", "f1", "precision", "recall", "normal_flagged", "normal_flagged_max", "fallbacks"])
    b.write(results, table=rows, score=a.score, contamination=CONTAMINATION, split_seed=SPLIT_SEED, runs=str(b.runs))
