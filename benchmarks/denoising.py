"""Denoising: the plain conv denoising AE beside the U-Net denoising AE (model.arch=unet, skips at
every scale above the bottleneck), each trained on one corruption and scored on the test set with
the same corruption: PSNR (dB) and SSIM of the denoised images against the clean ones, and the
PSNR of the corrupted input for reference. Corruptions: additive Gaussian noise sigma 0.1, 0.3,
0.5 (clipped to [0, 1]) and masking noise (pixels set to 0) with probability 0.25, 0.5.

    VAELAB_DATA=../shared/data python benchmarks/denoising.py [--epochs 10] [--datasets fashion-mnist,mnist]
    python benchmarks/denoising.py --datasets mnist --limit 300 --test-limit 200 --epochs 1 --dry-run   # smoke test

Both models use the defaults of `vaelab train denoising-ae` (conv channels from the image size,
latent dimension 16, Gaussian likelihood = squared error); the test corruption is drawn from one
seeded generator, so both architectures denoise the very same noisy images.
--dry-run writes the JSON into a temporary directory, never into benchmarks/results.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import _common  # noqa: E402
from _common import print_table, write_result  # noqa: E402

NOISES = [("gaussian", 0.1), ("gaussian", 0.3), ("gaussian", 0.5), ("masking", 0.25), ("masking", 0.5)]
COLS = ["dataset", "noise", "level", "arch", "parameters", "psnr_noisy", "psnr_denoised", "ssim_denoised", "train_seconds"]


def score(model, test, seed: int, batch_size: int = 500) -> dict[str, float]:
    import torch
    from torchmetrics.functional.image import peak_signal_noise_ratio

    from vaelab.evaluate.image_quality import ssim_per_image

    g = torch.Generator().manual_seed(seed)
    dev = next(model.parameters()).device
    sums = {"psnr_noisy": 0.0, "psnr_denoised": 0.0, "ssim_denoised": 0.0}
    for i in range(0, len(test), batch_size):
        x = test.images[i : i + batch_size].float().div_(255.0)
        noisy = model.corrupt(x, g)  # on the CPU, from the one generator: the same noise for every model
        den = model.reconstruct(noisy.to(dev)).cpu()
        psnr = lambda a: float(peak_signal_noise_ratio(a, x, data_range=1.0, reduction="none", dim=(1, 2, 3)).double().sum())  # noqa: E731, B023
        sums["psnr_noisy"] += psnr(noisy)
        sums["psnr_denoised"] += psnr(den)
        sums["ssim_denoised"] += float(ssim_per_image(den, x).double().sum())
    return {k: v / len(test) for k, v in sums.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="fashion-mnist,mnist")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--latent-dim", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--limit", type=int, default=None, help="training images (default: all)")
    ap.add_argument("--test-limit", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", default=None, help="keep the run directories here (default: a temporary directory); "
                    "finished runs found there are reused, so an interrupted benchmark continues where it stopped")
    ap.add_argument("--dry-run", action="store_true", help="smoke test: write the JSON to a temporary directory, not benchmarks/results")
    a = ap.parse_args()

    from vaelab.config import parse_set
    from vaelab.data import DataConfig, load_data
    from vaelab.train import RunConfig, fit, load_run

    runs = Path(a.runs or tempfile.mkdtemp(prefix="vaelab-denoising-"))
    rows = []
    for ds in a.datasets.split(","):
        data = load_data(DataConfig(name=ds, limit=a.limit, test_limit=a.test_limit), seed=a.seed)
        for noise, level in NOISES:
            for arch in ("conv", "unet"):
                opts = [f"data.name={ds}", f"model.arch={arch}", f"model.noise={noise}",
                        f"model.{'noise_std' if noise == 'gaussian' else 'drop_prob'}={level}", f"model.latent_dim={a.latent_dim}",
                        f"train.epochs={a.epochs}", f"train.batch_size={a.batch_size}", "train.progress_bar=false", f"seed={a.seed}"]
                run_dir = runs / f"{ds}-{noise}-{level}-{arch}"
                done = run_dir / "denoising_train.json"
                if done.is_file():  # finished by an earlier, interrupted call: reuse it
                    model, seconds = load_run(run_dir), json.loads(done.read_text())["train_seconds"]
                else:
                    if run_dir.exists():
                        shutil.rmtree(run_dir)
                    t0 = time.perf_counter()
                    model, _ = fit(RunConfig.build("denoising-ae", parse_set(opts)), run_dir, data=data)
                    seconds = time.perf_counter() - t0
                    done.write_text(json.dumps({"train_seconds": seconds}))
                r = {"dataset": ds, "noise": noise, "level": level, "arch": arch, "parameters": model.num_parameters(),
                     **score(model, data[2], a.seed + 1), "train_seconds": seconds}
                print(f"  {ds} {noise} {level} {arch}: PSNR {r['psnr_noisy']:.2f} -> {r['psnr_denoised']:.2f} dB", flush=True)
                rows.append(r)
    print_table(rows, COLS)
    if a.dry_run:
        _common.RESULTS = Path(tempfile.mkdtemp(prefix="vaelab-dry-run-"))
    write_result("denoising", rows, epochs=a.epochs, latent_dim=a.latent_dim, limit=a.limit, test_limit=a.test_limit,
                 seed=a.seed, dry_run=a.dry_run)


if __name__ == "__main__":
    main()
