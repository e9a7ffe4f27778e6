"""Detection on tasks nobody tuned it on: study-shaped tasks from MNIST, Fashion-MNIST and CIFAR-10, drawn in advance.

Detection on tasks nobody tuned it on (#26): many study-shaped tasks drawn like the OOD study
(`vaelab data build-ood-study`: 5 random in-distribution classes, 32x32, two representative sets of
1,052 images with 5% anomalies), from MNIST and Fashion-MNIST, and CIFAR-10 in colour, each with its own
seed. The CIFAR-10 choosing draws came after the grayscale choices: the colour default's score is chosen
on them alone (``--datasets cifar10``). A candidate
detector configuration (training overrides, detector options) is trained and scored on every task:
ROC-AUC and PR-AUC on both representative sets, and the share of normal images flagged at the
study's fixed threshold 0.3.

The draws are fixed here, before any choice is made: CHOOSING draws are the only ones a candidate
may be chosen on; REPORTING draws are scored only for the configuration chosen (``--reporting``; with ``--datasets``, the one
chosen for those datasets, kept under ``reporting_DATASETS``).
Every (task, candidate) run is kept in --runs and reused, so the script resumes where it stopped.

    VAELAB_DATA=../shared/data python -m benchmarks detect_tasks --runs DIR [--candidate default] [--reporting]
    python -m benchmarks detect_tasks --runs DIR --candidate latent32 --set model.latent_dim=32
    python -m benchmarks detect_tasks --runs DIR --candidate s1 --train s1 --set seed=1   # a second seed
    python -m benchmarks detect_tasks --runs DIR --candidate ens2 --ensemble default,s1  # their mean score
    python -m benchmarks detect_tasks --runs DIR --candidate arnet-head-net --model arnet --no-base-set \
        --set model.latent_dim=64 --set model.head_net=true --score transform_nll --epochs 3 --reporting --datasets cifar10

Each run saves its raw scores (and, for a combo, every member's z-score) beside the model, and a
float32 copy under benchmarks/results/detect_tasks_raw/CANDIDATE/ (with the setting it was scored
under), so an ensemble of candidates is scored without training again, on this machine or another.

writes benchmarks/results/detect_tasks.json (one entry per candidate and draw set, merged with what
the file already holds): for each dataset the mean, worst and spread of ROC-AUC over tasks and both
representative sets (``choosing.mnist.mean_roc_auc``, ``reporting.mnist.min_roc_auc``, ...).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks._harness import Bench
from benchmarks.detection import _study

# (dataset, seed): the seed draws the in-distribution classes and the study's sets. Fixed in advance.
CHOOSING = [("mnist", 101), ("mnist", 102), ("mnist", 103), ("fashion-mnist", 111), ("fashion-mnist", 112),
            ("cifar10", 121), ("cifar10", 122)]  # colour: added for the colour default's score (--datasets cifar10)
REPORTING = [("mnist", 201), ("mnist", 202), ("mnist", 203), ("mnist", 204), ("mnist", 205),
             ("fashion-mnist", 211), ("fashion-mnist", 212), ("fashion-mnist", 213),
             ("cifar10", 221), ("cifar10", 222), ("cifar10", 223)]
THRESHOLD = 0.3  # the study's fixed threshold on the normalised score
# the library's detector configuration on the study's 32 x 32 images (the one_class benchmark's STUDY_SET)
DEFAULT_SET = ["model.conv_channels=[32,64]"]
SMOKE = ["--limit-tasks", "1", "--epochs", "1", "--study-limit", "500"]
NEEDS = ("mnist",)  # the data its smoke test reads (besides scikit-learn's)


# normalisations measured on every task: quantiles of the training scores mapped to 0 and 1
NORMS = {"minmax": (0.0, 1.0), "q0-q99": (0.0, 0.99), "q50-q99": (0.5, 0.99), "q50-q999": (0.5, 0.999),
         "q25-q999": (0.25, 0.999), "q90-q999": (0.9, 0.999), "q0-q999": (0.0, 0.999)}


def norm_name(detector: dict) -> str:
    """The NORMS entry of the candidate's normalisation (the library's default when it sets none)."""
    from vaelab.detect.detector import DEFAULT_NORM_RANGE, resolve_norm_range

    q = tuple(resolve_norm_range(detector.get("norm_range", DEFAULT_NORM_RANGE)))
    return next((n for n, v in NORMS.items() if v == q), f"q{q[0]:g}-q{q[1]:g}")


def normal_flagged(train_raw: np.ndarray, raw: np.ndarray, y: np.ndarray, q: tuple[float, float]) -> float:
    """Share of the normal images (y == 0) above THRESHOLD once the raw scores are mapped by the
    training scores' q[0] and q[1] quantiles to 0 and 1."""
    lo, hi = np.quantile(train_raw, q)
    s = (raw - lo) / (hi - lo if hi > lo else 1.0)
    return float((s[np.asarray(y) == 0] > THRESHOLD).mean())


