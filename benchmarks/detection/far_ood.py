"""Far out-of-distribution detection: a VAE trained on one set scores another set's test images as
anomalies (Fashion-MNIST -> MNIST, where a raw likelihood fails, and the reverse); ROC-AUC per score.

Each direction's normal test images and anomalous images are split into two halves of draws: the
codec of `complexity` and the perturbation rate of `likelihood_ratio` are chosen on the choosing
half, and every figure reported is from the reporting half. The models are 10-epoch convolutional
VAEs with a discretised logistic likelihood (so -log p(x) is a code length in bits, like the codec's).
With --hvae, a three-level hierarchical VAE (`hvae`, the same likelihood) is trained on the normal
set too, and its `nelbo` and `llr` (LLR>k, Havtorn et al. 2021; k chosen on the choosing half) are
reported beside them; `--part hvae` adds those rows to the results file without scoring the VAEs again.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._harness import Bench, print_table, train_or_reuse

PAIRS = (("fashion-mnist", "mnist"), ("mnist", "fashion-mnist"))
FIXED = {"nelbo": {}, "mse": {}, "combo": {}}
CHOICES = {"complexity": [{"codec": "png", "codec_level": 9}, {"codec": "webp", "codec_level": 6}],
           "likelihood_ratio": [{"perturb_rate": 0.1}, {"perturb_rate": 0.3}]}


HVAE = ["model.likelihood=dlogistic", "model.n_mix=1", "model.levels=3"]
HVAE_SCORES = {"nelbo": [{}], "llr": [{"k": 1}, {"k": 2}]}
CORRECTED = ("complexity", "likelihood_ratio", "llr")


SMOKE = ["--epochs", "1", "--n-test", "40", "--fit-images", "100", "--background-epochs", "1", "--hvae", "fashion-mnist"]
NEEDS = ("mnist", "fashion-mnist")


def in_distribution_run(data: str, runs: Path, epochs: int) -> Path:
    return train_or_reuse("vae", data, epochs, runs, ["model.likelihood=dlogistic", "model.n_mix=1"], name=f"{data}-vae")


def halves(normal: str, anomaly: str, n: int, seed: int):
    """[(images, labels) to choose on, (images, labels) to report on]: n normal test images and n anomalies, halved."""
    from vaelab.data import DataConfig, load_data

    test = load_data(DataConfig(name=normal), seed)[2].images
    other = load_data(DataConfig(name=anomaly), seed)[2].images
    g = torch.Generator().manual_seed(seed)
    a = test[torch.randperm(len(test), generator=g)[:n]]
    b = other[torch.randperm(len(other), generator=g)[:n]]
    out = []
    for part in (slice(0, n // 2), slice(n // 2, n)):
        out.append((torch.cat([a[part], b[part]]), np.r_[np.zeros(len(a[part])), np.ones(len(b[part]))]))
    return out


def fitted(name: str, options: dict, model, train: torch.Tensor, cache: Path, seed: int):
    """The score fitted on the training images; a likelihood ratio's background model is kept in ``cache``."""
    from safetensors.torch import load_file, save_file

    from vaelab.detect.scores import make_score

    score = make_score(name, **options)
    bg = cache / ("background-" + "-".join(f"{k}{v}" for k, v in options.items()) + ".safetensors")
    if name == "likelihood_ratio" and bg.is_file():
        score.background_state_ = load_file(str(bg))["state"]
    score.fit(model, train, 500, seed)
    if name == "likelihood_ratio" and not bg.is_file():
        save_file({"state": score.background_state_}, str(bg))
    return score


def roc_auc(model, score, x, y) -> float:
    from sklearn.metrics import roc_auc_score

    from vaelab.detect.scores import score_images

    return float(roc_auc_score(y, score_images(model, score, x, 500).numpy()))


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--n-test", type=int, default=4000, help="normal and anomalous test images per direction")
    ap.add_argument("--fit-images", type=int, default=20000, help="training images the scores fit on")
    ap.add_argument("--background-epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hvae", default="", metavar="SETS",
                    help="comma-separated normal sets (fashion-mnist, mnist) on which an hvae is trained too, for llr")
    ap.add_argument("--hvae-epochs", type=int, default=None, help="the hvae's epochs (default --epochs)")
    ap.add_argument("--part", choices=("all", "hvae"), default="all",
                    help="hvae: only the hvae rows, merged into the results file (the VAEs' rows kept)")


def choose_and_report(model, name: str, opts: list[dict], train, choose, report, cache: Path, seed: int) -> dict:
    """The score fitted with each option set, the best on the choosing half, its ROC-AUC on the reporting half."""
    t0 = time.perf_counter()
    cands = [(o, fitted(name, o, model, train, cache, seed)) for o in opts]
    picked = [(roc_auc(model, s, *choose), o, s) for o, s in cands]
    best_choose, best_opts, best = max(picked, key=lambda r: r[0])
    return {"score": name, "options": best_opts, "roc_auc_choose": best_choose, "roc_auc": roc_auc(model, best, *report),
            "seconds": time.perf_counter() - t0, "candidates": [{"options": o, "roc_auc_choose": v} for v, o, _ in picked]}


def main(b: Bench) -> None:
    a, runs = b.args, b.runs
    runs.mkdir(parents=True, exist_ok=True)
    import vaelab
    from vaelab.data import DataConfig, load_data

    hvae_sets = [x.strip() for x in a.hvae.split(",") if x.strip()]
    rows = []
    for normal, anomaly in PAIRS:
        choose, report = halves(normal, anomaly, a.n_test, a.seed)
        train = load_data(DataConfig(name=normal), a.seed)[0].images[: a.fit_images]
        task = f"{normal}->{anomaly}"
        models = ([] if a.part == "hvae" else [("vae", in_distribution_run(normal, runs, a.epochs),
                                                 [*((n, [o]) for n, o in FIXED.items()), *CHOICES.items()])])
        if normal in hvae_sets:
            run = train_or_reuse("hvae", normal, a.hvae_epochs or a.epochs, runs, HVAE, name=f"{normal}-hvae")
            models.append(("hvae", run, list(HVAE_SCORES.items())))
        for kind, run, scores in models:
            model = vaelab.load(run)
            for name, opts in scores:
                row = {"task": task, "model": kind, **choose_and_report(model, name, opts, train, choose, report, run, a.seed)}
                rows.append(row)
                print(f"{task:<28} {kind:<5} {name:<18} {row['roc_auc']:.4f}  {row['options']}", flush=True)
    print_table(rows, ["task", "model", "score", "roc_auc", "roc_auc_choose", "seconds"])

    def change(payload: dict) -> None:
        old = payload["results"] if isinstance(payload["results"], list) else []
        kept = [r for r in old if a.part == "hvae" and r.get("model", "vae") != "hvae"]
        payload["results"] = all_rows = kept + rows
        summary = {}
        for task in sorted({r["task"] for r in all_rows}):
            mine = [r for r in all_rows if r["task"] == task]
            summary[task] = {("" if r.get("model", "vae") == "vae" else f"{r['model']}_") + f"{r['score']}_roc_auc": r["roc_auc"]
                             for r in mine}
            corrected = [r for r in mine if r["score"] in CORRECTED]
            summary[task]["best_corrected_roc_auc"] = max(r["roc_auc"] for r in corrected)
        payload["summary"] = summary
        payload.update(epochs=a.epochs, n_test=a.n_test, fit_images=a.fit_images, background_epochs=a.background_epochs)
        if hvae_sets:
            payload.update(hvae=HVAE, hvae_epochs=a.hvae_epochs or a.epochs, hvae_sets=hvae_sets)

    b.update(change)
