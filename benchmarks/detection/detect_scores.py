"""Which anomaly score: every score and every z-scored combination of them on the one-class runs (how DEFAULT_COMBO was chosen).

Every score of vaelab.detect, and every z-scored combination of up to --max-members of them, on the
trained models of a one-class protocol run (no training here).

For each (class, seed) run under --runs/DATASET/runs/ (what `vaelab bench one-class --out
--runs/DATASET` or the one_class benchmark with the same --runs leaves; its folder by default), each member score is fitted on the run's
training images, its training scores (leave-one-out for the kNN scores) and test scores are kept, and a
combination is scored exactly as the `combo` score does it: each member z-scored with the mean and
standard deviation of its training scores, then averaged. ROC-AUC against "another class" on the whole
test set, mean over the runs of each dataset.

The one-class protocol has one normal class; the OOD study has five, and 5% anomalies. --validate
adds tasks of the study's shape on other images: VAEs trained on the study's layout built from
Fashion-MNIST (`vaelab data build-ood-study --data fashion-mnist`, one file with classes 0-4
in-distribution, one with 5-9), scored on their two representative sets. The objective of a score is
then the mean of (a) its one-class mean over the datasets and (b) its mean ROC-AUC over the
validation sets; without --validate, (a) alone. The library's default was chosen without it: with it
the rule picks ssim+mahalanobis+feature_knn, which the MNIST study scores 0.917 / 0.928 against the
default's 0.946 / 0.961 (both with the three-stage study VAE, `one_class --study-set none`;
benchmarks/results/detect_scores_validate.json; README, "Which score").

It reports each single score (patch_mse at each of --patch-sizes windows; the window with the best
objective joins the combinations), the combinations ranked by objective, the chosen one (the best
that meets both one-class targets) and where the library's DEFAULT_COMBO ranks. This is how the
default is chosen; the OOD study (--study, the VAE the one_class benchmark trains on the MNIST study
layout) is never used to choose: its two representative sets are the held-out check.

    VAELAB_DATA=../shared/data python -m benchmarks detect_scores --runs DIR [--validate RUN ...] [--study DIR/study-vae-e20]

The validation VAEs, as the one_class benchmark trains the study's (add the same --set to both):

    vaelab data build-ood-study --data fashion-mnist --classes 0,1,2,3,4 --out fm-01234.npz   # and 5,6,7,8,9
    vaelab train vae --data npz --set data.path=fm-01234.npz --epochs 20 --seed 0 --out fm-01234-vae
"""
from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np

from benchmarks._harness import Bench

MEMBERS = "mse,bce,ssim,nelbo,mahalanobis,latent_gmm,latent_knn,feature_knn,feature_gmm"
TARGET = {"fashion-mnist": 0.94, "mnist": 0.975}  # the detection issue's one-class targets
SMOKE = ["--datasets", "digits", "--members", "mse,ssim,nelbo", "--patch-sizes", "3", "--max-members", "2",
         "--study", "study-vae-e1-model_conv_channels_32_64-limit500"]
NEEDS = ("mnist",)  # the data its smoke test reads (besides scikit-learn's)
RUNS_OF = "one_class"


def make_member(m: str):
    """A member score by name; 'patch_mse:5' is patch_mse with a 5-pixel window."""
    from vaelab.detect.scores import make_score

    name, _, size = m.partition(":")
    return make_score(name, **({"patch_size": int(size)} if size else {}))


def _key(m: str) -> str:
    return m.replace(":", "_w")


def _cached(cache: Path, stamp: np.ndarray, members: list[str], compute) -> dict[str, np.ndarray]:
    """Arrays of CACHE (tied to the weights' size and mtime) with the members' columns; the
    missing ones are computed by compute(missing) -> {array name: values} and added."""
    have: dict[str, np.ndarray] = {}
    if cache.is_file():
        c = np.load(cache)
        if "stamp" in c.files and np.array_equal(c["stamp"], stamp):
            have = {k: c[k] for k in c.files}
    missing = [m for m in members if f"tr_{_key(m)}" not in have]
    if missing:
        have.update(compute(missing))
        have["stamp"] = stamp
        tmp = cache.with_name(cache.stem + ".tmp.npz")
        np.savez(tmp, **have)
        tmp.replace(cache)
    return have


