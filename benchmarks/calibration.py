"""What share of unseen normal data does the detector flag at contamination 0.1? For each dataset,
`AutoencoderDetector` trains its own model on normal data only and is applied to normal data it has
never seen. "before" calibrates on the fitted data's own scores (``calibration=0``, the earlier
default); "after" on the held-out tenth that neither the model nor the score was fitted on (the
default). Each row is the mean over --seeds seeds (each seed draws the model, the split and the
held-out part anew); the spread is the seeds' standard deviation.

    VAELAB_DATA=../shared/data OMP_NUM_THREADS=1 python benchmarks/calibration.py
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table, write_result  # noqa: E402


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


def datasets(smoke: bool, root: Path, seed: int = 0) -> dict:
    """name -> (normal training data, unseen normal data, epochs): ImageSets or float tensors of vectors. ``seed``
    draws which rows of digits, breast cancer and wine are trained on and which are unseen, and which
    Fashion-MNIST training images are used (its unseen images are its test split; the shapes folder's
    two parts are independent draws of one generator)."""
    import torch
    from PIL import Image
    from sklearn.datasets import load_breast_cancer, load_digits, load_wine

    from vaelab.data import DataConfig, ImageSet, load_split

    def split_rows(x: np.ndarray, frac: float = 0.7) -> tuple[torch.Tensor, torch.Tensor]:
        perm = np.random.default_rng(seed).permutation(len(x))
        k = int(frac * len(x))
        return torch.tensor(x[perm[:k]], dtype=torch.float32), torch.tensor(x[perm[k:]], dtype=torch.float32)

    out = {}
    d = load_digits()
    imgs = torch.tensor(np.round(d.images * 255 / 16), dtype=torch.uint8)[:, None]
    perm = np.random.default_rng(seed).permutation(len(imgs))
    k = int(0.7 * len(imgs))
    out["digits (all classes)"] = (ImageSet(imgs[np.sort(perm[:k])]), ImageSet(imgs[np.sort(perm[k:])]), 30)
    for c, name in ((0, "T-shirt/top"), (7, "Sneaker")):
        cfg = DataConfig(name="fashion-mnist", classes=[c])
        train = load_split(cfg, "train").limit(2000 if not smoke else 300, seed)
        test = load_split(cfg, "test")
        out[f"fashion-mnist class {c} ({name})"] = (train, test, 10)
    b = load_breast_cancer()
    out["breast cancer (benign rows)"] = (*split_rows(b.data[b.target == 1]), 30)
    w = load_wine()
    out["wine (all rows)"] = (*split_rows(w.data), 60)
    folder = root / "shapes"
    if not (folder / "done").exists():  # a folder of PNGs, read back by the folder source
        for sub, n, seed in (("train", 600, 1), ("fresh", 300, 2)):
            (folder / sub).mkdir(parents=True, exist_ok=True)
            for i, im in enumerate(shapes(n, seed)):
                Image.fromarray(im).save(folder / sub / f"{i:04d}.png")
        (folder / "done").write_text("")
    out["folder of shapes (PNG)"] = (load_split(DataConfig(name="folder", path=str(folder / "train")), "all"),
                                     load_split(DataConfig(name="folder", path=str(folder / "fresh")), "all"), 30)
    if smoke:
        out = {k: (tr, te, 1) for k, (tr, te, _) in list(out.items())[:2]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--contamination", type=float, default=0.1)
    ap.add_argument("--work", default="/tmp/vaelab-bench-calibration", help="where the shapes folder is written")
    ap.add_argument("--smoke", action="store_true", help="two datasets, one epoch, one seed")
    ap.add_argument("--name", default="calibration")
    a = ap.parse_args()
    from vaelab.detect import AutoencoderDetector

    seeds = range(1 if a.smoke else a.seeds)
    rows, t0 = [], time.perf_counter()
    per_seed = {seed: datasets(a.smoke, Path(a.work), seed) for seed in seeds}
    for name in per_seed[0]:
        shares: dict[str, list[float]] = {"before": [], "after": []}
        for seed in seeds:
            train, fresh, epochs = per_seed[seed][name]
            for when, cal in (("before", 0.0), ("after", 0.1)):
                det = AutoencoderDetector(contamination=a.contamination, epochs=epochs, seed=seed, calibration=cal).fit(train)
                shares[when].append(float(det.predict(fresh).mean()))
                print(f"{name} seed {seed} {when}: {shares[when][-1]:.3f} of {len(fresh)} unseen normal flagged", flush=True)
        rows.append({"dataset": name, "n_train": len(train), "n_unseen": len(fresh), "epochs": epochs,
                     "before": float(np.mean(shares["before"])), "before_sd": float(np.std(shares["before"])),
                     "after": float(np.mean(shares["after"])), "after_sd": float(np.std(shares["after"])),
                     "per_seed": shares})
    print_table(rows, ["dataset", "n_train", "n_unseen", "before", "after", "after_sd"])
    write_result(a.name, rows, contamination=a.contamination, seeds=list(seeds), seconds=round(time.perf_counter() - t0, 1))


if __name__ == "__main__":
    main()