def classes_of(seed: int) -> list[int]:
    return sorted(int(c) for c in np.random.default_rng(seed).choice(10, size=5, replace=False))


# every run's raw scores, kept beside the results in RAW_DIR = RESULTS/detect_tasks_raw (float32, without the
# members' training z-scores): an ensemble or a rescoring of earlier candidates needs them, and run folders do
# not outlive a machine
KEPT = ("train", "rep1", "rep2", "rep1_labels", "rep2_labels", "member_names", "rep1_members", "rep2_members")


def _kept_raw(raw_dir: Path, candidate: str, dataset: str, seed: int) -> Path:
    return raw_dir / candidate / f"{dataset}-s{seed}.npz"


def _setting(model: str, overrides: list[str], epochs: int, detector: dict, train: str | None) -> str:
    """What a candidate's raw scores depend on, as a string stored with them and checked on reuse."""
    return json.dumps({"model": model, "overrides": overrides, "epochs": epochs, "trained_as": train,
                       "detector": {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(detector.items())}})


def keep_raw(raw_dir: Path, raw: dict, candidate: str, dataset: str, seed: int, setting: str) -> None:
    path = _kept_raw(raw_dir, candidate, dataset, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    small = {k: (raw[k].astype(np.float32) if raw[k].dtype.kind == "f" else raw[k]) for k in KEPT if k in raw}
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, setting=np.array(setting), **small)
    tmp.replace(path)


def kept_raw(raw_dir: Path, candidate: str, dataset: str, seed: int, setting: str | None = None) -> dict | None:
    """The raw scores of ``candidate`` on a draw, kept by an earlier call (None: none, or of another setting)."""
    path = _kept_raw(raw_dir, candidate, dataset, seed)
    if not path.is_file():
        return None
    raw = dict(np.load(path))
    if setting is not None and str(raw.pop("setting")) != setting:
        return None
    return raw


