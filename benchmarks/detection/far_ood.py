"""Far out-of-distribution detection: a VAE trained on one set scores another set's test images as
anomalies (Fashion-MNIST -> MNIST, where a raw likelihood fails, and the reverse); ROC-AUC per score.

Each direction's normal test images and anomalous images are split into two halves of draws: the
codec of `complexity` and the perturbation rate of `likelihood_ratio` are chosen on the choosing
half, and every figure reported is from the reporting half. The models are 10-epoch convolutional
VAEs with a discretised logistic likelihood (so -log p(x) is a code length in bits, like the codec's).
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


SMOKE = ["--epochs", "1", "--n-test", "40", "--fit-images", "100", "--background-epochs", "1"]
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


def main(b: Bench) -> None:
    a, runs = b.args, b.runs
    runs.mkdir(parents=True, exist_ok=True)
    import vaelab

    rows = []
    for normal, anomaly in PAIRS:
        run = in_distribution_run(normal, runs, a.epochs)
        model = vaelab.load(run)
        from vaelab.data import DataConfig, load_data

        train = load_data(DataConfig(name=normal), a.seed)[0].images[: a.fit_images]
        choose, report = halves(normal, anomaly, a.n_test, a.seed)
        task = f"{normal}->{anomaly}"
        for name, opts in [*((n, [o]) for n, o in FIXED.items()), *CHOICES.items()]:
            t0 = time.perf_counter()
            cands = [(o, fitted(name, o, model, train, run, a.seed)) for o in opts]
            picked = [(roc_auc(model, s, *choose), o, s) for o, s in cands]
            best_choose, best_opts, best = max(picked, key=lambda r: r[0])
            row = {"task": task, "score": name, "options": best_opts, "roc_auc_choose": best_choose,
                   "roc_auc": roc_auc(model, best, *report), "seconds": time.perf_counter() - t0,
                   "candidates": [{"options": o, "roc_auc_choose": v} for v, o, _ in picked]}
            rows.append(row)
            print(f"{task:<28} {name:<18} {row['roc_auc']:.4f}  {best_opts}", flush=True)
    summary = {}
    for task in {r["task"] for r in rows}:
        mine = [r for r in rows if r["task"] == task]
        summary[task] = {f"{r['score']}_roc_auc": r["roc_auc"] for r in mine}
        corrected = [r for r in mine if r["score"] in CHOICES]
        summary[task]["best_corrected_roc_auc"] = max(r["roc_auc"] for r in corrected)
    print_table(rows, ["task", "score", "roc_auc", "roc_auc_choose", "seconds"])
    b.write(rows, summary=summary, epochs=a.epochs, n_test=a.n_test, fit_images=a.fit_images,
            background_epochs=a.background_epochs)