def _fit_and_score(model, train_images, sets: dict, members: list[str], batch_size: int, seed: int) -> dict[str, np.ndarray]:
    from vaelab.detect.scores import score_images

    out = {}
    for m in members:
        s = make_member(m).fit(model, train_images, batch_size, seed)
        out[f"tr_{_key(m)}"] = s.training_scores(model, train_images, batch_size, seed).numpy()
        for name, images in sets.items():
            out[f"{name}_{_key(m)}"] = score_images(model, s, images, batch_size, seed).numpy()
    return out


def member_scores(run_dir: Path, members: list[str]) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """y (1 = anomaly) of a one-class run's test set and, per member, (training scores, test scores);
    kept in RUN_DIR/detect_scores.npz (tied to the weights file's size and mtime) so that a later
    call reuses them and computes only members it has not seen."""
    from vaelab.data import load_data
    from vaelab.train import load_run
    from vaelab.train import RunConfig

    weights = run_dir / "model.safetensors"
    stamp = np.array([weights.stat().st_size, weights.stat().st_mtime_ns])

    def compute(missing: list[str]) -> dict[str, np.ndarray]:
        cfg = RunConfig.load(run_dir / "config.yaml")
        model = load_run(run_dir)
        train, _, test = load_data(cfg.data, cfg.seed)
        y = (test.labels != cfg.data.classes[0]).numpy().astype(np.int64)
        out = _fit_and_score(model, train.images, {"te": test.images}, missing, cfg.train.eval_batch_size, cfg.seed)
        return {"y": y, **out}

    c = _cached(run_dir / "detect_scores.npz", stamp, members, compute)
    return c["y"], {m: (c[f"tr_{_key(m)}"], c[f"te_{_key(m)}"]) for m in members}


def study_scores(run_dir: Path, members: list[str]) -> dict[str, tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]]:
    """The same on the OOD study: a VAE trained on an OOD-study file (as the one_class benchmark
    trains it), its members fitted on the run's training split (as `vaelab detect` does), scores of
    both representative sets: {'rep1': (y, {member: (train, rep1)}), 'rep2': ...}; cached in
    RUN_DIR/study_scores.npz."""
    from vaelab.data import load_data
    from vaelab.train import load_run
    from vaelab.detect.study import load_ood_study
    from vaelab.train import RunConfig

    weights = run_dir / "model.safetensors"
    stamp = np.array([weights.stat().st_size, weights.stat().st_mtime_ns])
    cfg = RunConfig.load(run_dir / "config.yaml")
    study = load_ood_study(cfg.data.path)

    def compute(missing: list[str]) -> dict[str, np.ndarray]:
        model = load_run(run_dir)
        train = load_data(cfg.data, cfg.seed)[0]
        sets = {r: getattr(study, r).images for r in ("rep1", "rep2")}
        out = _fit_and_score(model, train.images, sets, missing, cfg.train.eval_batch_size, cfg.seed)
        return {**{f"y_{r}": study.anomalies(r) for r in ("rep1", "rep2")}, **out}

    c = _cached(run_dir / "study_scores.npz", stamp, members, compute)
    return {r: (c[f"y_{r}"], {m: (c[f"tr_{_key(m)}"], c[f"{r}_{_key(m)}"]) for m in members}) for r in ("rep1", "rep2")}


def study_by_digit(run_dir: Path, st: dict, combo: tuple[str, ...]) -> dict[str, dict[str, dict[str, float]]]:
    """Per representative set, per anomaly digit (MNIST's label, from the file's provenance indices):
    how many, and the ROC-AUC of ``combo`` on those anomalies against all the normal images."""
    from sklearn.metrics import roc_auc_score

    from vaelab.data import SOURCES
    from vaelab.train import RunConfig

    d = np.load(RunConfig.load(run_dir / "config.yaml").data.path)
    digits_of = SOURCES[str(d["source"]) if "source" in d.files else "mnist"].load("test").labels.numpy()
    out = {}
    for r, key in (("rep1", "index_test"), ("rep2", "index_rep2")):
        y, sc = st[r]
        z = np.mean([(sc[m][1] - sc[m][0].mean()) / max(sc[m][0].std(), 1e-12) for m in combo], 0)
        digits = digits_of[d[key]]
        out[r] = {}
        for dg in sorted(set(digits[y == 1].tolist())):
            sel = (y == 0) | ((y == 1) & (digits == dg))
            out[r][str(dg)] = {"n": int(((y == 1) & (digits == dg)).sum()), "roc_auc": float(roc_auc_score(y[sel], z[sel]))}
    return out


