"""What share of unseen normal data does the detector flag at contamination 0.1, before and after held-out calibration?

For each dataset,
`AutoencoderDetector` trains its own model on normal data only and is applied to normal data it has
never seen. "before" calibrates on the fitted data's own scores (``calibration=0``, the earlier
default); "after" on the held-out tenth that neither the model nor the score was fitted on (the
default). Each row is the mean over --seeds seeds (each seed draws the model, the split and the
held-out part anew); the spread is the seeds' standard deviation.

    VAELAB_DATA=../shared/data OMP_NUM_THREADS=1 python -m benchmarks calibration

The shapes folder is written under --runs.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks._harness import Bench, print_table

# the datasets, by the name --datasets gives them: (the row's name, the epochs its models train)
DATASETS = {"digits": ("digits (all classes)", 30), "fashion-mnist-0": ("fashion-mnist class 0 (T-shirt/top)", 10),
            "fashion-mnist-7": ("fashion-mnist class 7 (Sneaker)", 10), "breast-cancer": ("breast cancer (benign rows)", 30),
            "wine": ("wine (all rows)", 60), "shapes": ("folder of shapes (PNG)", 30)}
SMOKE = ["--datasets", "digits,breast-cancer", "--seeds", "1", "--epochs", "1"]


def shapes(n: int, seed: int, size: int = 32) -> np.ndarray:
    """Filled squares and discs of random size, place and brightness on black, uint8 (n, size, size)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        r = rng.integers(4, 10)
        cy, cx = rng.integers(r, size - r, 2)
        inside = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r) if rng.random() < 0.5 else (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        out[i][inside] = rng.integers(150, 256)
    return out


def datasets(keys: list[str], limit: int, root: Path, seed: int = 0) -> dict:
    """name -> (normal training data, unseen normal data, epochs) of each of KEYS: ImageSets or float tensors
    of vectors. ``seed`` draws which rows of digits, breast cancer and wine are trained on and which are
    unseen, and which ``limit`` Fashion-MNIST training images are used (its unseen images are its test split;
    the shapes folder's two parts, written under ROOT, are independent draws of one generator)."""
    import torch

    from vaelab.data import DataConfig, ImageSet, load_split

    def split_rows(x: np.ndarray, frac: float = 0.7) -> tuple[torch.Tensor, torch.Tensor]:
        perm = np.random.default_rng(seed).permutation(len(x))
        k = int(frac * len(x))
        return torch.tensor(x[perm[:k]], dtype=torch.float32), torch.tensor(x[perm[k:]], dtype=torch.float32)

    def digits():
        from sklearn.datasets import load_digits

        d = load_digits()
        imgs = torch.tensor(np.round(d.images * 255 / 16), dtype=torch.uint8)[:, None]
        perm = np.random.default_rng(seed).permutation(len(imgs))
        k = int(0.7 * len(imgs))
        return ImageSet(imgs[np.sort(perm[:k])]), ImageSet(imgs[np.sort(perm[k:])])

    def fashion(c: int):
        cfg = DataConfig(name="fashion-mnist", classes=[c])
        return load_split(cfg, "train").limit(limit, seed), load_split(cfg, "test")

    def breast_cancer():
        from sklearn.datasets import load_breast_cancer

        b = load_breast_cancer()
        return split_rows(b.data[b.target == 1])

    def wine():
        from sklearn.datasets import load_wine

        return split_rows(load_wine().data)

    def shapes_folder():
        from PIL import Image

        folder = root / "shapes"
        if not (folder / "done").exists():  # a folder of PNGs, read back by the folder source
            for sub, n, s in (("train", 600, 1), ("fresh", 300, 2)):
                (folder / sub).mkdir(parents=True, exist_ok=True)
                for i, im in enumerate(shapes(n, s)):
                    Image.fromarray(im).save(folder / sub / f"{i:04d}.png")
            (folder / "done").write_text("")
        return (load_split(DataConfig(name="folder", path=str(folder / "train")), "all"),
                load_split(DataConfig(name="folder", path=str(folder / "fresh")), "all"))

    make = {"digits": digits, "fashion-mnist-0": lambda: fashion(0), "fashion-mnist-7": lambda: fashion(7),
            "breast-cancer": breast_cancer, "wine": wine, "shapes": shapes_folder}
    return {DATASETS[k][0]: (*make[k](), DATASETS[k][1]) for k in keys}


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--contamination", type=float, default=0.1)
    ap.add_argument("--datasets", default=",".join(DATASETS), help=f"comma list of {', '.join(DATASETS)}")
    ap.add_argument("--limit", type=int, default=2000, help="training images of a Fashion-MNIST class")
    ap.add_argument("--epochs", type=int, default=None, help="epochs of every model (default: each dataset's own)")


def main(b: Bench) -> None:
    from vaelab.detect import AutoencoderDetector

    a = b.args
    seeds = range(a.seeds)
    rows, t0 = [], time.perf_counter()
    per_seed = {seed: datasets(a.datasets.split(","), a.limit, b.runs, seed) for seed in seeds}
    for name in per_seed[0]:
        shares: dict[str, list[float]] = {"before": [], "after": []}
        for seed in seeds:
            train, fresh, epochs = per_seed[seed][name]
            epochs = a.epochs or epochs
            for when, cal in (("before", 0.0), ("after", 0.1)):
                det = AutoencoderDetector(contamination=a.contamination, epochs=epochs, seed=seed, calibration=cal).fit(train)
                shares[when].append(float(det.predict(fresh).mean()))
                print(f"{name} seed {seed} {when}: {shares[when][-1]:.3f} of {len(fresh)} unseen normal flagged", flush=True)
        rows.append({"dataset": name, "n_train": len(train), "n_unseen": len(fresh), "epochs": epochs,
                     "before": float(np.mean(shares["before"])), "before_sd": float(np.std(shares["before"])),
                     "after": float(np.mean(shares["after"])), "after_sd": float(np.std(shares["after"])),
                     "per_seed": shares})
    print_table(rows, ["dataset", "n_train", "n_unseen", "before", "after", "after_sd"])
    b.write(rows, contamination=a.contamination, seeds=list(seeds), seconds=round(time.perf_counter() - t0, 1))