def run_task(dataset: str, seed: int, candidate: str, overrides: list[str], epochs: int, runs: Path,
             detector: dict, a: argparse.Namespace, raw_dir: Path, train: str | None = None, model: str = "vae") -> dict:
    """One draw: its study built (A's --study-limit), the candidate trained on it and scored."""
    from vaelab.config import parse_set
    from vaelab.train import RunConfig, fit

    task = runs / f"{dataset}-s{seed}" if not a.study_limit else runs / f"{dataset}-s{seed}-limit{a.study_limit}"
    task.mkdir(parents=True, exist_ok=True)
    study = _study.build(task / "study.npz", a, seed, classes_of(seed), dataset)
    run = task / f"{train or candidate}-e{epochs}"  # the trained model, shared by candidates that only score differently
    done = run / f"task_result-{candidate}.json"
    if done.is_file():
        return json.loads(done.read_text())
    setting = _setting(model, overrides, epochs, detector, train)
    kept = kept_raw(raw_dir, candidate, dataset, seed, setting)
    if kept is not None:  # scored by an earlier call whose run folder is gone: its kept raw scores
        return task_metrics(dataset, seed, candidate, kept, detector)
    # fit writes train_seconds when it returns (runs of the API's train job have metrics.json): a finished model is
    # reused as it is, never resumed again (which would rewrite its weights and its training time)
    if not (run / "train_seconds").is_file() and not (run / "metrics.json").is_file():
        resume = (run / "checkpoints" / "last.ckpt").is_file()
        cfg = RunConfig.build(model, parse_set(["data.name=npz", f"data.path={study}", f"train.epochs={epochs}",
                                                "train.progress_bar=false", "seed=0", *overrides]))
        t0 = time.perf_counter()
        fit(cfg, run, resume=resume)
        (run / "train_seconds").write_text(f"{time.perf_counter() - t0:.1f}\n")
    from vaelab.data import load_data
    import torch

    from vaelab.detect import DEFAULT_SCORE, AutoencoderDetector, load_detection_set
    from vaelab.detect.detector import as_images
    from vaelab.detect.scores import score_images

    # one fit on the training split with raw scores: every normalisation is a monotone map of them, so
    # the ROC-AUC is the same under all, and each one's share of normal images flagged at THRESHOLD
    # is computed from the same raw scores
    rc = RunConfig.load(run / "config.yaml")
    opts = {k: v for k, v in detector.items() if k != "norm_range"}
    # the score is fitted on the training split of seed 0 whatever the model's seed, so that the
    # members of an ensemble (--ensemble) have training scores on the same images
    det = AutoencoderDetector(str(run), opts.pop("score", DEFAULT_SCORE), normalize=False, seed=rc.seed,
                              batch_size=rc.train.eval_batch_size, **opts).fit(load_data(rc.data, 0)[0])
    raw = {"train": det.decision_scores_}
    combo = getattr(det.score_, "members", None)
    if combo is not None:  # each member's z-score (the combo is their mean): how members weigh, from one fit
        raw["member_names"] = np.array([m.spec() for m in combo])
        raw["train_members"] = ((det.score_.train_scores_ - det.score_.mean_) / det.score_.std_).numpy()
    for split in ("rep1", "rep2"):
        target, y, _ = load_detection_set(str(study), rc.data, split)
        raw[split], raw[f"{split}_labels"] = det.raw_scores(target), y
        if combo is not None:
            cols = torch.stack([score_images(det.model_, m, as_images(target), det.batch_size, det.seed) for m in combo], 1)
            raw[f"{split}_members"] = ((cols - det.score_.mean_) / det.score_.std_).numpy()
    np.savez_compressed(run / f"raw_scores-{candidate}.npz", **raw)
    keep_raw(raw_dir, raw, candidate, dataset, seed, setting)
    out = task_metrics(dataset, seed, candidate, raw, detector)
    done.write_text(json.dumps(out, indent=2))
    return out


def task_metrics(dataset: str, seed: int, candidate: str, raw: dict, detector: dict) -> dict:
    """ROC-AUC, PR-AUC and the share of normal images flagged on both representative sets, from
    the raw scores of the training split and of the two sets."""
    from vaelab.detect import evaluate_detection

    train_raw = raw["train"]
    out = {"dataset": dataset, "seed": seed, "classes": classes_of(seed), "candidate": candidate}
    for split in ("rep1", "rep2"):
        r, y = raw[split], raw[f"{split}_labels"]
        m = evaluate_detection(y, r, float(np.quantile(train_raw, 0.9)))
        out[split] = {"roc_auc": m["roc_auc"], "pr_auc": m["pr_auc"],
                      "normal_flagged_by_norm": {name: normal_flagged(train_raw, r, y, q) for name, q in NORMS.items()}}
        out[split]["normal_flagged"] = out[split]["normal_flagged_by_norm"][norm_name(detector)]
    return out