def combo_auroc(y: np.ndarray, sc: dict[str, tuple[np.ndarray, np.ndarray]], combos: list[tuple[str, ...]]) -> dict[str, float]:
    """ROC-AUC of each combination, members z-scored by their training scores and averaged (as `combo`)."""
    from sklearn.metrics import roc_auc_score

    z = {m: (te - tr.mean()) / max(tr.std(), 1e-12) for m, (tr, te) in sc.items()}
    return {"+".join(c): float(roc_auc_score(y, np.mean([z[m] for m in c], 0))) for c in combos}


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--datasets", default="fashion-mnist,mnist")
    ap.add_argument("--members", default=MEMBERS)
    ap.add_argument("--patch-sizes", default="3,5,7,9,11,13,15",
                    help="windows of patch_mse tried as single scores; the best joins the combinations ('' : none)")
    ap.add_argument("--max-members", type=int, default=4)
    ap.add_argument("--top", type=int, default=15, help="combinations listed (default 15)")
    ap.add_argument("--study", help="a study VAE's run directory (the one_class benchmark's RUNS/study-vae-eN; a relative "
                                    "one not found is taken under --runs): report the chosen combinations on both "
                                    "representative sets, as a check")
    ap.add_argument("--validate", nargs="*", default=[],
                    help="VAE run directories trained on the study layout built from Fashion-MNIST: their representative "
                         "sets count in the choice (see above)")


