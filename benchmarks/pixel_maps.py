"""Pixel-level anomaly localisation on synthetic defects: how well each map kind of
vaelab.detect.maps finds pasted defects, by pixel ROC-AUC and AUPRO (MVTec AD's per-region
overlap, integrated up to a false-positive rate of 0.3).

For each data set a VAE is trained with `vaelab train vae --data DATA --epochs E` (defaults
otherwise: conv networks, latent 16, Bernoulli likelihood): Fashion-MNIST, and `cifar10-exact`, the
exact-pixel CIFAR-10 subset of $VAELAB_DATA/cifar10/cifar10_exact_subset.npz (8,068 training and
1,017 test colour images, read as `--data npz`). For each defect kind (noise, texture, blank) the
test images get `vaelab data build-defects` defects (half of them, patch sides 10-30% of the image),
and each map kind (mse, ssim, gradient) is scored against the exact masks of the defective images.
Nothing is chosen here: the table reports every combination.

    VAELAB_DATA=../shared/data python benchmarks/pixel_maps.py [--datasets fashion-mnist,cifar10-exact] [--epochs 10]
        [--test-limit 2000] [--runs DIR]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table, write_result  # noqa: E402

KINDS = ("noise", "texture", "blank")
MAPS = ("mse", "ssim", "gradient")


def _data_root() -> Path:
    from vaelab.data.download import data_roots

    for root in data_roots():
        if (root / "cifar10" / "cifar10_exact_subset.npz").is_file():
            return root
    raise SystemExit("cifar10/cifar10_exact_subset.npz is in no data root; set VAELAB_DATA (e.g. ../shared/data)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="fashion-mnist,cifar10-exact")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--test-limit", type=int, default=2000)
    ap.add_argument("--runs", default="/tmp/vaelab-pixel-maps", help="run directory and defect files (reused when present)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="pixel_maps")
    a = ap.parse_args()

    import vaelab
    from vaelab.api import train_run
    from vaelab.config import parse_set
    from vaelab.data import DataConfig, load_data, load_split
    from vaelab.data.defects import build_defect_set
    from vaelab.detect.maps import anomaly_maps, pixel_metrics
    from vaelab.train import RunConfig

    runs = Path(a.runs)
    rows = []
    for data in [d.strip() for d in a.datasets.split(",") if d.strip()]:
        name, where = data, []
        if data == "cifar10-exact":
            name, where = "npz", [str(_data_root() / "cifar10" / "cifar10_exact_subset.npz")]
        run = runs / f"vae-{data}-e{a.epochs}-s{a.seed}"
        if not (run / "metrics.json").is_file():
            cfg = RunConfig.build("vae", parse_set([f"data.name={name}", *[f"data.path={w}" for w in where],
                                                    f"train.epochs={a.epochs}", f"seed={a.seed}", "train.progress_bar=false"]))
            train_run(cfg, run)
        cfg = RunConfig.load(run / "config.yaml")
        model = vaelab.load(run)
        train = load_data(cfg.data, cfg.seed)[0]
        for kind in KINDS:
            path = runs / (f"defects-{kind}-n{a.test_limit}-s{a.seed}.npz" if data == "fashion-mnist"
                           else f"defects-{data}-{kind}-n{a.test_limit}-s{a.seed}.npz")
            if not path.is_file():
                build_defect_set(path, name, kind, fraction=0.5, seed=a.seed, test_limit=a.test_limit,
                                 path=where[0] if where else None)
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
    write_result(a.name, rows, epochs=a.epochs, test_limit=a.test_limit, run=str(run),
                 command=" ".join([os.path.basename(sys.executable), *sys.argv]))


if __name__ == "__main__":
    main()
