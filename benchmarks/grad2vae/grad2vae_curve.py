"""Grad2VAE's paper convergence figure: test ROC-AUC after every epoch of 100, two Fashion-MNIST classes, grad2vae and vae.

Part (f) of the grad2vae experiment (results: grad2vae_curve.json): --classes (default shirt and
pullover, the hardest two) of Fashion-MNIST as the normal class, every training image, --epochs
(default 100) at the paper's settings, for grad2vae and the vae (--models), the test ROC-AUC after
every epoch by nelbo and mse and by the default combo after every --combo-every-th; every scored
epoch is written at once, and a killed call resumes from the last one while --runs is there. One
process per class runs the classes side by side. --figure PNG draws grad2vae_curve.json's curves and stops.

    python -m benchmarks grad2vae_curve --runs DIR [--classes 6,2] [--epochs 100]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks._harness import Bench
from benchmarks.grad2vae._shared import CONV_MODELS, DATASET, add_cut_arguments, overrides

SMOKE = ["--classes", "0", "--models", "grad2vae", "--epochs", "2", "--combo-every", "1", "--limit", "100",
         "--test-limit", "100", "--set", "model.latent_dim=4"]
NEEDS = ("fashion-mnist",)  # the data its smoke test reads (besides scikit-learn's)


CURVE_SCORES = ("nelbo", "mse")  # (f) scored after every epoch; the default combo every --curve-combo-every


def paper_curve(b: Bench, classes: list[int], models: list[str], epochs: int, combo_every: int, limit: int | None,
                test_limit: int | None, seed: int, extra: dict | None = None) -> None:
    """(f) the paper's convergence figure: each of ``classes`` of Fashion-MNIST as the normal class,
    every training image, ``epochs`` epochs at the paper's settings (batch 128, learning rate 1e-3
    divided by 100 after half the epochs, as a fixed milestone), the test ROC-AUC and average precision
    after every epoch by nelbo and mse, and by the default combo after every ``combo_every``-th epoch
    (and the first and last); --limit / --test-limit cut the images (a smoke test). Each epoch resumes the run (exact resume), and its scores go at once
    into the run folder's curve.json and into the results' grad2vae_curve.json, so a killed
    call continues from the last scored epoch while its run folder is there."""
    import shutil

    import numpy as np
    from sklearn.metrics import average_precision_score, roc_auc_score

    from vaelab.config import deep_merge
    from vaelab.data import load_data
    from vaelab.detect import DEFAULT_SCORE, AutoencoderDetector
    from vaelab.train import RunConfig, fit

    path, runs = b.result_path(), b.runs
    train_opts = {"schedule": "step", "step_milestones": [epochs // 2], "step_gamma": 0.01, "batch_size": 128, "lr": 1e-3,
                  "progress_bar": False}
    for c in classes:
        data = None
        for label in models:
            name, model_opts = CONV_MODELS[label]
            cut = {k: v for k, v in {"limit": limit, "test_limit": test_limit}.items() if v is not None}
            base = deep_merge({"data": {"name": DATASET, "classes": [c], **cut}, "model": model_opts, "train": train_opts,
                               "seed": seed}, extra or {})
            settings = {"epochs": epochs, "combo_every": combo_every, "config": base}
            run_dir = runs / "curve" / f"class{c}-{label}"
            saved = run_dir / "curve.json"
            rows: list[dict] = []
            if saved.is_file():
                old = json.loads(saved.read_text())
                if old["settings"] != settings:
                    raise SystemExit(f"{run_dir} holds a curve of other settings; give another --runs")
                rows = old["rows"]
            elif run_dir.exists():
                shutil.rmtree(run_dir)  # killed before its first epoch was scored: start it again
            if data is None:
                data = load_data(RunConfig.build(name, base).data, seed)
            train, _, test = data
            y = (test.labels != c).numpy().astype(np.int64)
            seconds = rows[-1]["train_seconds"] if rows else 0.0
            for e in range(len(rows) + 1, epochs + 1):
                cfg = RunConfig.build(name, deep_merge(base, {"train": {"epochs": e}}))
                t0 = time.perf_counter()
                model, _ = fit(cfg, run_dir, resume=e > 1, data=data)
                seconds += time.perf_counter() - t0
                scores = list(CURVE_SCORES) + ([DEFAULT_SCORE] if e in (1, epochs) or e % combo_every == 0 else [])
                row = {"epoch": e, "lr": cfg.train.lr * (0.01 if e > epochs // 2 else 1.0), "train_seconds": seconds,
                       "auroc": {}, "average_precision": {}}
                for sc in scores:
                    # nelbo's and mse's raw scores of the test images do not depend on the images the
                    # detector is fitted on (the combo's z-scores do): a few spare their training scores
                    det = AutoencoderDetector(model, sc, normalize=False, seed=seed,
                                              batch_size=cfg.train.eval_batch_size).fit(train if sc == DEFAULT_SCORE
                                                                                        else train.subset(range(min(256, len(train)))))
                    raw = det.raw_scores(test)
                    row["auroc"][sc] = float(roc_auc_score(y, raw))
                    row["average_precision"][sc] = float(average_precision_score(y, raw))
                rows.append(row)
                saved.write_text(json.dumps({"settings": settings, "rows": rows}, indent=2) + "\n")
                entry = {"dataset": DATASET, "class": c, "class_name": test.class_names[c], "model": label,
                         "parameters": model.num_parameters(), "settings": settings, "complete": e == epochs,
                         "rows": rows}

                def change(payload: dict, entry=entry) -> None:
                    payload["results"].setdefault(DATASET, {}).setdefault(entry["model"], {})[str(entry["class"])] = entry

                b.update(change)
                print(f"(f) class {c} {label:<8} epoch {e:>3}: ROC-AUC " +
                      ", ".join(f"{sc} {v:.4f}" for sc, v in row["auroc"].items()) + f" ({seconds:.0f} s)", flush=True)
    print(f"(f) wrote {path}")


def curve_figure(path: Path, out: Path) -> None:
    """The figure of part (f) from grad2vae_curve.json: one panel per class, test ROC-AUC per epoch of
    each model by nelbo (dashed), mse (dotted) and the combo (markers, where scored)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vaelab.detect import DEFAULT_SCORE
    from vaelab.fileio import atomic_write_figure

    per_model = json.loads(path.read_text())["results"][DATASET]
    classes = sorted({int(c) for entries in per_model.values() for c in entries})
    fig, axes = plt.subplots(1, len(classes), figsize=(5.2 * len(classes), 3.8), squeeze=False)
    colours = {"grad2vae": "tab:red", "vae": "tab:blue", "grad2vae-noatt": "tab:green"}
    for ax, c in zip(axes[0], classes):
        name = ""
        for model, entries in per_model.items():
            entry = entries.get(str(c))
            if not entry:
                continue
            name = entry["class_name"]
            rows = entry["rows"]
            colour = colours.get(model, "black")
            for sc, style in (("nelbo", "--"), ("mse", ":")):
                ax.plot([r["epoch"] for r in rows], [r["auroc"][sc] for r in rows], style, color=colour,
                        label=f"{model} {sc}")
            combo = [r for r in rows if DEFAULT_SCORE in r["auroc"]]
            ax.plot([r["epoch"] for r in combo], [r["auroc"][DEFAULT_SCORE] for r in combo], "o-", ms=3,
                    color=colour, label=f"{model} {DEFAULT_SCORE}")
            half = entry["settings"]["epochs"] // 2
        ax.axvline(half + 0.5, color="grey", lw=0.8)
        ax.set_title(f"Fashion-MNIST, normal class {c} ({name}); lr / 100 after epoch {half}", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test ROC-AUC")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    atomic_write_figure(fig, out, dpi=110)
    plt.close(fig)
    print(f"(f) figure: {out}")


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--classes", default="6,2", help="normal classes (default 6,2: shirt, pullover)")
    ap.add_argument("--models", default="grad2vae,vae", help=f"which of {','.join(CONV_MODELS)} (default grad2vae,vae)")
    ap.add_argument("--epochs", type=int, default=100, help="epochs, lr / 100 after half (default 100)")
    ap.add_argument("--combo-every", type=int, default=5, help="the default combo scored every N epochs (default 5)")
    ap.add_argument("--figure", default=None, help="draw grad2vae_curve.json's curves into this PNG and stop")
    add_cut_arguments(ap)


def main(b: Bench) -> None:
    import warnings

    a = b.args
    # resuming a run epoch by epoch: Lightning's CSV logger warns that the logs folder exists
    warnings.filterwarnings("ignore", ".*exists and is not empty.*")
    if a.figure:
        curve_figure(b.result_path(), Path(a.figure))
        return
    paper_curve(b, [int(c) for c in a.classes.split(",") if c.strip()], [m for m in a.models.split(",") if m], a.epochs,
                a.combo_every, a.limit, a.test_limit, a.seed, overrides(a))