def main(b: Bench) -> None:
    a, runs = b.args, b.runs

    from vaelab.detect import DEFAULT_COMBO
    from vaelab.detect.scores import PatchMSEScore

    base = a.members.split(",")
    patches = [f"patch_mse:{int(w)}" for w in a.patch_sizes.split(",") if w.strip()]
    singles = base + patches
    t0 = time.perf_counter()
    runs_used: dict[str, list[str]] = {}
    scored: dict[str, list] = {}  # dataset -> [(y, member scores)] per run
    for ds in a.datasets.split(","):
        def finished(ds=ds) -> list[Path]:
            return sorted(d for d in (runs / ds / "runs").glob("class*-seed*") if (d / "result.json").is_file())

        dirs = finished()
        if not dirs:
            b.smoke_first("one_class")
            dirs = finished()
        if not dirs:
            raise SystemExit(f"no finished one-class runs under {runs / ds / 'runs'}: run `python -m benchmarks one_class "
                             f"--runs {runs}` first")
        runs_used[ds] = [d.name for d in dirs]
        scored[ds] = []
        for d in dirs:
            y, sc = member_scores(d, singles)
            scored[ds].append((y, sc))
            single = combo_auroc(y, sc, [(m,) for m in singles])
            print(f"{ds} {d.name}: " + ", ".join(f"{m} {v:.4f}" for m, v in single.items()), flush=True)

    validation = {}  # "RUN/rep1" -> (y, member scores)
    validation_single = {}  # "RUN/rep1" -> {single score: ROC-AUC}
    for v in a.validate:
        for r, ysc in study_scores(b.path(v), singles).items():
            key = f"{Path(v).name}/{r}"
            validation[key], validation_single[key] = ysc, combo_auroc(*ysc, [(m,) for m in singles])
            print(f"validation {key}: " + ", ".join(f"{m} {x:.4f}" for m, x in validation_single[key].items()), flush=True)

    def means_of(combos: list[tuple[str, ...]]) -> dict[str, dict[str, float]]:
        """Per combination: the one-class mean of each dataset and, with --validate, 'validation'."""
        per_run = {ds: [combo_auroc(y, sc, combos) for y, sc in scored[ds]] for ds in scored}
        out = {"+".join(c): {ds: float(np.mean([r["+".join(c)] for r in per_run[ds]])) for ds in scored} for c in combos}
        if validation:
            per_set = [combo_auroc(y, sc, combos) for y, sc in validation.values()]
            for c in out:
                out[c]["validation"] = float(np.mean([r[c] for r in per_set]))
        return out

    def overall(v: dict[str, float]) -> float:
        """The objective: the one-class mean over datasets, averaged with the validation mean if any."""
        one_class = float(np.mean([x for k, x in v.items() if k != "validation"]))
        return (one_class + v["validation"]) / 2 if "validation" in v else one_class

    single = means_of([(m,) for m in singles])
    # the window: the patch_mse single score with the best mean over the datasets
    patch = max(patches, key=lambda m: overall(single[m])) if patches else None
    members = base + ([patch] if patch else [])
    combos = [c for k in range(1, a.max_members + 1) for c in itertools.combinations(members, k)]
    means = means_of(combos)
    rank = sorted(means, key=lambda c: -overall(means[c]))
    meets = {c: all(means[c][ds] >= TARGET.get(ds, 0.0) for ds in scored) for c in rank}
    chosen = next((c for c in rank if meets[c]), rank[0])  # the best that meets every target (else the best)

    def as_member(m: str) -> str:  # DEFAULT_COMBO's patch_mse means the library's default window
        return f"patch_mse:{PatchMSEScore().patch_size}" if m == "patch_mse" else m

    default = "+".join(sorted(map(as_member, DEFAULT_COMBO), key=lambda m: members.index(m) if m in members else 99))
    rows = [{"scores": c, "rank": i + 1, **{f"{ds}_mean_auroc": v for ds, v in means[c].items()},
             "objective": overall(means[c]), "meets_targets": meets[c]} for i, c in enumerate(rank)]
    print("\nsingle scores (mean ROC-AUC over the runs):")
    for m in singles:
        print(f"  {m:<14} " + "  ".join(f"{ds} {single[m][ds]:.4f}" for ds in single[m]))
    print(f"\npatch_mse window for the combinations: {patch}")
    print(f"\nbest {a.top} of {len(rows)} combinations of up to {a.max_members}:")
    for r in rows[: a.top]:
        print(f"  {r['rank']:>3}. {r['objective']:.4f}  " + "  ".join(f"{ds} {means[r['scores']][ds]:.4f}" for ds in means[r["scores"]])
              + f"  {r['scores']}" + ("" if r["meets_targets"] else "  (misses a target)"))
    print(f"\nchosen (best mean that meets {TARGET}): {chosen}")
    if default in means:
        print(f"library default {default}: rank {rank.index(default) + 1}, mean {overall(means[default]):.4f}")

    study = None
    if a.study:  # the held-out check: never used to choose
        st = study_scores(b.path(a.study), singles)
        # the library's default only where its members were scored (--members may leave some out)
        shown = list(dict.fromkeys([chosen, *([default] if default in means else []), *rank[:5]] + [m for m in singles]))
        shown = [c for c in shown if c]
        study = {r: combo_auroc(y, sc, [tuple(c.split("+")) for c in shown]) for r, (y, sc) in st.items()}
        study["run"] = str(b.path(a.study))
        print("\nOOD study (held out), ROC-AUC rep1 / rep2:")
        for c in shown:
            print(f"  {study['rep1'][c]:.4f} / {study['rep2'][c]:.4f}  {c}")
        study["by_digit"] = study_by_digit(b.path(a.study), st, tuple(chosen.split("+")))
        for r, rows_ in study["by_digit"].items():
            print(f"  {r}, the chosen combo, each anomaly digit against all normal images: "
                  + ", ".join(f"{d}: n={v['n']} ROC-AUC {v['roc_auc']:.3f}" for d, v in rows_.items()))
    from vaelab.train import RunConfig

    ds0, names = next(iter(runs_used.items()))
    model_cfg = RunConfig.load(runs / ds0 / "runs" / names[0] / "config.yaml").to_dict()["model"]
    b.write({"single": single, "patch_window": patch, "combinations": rows[: max(a.top, 50)],
             "chosen": rows[rank.index(chosen)], "default": rows[rank.index(default)] if default in means else None,
             "study": study, "validation_single": validation_single or None,
             "per_run": {ds: {m: [combo_auroc(y, sc, [(m,)])[m] for y, sc in scored[ds]] for m in singles} for ds in scored}},
            runs=runs_used, validation_runs=a.validate,
            objective="mean of the one-class mean over datasets and the validation mean" if validation else "one-class mean over datasets",
            model=model_cfg, members=members, patch_sizes=patches, max_members=a.max_members, n_combinations=len(rows),
            targets=TARGET, seconds=time.perf_counter() - t0)