def ensemble_task(dataset: str, seed: int, candidate: str, members: list[str], epochs: int, runs: Path,
                  detector: dict, raw_dir: Path) -> dict:
    """A candidate whose score is the mean of the raw scores of other candidates (each a combo of
    z-scores, so on one scale): the detector's ``n_models`` ensemble, from the members' saved runs."""
    task = runs / f"{dataset}-s{seed}"
    raws = []
    for m in members:
        found = sorted(task.glob(f"*-e{epochs}/raw_scores-{m}.npz"))
        kept = kept_raw(raw_dir, m, dataset, seed) if len(found) != 1 else None
        if len(found) != 1 and kept is None:
            raise SystemExit(f"ensemble member {m!r} on {task.name}: {len(found)} saved score files and none kept in "
                             f"{raw_dir}; run the member candidate on these draws first")
        raws.append(dict(np.load(found[0])) if kept is None else kept)
    raw = {k: np.mean([r[k] for r in raws], 0) for k in ("train", "rep1", "rep2")}
    for split in ("rep1", "rep2"):
        raw[f"{split}_labels"] = raws[0][f"{split}_labels"]
        if any(not np.array_equal(r[f"{split}_labels"], raw[f"{split}_labels"]) for r in raws):
            raise SystemExit(f"ensemble members scored different {split} sets on {task.name}")
    return task_metrics(dataset, seed, candidate, raw, detector)


def summarise(rows: list[dict]) -> dict:
    out = {}
    for ds in sorted({r["dataset"] for r in rows}):
        auc = np.array([r[s]["roc_auc"] for r in rows if r["dataset"] == ds for s in ("rep1", "rep2")])
        pr = np.array([r[s]["pr_auc"] for r in rows if r["dataset"] == ds for s in ("rep1", "rep2")])
        fl = np.array([r[s]["normal_flagged"] for r in rows if r["dataset"] == ds for s in ("rep1", "rep2")])
        out[ds] = {"tasks": sum(r["dataset"] == ds for r in rows), "mean_roc_auc": float(auc.mean()),
                   "min_roc_auc": float(auc.min()), "std_roc_auc": float(auc.std()), "mean_pr_auc": float(pr.mean()),
                   "min_pr_auc": float(pr.min()), "normal_flagged_min": float(fl.min()), "normal_flagged_max": float(fl.max()),
                   "normal_flagged_by_norm": {
                       n: {"min": float(min(r[s]["normal_flagged_by_norm"][n] for r in rows if r["dataset"] == ds
                                            for s in ("rep1", "rep2"))),
                           "max": float(max(r[s]["normal_flagged_by_norm"][n] for r in rows if r["dataset"] == ds
                                            for s in ("rep1", "rep2")))} for n in NORMS}}
    return out


def tables(results: dict) -> str:
    """Markdown tables of detect_tasks.json: one row per (draw set, candidate, dataset), and the
    share of normal images flagged at THRESHOLD under each normalisation."""
    lines = ["| draws | candidate | dataset | tasks | mean ROC-AUC | min ROC-AUC | std | mean PR-AUC | normal flagged |",
             "|---|---|---|---|---|---|---|---|---|"]
    norms = ["| draws | candidate | dataset | " + " | ".join(NORMS) + " |", "|---|---|---|" + "---|" * len(NORMS)]
    for which in ("choosing", "reporting"):
        for cand, entries in results.get("candidates", {}).items():
            e = entries.get(which)
            if not e:
                continue
            for ds in ("mnist", "fashion-mnist", "cifar10"):
                if ds not in e:
                    continue
                v = e[ds]
                lines.append(f"| {which} | {cand} | {ds} | {v['tasks']} | {v['mean_roc_auc']:.4f} | {v['min_roc_auc']:.4f} | "
                             f"{v['std_roc_auc']:.4f} | {v['mean_pr_auc']:.3f} | {v['normal_flagged_min']:.1%}-"
                             f"{v['normal_flagged_max']:.1%} |")
                norms.append(f"| {which} | {cand} | {ds} | " + " | ".join(
                    f"{v['normal_flagged_by_norm'][n]['min']:.1%}-{v['normal_flagged_by_norm'][n]['max']:.1%}" for n in NORMS) + " |")
    out = "\n".join(lines) + "\n\n" + "\n".join(norms)
    weights = results.get("classifier_weights")
    if weights:  # --weigh: the classifier members' weights in the two-seed ensemble, choosing draws
        rows = ["| w_E (class_energy) | w_H (class_entropy) | MNIST mean / min | Fashion-MNIST mean / min | |",
                "|---|---|---|---|---|"]
        for k, v in weights["summary"].items():
            note = "**chosen**" if k == weights["chosen"] else ("" if k in weights["allowed"] else "Fashion-MNIST below the floor")
            rows.append(f"| {v['w_energy']} | {v['w_entropy']} | {v['mnist']['mean_roc_auc']:.4f} / {v['mnist']['min_roc_auc']:.4f} | "
                        f"{v['fashion-mnist']['mean_roc_auc']:.4f} / {v['fashion-mnist']['min_roc_auc']:.4f} | {note} |")
        out += "\n\n" + "\n".join(rows)
    return out


