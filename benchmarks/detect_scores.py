"""Which anomaly score: every score of vaelab.detect, and every z-scored combination of up to
--max-members of them, on the trained models of a one-class protocol run (no training here).

For each (class, seed) run under --runs/DATASET/runs/ (what `vaelab bench one-class --out
--runs/DATASET` or benchmarks/one_class.py --runs leaves), each member score is fitted on the run's
training images, its training scores (leave-one-out for the kNN scores) and test scores are kept, and a
combination is scored exactly as the `combo` score does it: each member z-scored with the mean and
standard deviation of its training scores, then averaged. ROC-AUC against "another class" on the whole
test set, mean over the runs of each dataset.

It reports each single score, the combinations ranked by the mean over datasets of their one-class
means, and where the library's DEFAULT_COMBO ranks. This is how the default was chosen; the OOD-study
sets of benchmarks/one_class.py were not used and serve as a check.

    VAELAB_DATA=../shared/data python benchmarks/detect_scores.py --runs DIR [--datasets fashion-mnist,mnist]
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_result  # noqa: E402

MEMBERS = "mse,bce,ssim,nelbo,mahalanobis,latent_gmm,latent_knn,feature_knn,feature_gmm"


def member_scores(run_dir: Path, members: list[str]) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """y (1 = anomaly) of the run's test set and, per member, (training scores, test scores); kept in
    RUN_DIR/detect_scores.npz (tied to the weights file's size and mtime) so that a later call reuses them."""
    cache = run_dir / "detect_scores.npz"
    weights = run_dir / "model.safetensors"
    stamp = np.array([weights.stat().st_size, weights.stat().st_mtime_ns])
    if cache.is_file():
        c = np.load(cache)
        if np.array_equal(c["stamp"], stamp) and all(f"tr_{m}" in c for m in members):
            return c["y"], {m: (c[f"tr_{m}"], c[f"te_{m}"]) for m in members}
    from vaelab.data import load_data
    from vaelab.detect.detector import load_run_model
    from vaelab.detect.scores import make_score, score_images
    from vaelab.train import RunConfig

    cfg = RunConfig.load(run_dir / "config.yaml")
    model = load_run_model(run_dir)
    train, _, test = load_data(cfg.data, cfg.seed)
    y = (test.labels != cfg.data.classes[0]).numpy().astype(np.int64)
    out = {}
    for m in members:
        s = make_score(m).fit(model, train.images, cfg.train.eval_batch_size, cfg.seed)
        out[m] = (s.training_scores(model, train.images, cfg.train.eval_batch_size, cfg.seed).numpy(),
                  score_images(model, s, test.images, cfg.train.eval_batch_size, cfg.seed).numpy())
    tmp = run_dir / "detect_scores.tmp.npz"
    np.savez(tmp, y=y, stamp=stamp, **{f"tr_{m}": v[0] for m, v in out.items()}, **{f"te_{m}": v[1] for m, v in out.items()})
    tmp.replace(cache)
    return y, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", required=True, help="the --runs (or --out parent) of a one-class protocol run")
    ap.add_argument("--datasets", default="fashion-mnist,mnist")
    ap.add_argument("--members", default=MEMBERS)
    ap.add_argument("--max-members", type=int, default=4)
    ap.add_argument("--top", type=int, default=15, help="combinations listed (default 15)")
    a = ap.parse_args()

    from sklearn.metrics import roc_auc_score

    from vaelab.detect import DEFAULT_COMBO

    members = a.members.split(",")
    combos = [c for k in range(1, a.max_members + 1) for c in itertools.combinations(members, k)]
    auroc: dict[str, dict[str, list[float]]] = {}  # dataset -> combo -> per-run AUROC
    runs_used: dict[str, list[str]] = {}
    t0 = time.perf_counter()
    for ds in a.datasets.split(","):
        dirs = sorted(d for d in (Path(a.runs) / ds / "runs").glob("class*-seed*") if (d / "result.json").is_file())
        if not dirs:
            raise SystemExit(f"no finished one-class runs under {Path(a.runs) / ds / 'runs'}")
        runs_used[ds] = [d.name for d in dirs]
        for d in dirs:
            y, sc = member_scores(d, members)
            z = {m: (te - tr.mean()) / max(tr.std(), 1e-12) for m, (tr, te) in sc.items()}
            for c in combos:
                auroc.setdefault(ds, {}).setdefault("+".join(c), []).append(
                    float(roc_auc_score(y, np.mean([z[m] for m in c], 0))))
            print(f"{ds} {d.name}: " + ", ".join(f"{m} {auroc[ds][m][-1]:.4f}" for m in members), flush=True)
    means = {c: {ds: float(np.mean(auroc[ds][c])) for ds in auroc} for c in auroc[next(iter(auroc))]}
    rank = sorted(means, key=lambda c: -np.mean(list(means[c].values())))
    default = "+".join(sorted(DEFAULT_COMBO, key=members.index)) if set(DEFAULT_COMBO) <= set(members) else ""
    rows = [{"scores": c, "rank": rank.index(c) + 1, **{f"{ds}_mean_auroc": v for ds, v in means[c].items()},
             "mean_over_datasets": float(np.mean(list(means[c].values())))} for c in rank]
    print("\nsingle scores (mean ROC-AUC over the runs):")
    for m in members:
        print(f"  {m:<12} " + "  ".join(f"{ds} {means[m][ds]:.4f}" for ds in means[m]))
    print(f"\nbest {a.top} of {len(rows)} combinations of up to {a.max_members}:")
    for r in rows[: a.top]:
        print(f"  {r['rank']:>3}. {r['mean_over_datasets']:.4f}  " + "  ".join(f"{ds} {means[r['scores']][ds]:.4f}" for ds in means[r["scores"]])
              + f"  {r['scores']}")
    if default in means:
        r = rows[rank.index(default)]
        print(f"\nlibrary default {default}: rank {r['rank']}, mean {r['mean_over_datasets']:.4f}")
    write_result("detect_scores", {"single": {m: means[m] for m in members}, "combinations": rows[: max(a.top, 50)],
                                   "default": rows[rank.index(default)] if default in means else None,
                                   "per_run": {ds: {c: auroc[ds][c] for c in (*members, default) if c in auroc[ds]} for ds in auroc}},
                 runs=runs_used, members=members, max_members=a.max_members, n_combinations=len(rows),
                 seconds=time.perf_counter() - t0)


if __name__ == "__main__":
    main()
