"""Shared by the grad2vae benchmarks: the dataset, the models compared, the ROC-AUC of the default score,
and the record of one part in grad2vae.json (the parts of one experiment, run at different times)."""
from __future__ import annotations

import argparse
import time

from benchmarks._harness import Bench

DATASET = "fashion-mnist"
# the models of the convergence parts: grad2vae, the same network without its attention, the default conv vae
CONV_MODELS = {"grad2vae": ("grad2vae", {}), "grad2vae-noatt": ("grad2vae", {"attention_weight": 0.0}), "vae": ("vae", {})}


def add_cut_arguments(ap: argparse.ArgumentParser, seed: bool = True) -> None:
    """--limit, --test-limit, --set (and --seed): what every part with training can cut or change."""
    ap.add_argument("--limit", type=int, default=None, help="at most this many training images (default: all)")
    ap.add_argument("--test-limit", type=int, default=None, help="at most this many test images (default: all)")
    ap.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                    help="a run-config override of every model the part trains, e.g. model.latent_dim=4 (repeatable)")
    if seed:
        ap.add_argument("--seed", type=int, default=0)


def overrides(a: argparse.Namespace) -> dict:
    """The nested run-config overrides of --set."""
    from vaelab.config import parse_set

    return parse_set(a.settings)


def auroc(model, train, test, c: int, seed: int, batch_size: int) -> float:
    """ROC-AUC of the detection package's default score (fitted on ``train``) on ``test``, anomaly = another class than c."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from vaelab.detect import DEFAULT_SCORE, AutoencoderDetector

    y = (test.labels != c).numpy().astype(np.int64)
    det = AutoencoderDetector(model, DEFAULT_SCORE, normalize=False, seed=seed, batch_size=batch_size).fit(train)
    return float(roc_auc_score(y, det.raw_scores(test)))


def record_part(b: Bench, part: str, out: dict, seconds: float, **extra) -> None:
    """Put part PART's results OUT into grad2vae.json, keeping the other parts' results and the record of
    the call that ran each part (its command, settings, seconds and date). Part (b) on some classes and
    models keeps the curves of the others."""
    settings = {k: v for k, v in vars(b.args).items() if k not in ("runs", "results", "smoke", "name")}

    def change(payload: dict) -> None:
        results = payload["results"]
        if "convergence" in out:
            ran = {(r["class"], r["model"]) for r in out["convergence"]}
            out["convergence"] = [r for r in results.get("convergence", []) if (r["class"], r["model"]) not in ran] + out["convergence"]
        results.update(out)
        parts = payload.setdefault("parts", {})
        parts[part] = {"command": b.command, "settings": settings, "seconds": seconds, "date": time.strftime("%Y-%m-%d")}
        payload["parts"] = dict(sorted(parts.items()))
        payload.update(dataset=DATASET, **extra)

    b.update(change)