# --weigh (docs/results.md, "The classifier members in the two-seed ensemble"): the combo's four members plus
# w_E x class_energy plus w_H x class_entropy, for each (w_E, w_H), in the ensemble of the two seeds' ssvae
# models, from the member z-scores kept on the choosing draws. Per seed, where each member's z-scores are kept:
# (candidate, column) of the four shared members, of the energy and of the log entropy
WEIGHTS = [(0, 2), (1, 1), (2, 0), (1, 2), (2, 1), (2, 2), (0, 1), (1, 0)]
WEIGH_SOURCES = {0: (("ssvae-2E", slice(0, 4)), ("ssvae-2E", 4), ("ssvae-2logH", 4)),
                 1: (("ssvae-2E2H-s1", slice(0, 4)), ("ssvae-2E2H-s1", 4), ("ssvae-2E2H-s1", 6))}
WEIGH_MEMBERS = ("class_energy", "class_entropy")


def weigh_classifier_members(raw_dir: Path) -> dict:
    """The rule fixed before any reporting score of it: the weighting with the highest MNIST worst set on the
    choosing draws, among those whose Fashion-MNIST mean is within 0.01 of (0, 2)'s (a tie within 0.002 goes
    to the higher MNIST mean). ROC-AUC only: the combo's training scores are not kept per member."""
    from sklearn.metrics import roc_auc_score

    def members(seed: int, ds: str, task_seed: int, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One seed's four shared members, energy and log entropy (z-scores) on a set, and its labels."""
        cols = []
        for which, (cand, col) in enumerate(WEIGH_SOURCES[seed]):
            raw = kept_raw(raw_dir, cand, ds, task_seed)
            if raw is None:
                raise SystemExit(f"no kept scores of {cand} on {ds} seed {task_seed}: run that candidate on the choosing draws first")
            if which and not str(raw["member_names"][col]).startswith(WEIGH_MEMBERS[which - 1]):
                raise SystemExit(f"{cand} {ds}-s{task_seed}: column {col} holds {raw['member_names'][col]}, not {WEIGH_MEMBERS[which - 1]}")
            cols.append(raw[f"{split}_members"][:, col].astype(np.float64))
        return (*cols, raw[f"{split}_labels"])

    # each set's member scores read once, then every weighting combined from them
    sets = {(ds, task_seed, split): [members(s, ds, task_seed, split) for s in WEIGH_SOURCES]
            for ds, task_seed in CHOOSING for split in ("rep1", "rep2")}
    rows = []
    for w_e, w_h in WEIGHTS:
        for (ds, task_seed, split), per_seed in sets.items():
            combos = [(base.sum(1) + w_e * energy + w_h * entropy) / (4 + w_e + w_h) for base, energy, entropy, _ in per_seed]
            y = per_seed[0][3]
            rows.append({"w_energy": w_e, "w_entropy": w_h, "dataset": ds, "seed": task_seed, "split": split,
                         "roc_auc": float(roc_auc_score(y, np.mean(combos, 0))),
                         **{f"roc_auc_seed{s}": float(roc_auc_score(y, c)) for s, c in zip(WEIGH_SOURCES, combos)}})
    summary = {}
    for w_e, w_h in WEIGHTS:
        key = f"E{w_e}H{w_h}"
        summary[key] = {"w_energy": w_e, "w_entropy": w_h}
        for ds in ("mnist", "fashion-mnist"):
            v = [r["roc_auc"] for r in rows if (r["w_energy"], r["w_entropy"], r["dataset"]) == (w_e, w_h, ds)]
            summary[key][ds] = {"mean_roc_auc": float(np.mean(v)), "min_roc_auc": float(np.min(v))}
    floor = summary["E0H2"]["fashion-mnist"]["mean_roc_auc"] - 0.01
    allowed = [k for k, v in summary.items() if v["fashion-mnist"]["mean_roc_auc"] >= floor]
    best = max(v["mnist"]["min_roc_auc"] for k, v in summary.items() if k in allowed)
    tied = [k for k in allowed if summary[k]["mnist"]["min_roc_auc"] >= best - 0.002]
    chosen = max(tied, key=lambda k: summary[k]["mnist"]["mean_roc_auc"])
    return {"rule": "highest MNIST worst set on the choosing draws, Fashion-MNIST mean within 0.01 of E0H2's, ties "
                    "within 0.002 to the higher MNIST mean", "sources": {s: [list(map(str, x)) for x in v] for s, v in WEIGH_SOURCES.items()},
            "tasks": rows, "summary": summary, "allowed": allowed, "chosen": chosen}


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--table", action="store_true", help="print the Markdown tables of detect_tasks.json and stop")
    ap.add_argument("--candidate", default="default", help="a name for this configuration (its runs and JSON entry)")
    ap.add_argument("--set", action="append", default=[], help="training overrides of the candidate")
    ap.add_argument("--train", default=None, help="reuse the models trained for this candidate (same --set and "
                                                    "--epochs); the candidate then differs only in how it scores")
    ap.add_argument("--ensemble", default=None, help="comma-separated candidates already run on these draws: this "
                                                      "candidate's score is the mean of their raw scores (n_models)")
    ap.add_argument("--score", default=None, help="the detector's score (default: the library's)")
    ap.add_argument("--combo", default=None, help="comma-separated members of the combo score")
    ap.add_argument("--norm-range", default=None, help="LOW,HIGH quantile anchors of the normalised score, or a "
                                                         "name (minmax, default)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--no-base-set", action="store_true", help="train without the study VAE's network setting "
                                                                "(DEFAULT_SET): a model configured as measured elsewhere, e.g. arnet's")
    ap.add_argument("--model", default="vae", help="the model trained on each task (ssvae: semi-supervised on the "
                                                   "study's labelled set, and the default combo adds its classifier's members)")
    ap.add_argument("--reporting", action="store_true", help="score the reporting draws (only for the chosen candidate)")
    ap.add_argument("--limit-tasks", type=int, default=None, help="smoke test: the first N draws only")
    ap.add_argument("--weigh", action="store_true", help="compare the classifier members' weights in the two-seed ensemble "
                                                          "from the kept member z-scores (choosing draws) and record the choice")
    ap.add_argument("--datasets", default=None, help="comma-separated: only these datasets' draws (the other draws' "
                                                     "rows already in detect_tasks.json for this candidate are kept)")
    _study.add_arguments(ap)


def main(b: Bench) -> None:
    a = b.args
    raw_dir = b.results / "detect_tasks_raw"
    if a.table:
        print(tables(b.previous()["results"]))
        return
    if a.weigh:
        out = weigh_classifier_members(raw_dir)
        for k, v in out["summary"].items():
            print(f"{k}: MNIST {v['mnist']['mean_roc_auc']:.4f} / {v['mnist']['min_roc_auc']:.4f}, Fashion-MNIST "
                  f"{v['fashion-mnist']['mean_roc_auc']:.4f} / {v['fashion-mnist']['min_roc_auc']:.4f}"
                  f"{'' if k in out['allowed'] else '  (Fashion-MNIST below the floor)'}")
        print(f"chosen: {out['chosen']}")
        results = b.previous()["results"]
        results["classifier_weights"] = out
        b.write(results, threshold=THRESHOLD, choosing_draws=CHOOSING, reporting_draws=REPORTING)
        return
    draws = REPORTING if a.reporting else CHOOSING
    if a.datasets:
        draws = [d for d in draws if d[0] in a.datasets.split(",")]
    draws = draws[: a.limit_tasks] if a.limit_tasks else draws
    detector = {}
    if a.score:
        detector["score"] = a.score
    if a.combo:
        detector["combo"] = a.combo.split(",")
    if a.norm_range:
        detector["norm_range"] = (a.norm_range if a.norm_range[0].isalpha()
                                  else tuple(float(v) for v in a.norm_range.split(",")))
    base = [] if a.no_base_set else DEFAULT_SET
    rows = []
    for ds, seed in draws:
        if a.ensemble:
            r = ensemble_task(ds, seed, a.candidate, a.ensemble.split(","), a.epochs, b.runs, detector, raw_dir)
        else:
            r = run_task(ds, seed, a.candidate, base + a.set, a.epochs, b.runs, detector, a, raw_dir, a.train, a.model)
        rows.append(r)
        print(f"{ds} seed {seed} classes {r['classes']}: ROC-AUC {r['rep1']['roc_auc']:.4f} / {r['rep2']['roc_auc']:.4f}, "
              f"normal flagged {r['rep1']['normal_flagged']:.2%} / {r['rep2']['normal_flagged']:.2%}", flush=True)
    which = "reporting" if a.reporting else "choosing"
    results = b.previous().get("results", {}) if not a.limit_tasks else {}
    kept = results.get("candidates", {}).get(a.candidate, {}).get(which, {})
    if a.datasets and kept.get("overrides") == base + a.set and kept.get("epochs") == a.epochs:
        ran = {(r["dataset"], r["seed"]) for r in rows}  # this call's draws replace theirs; the rest are kept
        rows = [r for r in kept["tasks"] if (r["dataset"], r["seed"]) not in ran] + rows
    summary = summarise(rows)
    for ds, s in summary.items():
        print(f"{which} {ds}: mean ROC-AUC {s['mean_roc_auc']:.4f}, min {s['min_roc_auc']:.4f}, normal flagged "
              f"{s['normal_flagged_min']:.1%}-{s['normal_flagged_max']:.1%}")
    entry = {"candidate": a.candidate, "model": a.model, "trained_as": a.train or a.candidate, "ensemble_of": a.ensemble.split(",") if a.ensemble else None, "overrides": base + a.set, "detector": {k: list(v) if isinstance(v, tuple) else v
                                                                                      for k, v in detector.items()},
             "epochs": a.epochs, "tasks": rows, **summary}
    results.setdefault("candidates", {}).setdefault(a.candidate, {})[which] = entry
    if a.reporting:  # the chosen configuration's reporting draws: reporting.mnist.mean_roc_auc, ...; one chosen
        # for some datasets only (--datasets) under its own key, e.g. reporting_cifar10.cifar10.mean_roc_auc
        results["reporting" + (f"_{a.datasets.replace(',', '_')}" if a.datasets else "")] = entry
    # a cut of the draws is never merged into the results of whole ones
    b.write(results, name=None if not a.limit_tasks else f"{a.name}_limit{a.limit_tasks}", threshold=THRESHOLD,
            choosing_draws=CHOOSING, reporting_draws=REPORTING)
