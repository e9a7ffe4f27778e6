"""Pixel anomaly maps on synthetic defects: pixel ROC-AUC and AUPRO of each map kind, defect kind and dataset.

Pixel-level anomaly localisation on synthetic defects: how well each map kind of
vaelab.detect.maps finds pasted defects, by pixel ROC-AUC and AUPRO (MVTec AD's per-region
overlap, integrated up to a false-positive rate of 0.3).

For each data set a VAE is trained with `vaelab train vae --data DATA --epochs E` (defaults
otherwise: conv networks, latent 16, Bernoulli likelihood): Fashion-MNIST, and `cifar10-exact`, the
exact-pixel CIFAR-10 subset of $VAELAB_DATA/cifar10/cifar10_exact_subset.npz (8,068 training and
1,017 test colour images, read as `--data npz`). For each defect kind (noise, texture, blank) the
test images get `vaelab data build-defects` defects (half of them, patch sides 10-30% of the image),
and each map kind (mse, ssim, gradient) is scored against the exact masks of the defective images.
Nothing is chosen here: the table reports every combination.

    VAELAB_DATA=../shared/data python -m benchmarks pixel_maps [--datasets fashion-mnist,cifar10-exact] [--epochs 10]
        [--test-limit 2000] [--runs DIR]

Runs and defect files live in --runs (the zoo's folder by default; reused when present).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks._harness import Bench, cifar10_exact, data_settings, print_table, train_or_reuse

KINDS = ("noise", "texture", "blank")
MAPS = ("mse", "ssim", "gradient")
SMOKE = ["--datasets", "digits", "--epochs", "1", "--test-limit", "100"]
RUNS_OF = "zoo"  # its VAEs are the zoo's default ones: a finished run of the same settings is reused


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--datasets", default="fashion-mnist,cifar10-exact")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--limit", type=int, default=None, help="training images (default: all)")
    ap.add_argument("--test-limit", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)


def main(b: Bench) -> None:
    import vaelab
    from vaelab.data import DataConfig, load_data, load_split
    from vaelab.data.defects import build_defect_set
    from vaelab.detect.maps import anomaly_maps, pixel_metrics
    from vaelab.train import RunConfig

    a, runs = b.args, b.runs
    rows = []
    for data in [d.strip() for d in a.datasets.split(",") if d.strip()]:
        name, where = data_settings(data)
        run = train_or_reuse("vae", name, a.epochs, runs, [*where, *([f"seed={a.seed}"] if a.seed else []),
                                                           *([f"data.limit={a.limit}"] if a.limit else [])],
                             name=f"vae-{data}-e{a.epochs}" + (f"-s{a.seed}" if a.seed else "") + (f"-limit{a.limit}" if a.limit else ""))
        cfg = RunConfig.load(run / "config.yaml")
        model = vaelab.load(run)
        train = load_data(cfg.data, cfg.seed)[0]
        for kind in KINDS:
            path = runs / (f"defects-{kind}-n{a.test_limit}-s{a.seed}.npz" if data == "fashion-mnist"
                           else f"defects-{data}-{kind}-n{a.test_limit}-s{a.seed}.npz")
            if not path.is_file():
                build_defect_set(path, name, kind, fraction=0.5, seed=a.seed, test_limit=a.test_limit,
                                 path=str(cifar10_exact()) if data == "cifar10-exact" else None)
            s = load_split(DataConfig(name="npz", path=str(path)), "test")
            bad = s.labels.numpy() == 1  # the defective images; their masks are the positives
            masks = s.masks.numpy()[bad]
            for m in MAPS:
                t0 = time.perf_counter()
                maps = anomaly_maps(model, s.subset(np.flatnonzero(bad)), m,
                                    train=train.images[:5000] if m == "gradient" else None)
                sec = time.perf_counter() - t0
                r = pixel_metrics(maps, masks)
                rows.append({"data": data, "defect": kind, "map": m, "pixel_roc_auc": round(r["pixel_roc_auc"], 4),
                             "aupro": round(r["aupro"], 4), "images": int(bad.sum()),
                             "defect_pixel_share": round(float(masks.mean()), 4), "seconds": round(sec, 2)})
    print_table(rows, ["data", "defect", "map", "pixel_roc_auc", "aupro", "images", "defect_pixel_share", "seconds"])
    b.write(rows, epochs=a.epochs, limit=a.limit, test_limit=a.test_limit, run=str(run))
