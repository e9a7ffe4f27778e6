"""Exported detectors (ONNX, TorchScript) against the Python detector: images per second and score agreement.

Exported detectors (ONNX via onnxruntime, TorchScript) against the Python detector: images per
second of each on the same test images, side by side in one run, and how far apart their scores are.

A VAE is trained with `vaelab train vae --data DATA --epochs E` (default networks); for each score
the detector is fitted on the training split as `vaelab detect` does, exported in both formats and
loaded with vaelab.exported.load_exported. Every scorer scores the test set (the whole set, or the
first --limit images) in batches of --batch-size, after one warm-up batch. ``max_relative_difference``
is the largest |exported - python| / |python| over every exported raw score of every format (for
combo, a mean of z-scores that crosses 0, the denominator is max(|python|, 1): one standard deviation).

    VAELAB_DATA=../shared/data python -m benchmarks export [--data fashion-mnist] [--epochs 5] [--limit N]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._harness import Bench, print_table, train_or_reuse

FORMATS = ("onnx", "torchscript")
SMOKE = ["--data", "digits", "--epochs", "1", "--limit", "200", "--scores", "mse", "--batch-size", "100"]
RUNS_OF = "zoo"  # its VAE is the zoo's default one: a finished run of the same settings is reused


def _timed(fn, x, batch):
    fn(x[:batch])  # warm-up
    t0 = time.perf_counter()
    out = np.concatenate([fn(x[i : i + batch]) for i in range(0, len(x), batch)])
    return out, len(x) / (time.perf_counter() - t0)


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--limit", type=int, default=None, help="score only the first N test images (default: all)")
    ap.add_argument("--scores", default="mse,nelbo,latent_gmm,combo")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)


def main(b: Bench) -> None:
    import torch

    import vaelab
    from vaelab.data import load_data, load_split
    from vaelab.detect import AutoencoderDetector
    from vaelab.detect.export import export_detector
    from vaelab.exported import load_exported
    from vaelab.train import RunConfig

    a = b.args
    run = train_or_reuse("vae", a.data, a.epochs, b.runs, [f"seed={a.seed}"] if a.seed else [],
                         name=f"vae-{a.data}-e{a.epochs}" + (f"-s{a.seed}" if a.seed else ""))
    cfg = RunConfig.load(run / "config.yaml")
    model = vaelab.load(run)
    train = load_data(cfg.data, cfg.seed)[0]
    test = load_split(cfg.data, "test").images
    test = test[: a.limit] if a.limit else test
    x = (test.float() / 255).numpy()
    rows, worst = [], 0.0
    with tempfile.TemporaryDirectory(prefix="vaelab-export-bench-") as tmp:
        for score in [s.strip() for s in a.scores.split(",") if s.strip()]:
            det = AutoencoderDetector(model, score, seed=cfg.seed, batch_size=a.batch_size).fit(train)
            ref, py_ips = _timed(lambda b, d=det: d.raw_scores(torch.from_numpy(b)), x, a.batch_size)
            rows.append({"score": score, "scorer": "python", "images_per_s": py_ips, "speedup": 1.0,
                         "max_relative_difference": 0.0, "flags_differ": 0})
            py_flags = det.predict(torch.from_numpy(x))
            floor = 1.0 if score == "combo" else 1e-300
            for fmt in FORMATS:
                scorer = load_exported(export_detector(det, Path(tmp) / f"{score}-{fmt}", fmt))
                got, ips = _timed(lambda b, s=scorer: s(b)["raw_score"], x, a.batch_size)
                rel = float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), floor)))
                rel = rel if np.isfinite(got).all() else float("inf")  # a NaN score is a failure, not a small difference
                worst = max(worst, rel)
                # the exported module's own flag output against the Python detector's predict()
                flag = np.concatenate([scorer(x[i : i + a.batch_size])["flag"] for i in range(0, len(x), a.batch_size)])
                flags = int((flag != py_flags).sum())
                rows.append({"score": score, "scorer": fmt, "images_per_s": ips, "speedup": ips / py_ips,
                             "max_relative_difference": rel, "flags_differ": flags})
    print_table(rows, ["score", "scorer", "images_per_s", "speedup", "max_relative_difference", "flags_differ"])
    print(f"max_relative_difference over every exported score: {worst:.3g}; flags that differ: "
          f"{sum(r['flags_differ'] for r in rows)}")
    import onnxruntime

    b.write(rows, max_relative_difference=worst, n_images=len(x), data=a.data, epochs=a.epochs,
                 batch_size=a.batch_size, torch_threads=torch.get_num_threads(), onnxruntime=onnxruntime.__version__)

