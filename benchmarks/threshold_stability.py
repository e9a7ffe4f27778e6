"""Does a fixed normalised threshold flag the same share of normal images from one model to the
next? The study's rule is "normalised score above 0.3". For each trained run (e.g. the study VAEs
of `benchmarks/one_class.py --study-seeds 3`) the default score is fitted on the run's training split
(as `vaelab detect` calibrates: the run's data config, its validation part held out) and applied to
the OOD study's representative sets. Then, for each --norm-ranges anchor pair (the
training-score quantiles mapped to 0 and 1, `AutoencoderDetector(norm_range=...)`, `vaelab detect
--norm-range`), it reports the share of normal images flagged at --threshold and the anomalies
caught. The runs are scored once; the anchors only rescale the scores.

    VAELAB_DATA=../shared/data python benchmarks/threshold_stability.py --study DIR/ood-study.npz \\
        --runs DIR/study-vae-e20 DIR/study-vae-e20-s1 DIR/study-vae-e20-s2
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--study", required=True, help="the OOD-study .npz the runs were trained on")
    ap.add_argument("--runs", nargs="+", required=True, help="run directories (one model each, e.g. one per seed)")
    ap.add_argument("--norm-ranges", default="0,1;0.001,0.999;0.5,0.99;0.5,0.999",
                    help="semicolon-separated LOW,HIGH quantile pairs (default: min-max first)")
    ap.add_argument("--threshold", type=float, default=0.3)
    ap.add_argument("--name", default="threshold_stability")
    a = ap.parse_args()

    from vaelab.data import load_data
    from vaelab.detect import DEFAULT_SCORE, AutoencoderDetector, load_ood_study
    from vaelab.train import load_run
    from vaelab.train import RunConfig

    ranges = [tuple(float(q) for q in r.split(",")) for r in a.norm_ranges.split(";")]
    study = load_ood_study(a.study)
    per_run, t0 = [], time.perf_counter()
    for run in a.runs:
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
    write_result(a.name, {"summary": summary, "per_run": per_run}, study=a.study, runs=a.runs, threshold=a.threshold,
                 score=DEFAULT_SCORE, seconds=time.perf_counter() - t0)


if __name__ == "__main__":
    main()
