"""Denoising: the plain conv denoising AE beside the U-Net one, PSNR and SSIM under five corruptions.

The plain conv denoising AE beside the U-Net denoising AE (model.arch=unet, skips at
every scale above the bottleneck), each trained on one corruption and scored on the test set with
the same corruption: PSNR (dB) and SSIM of the denoised images against the clean ones, and the
PSNR of the corrupted input for reference. Corruptions: additive Gaussian noise sigma 0.1, 0.3,
0.5 (clipped to [0, 1]) and masking noise (pixels set to 0) with probability 0.25, 0.5.

    VAELAB_DATA=../shared/data python -m benchmarks denoising [--epochs 10] [--datasets fashion-mnist,mnist]

Both models use the defaults of `vaelab train denoising-ae` (conv channels from the image size,
latent dimension 16, Gaussian likelihood = squared error); the test corruption is drawn from one
seeded generator, so both architectures denoise the very same noisy images. Finished runs in --runs are
reused, so an interrupted benchmark continues where it stopped.
"""
from __future__ import annotations

import argparse

from benchmarks._harness import Bench, fit_or_reuse, print_table

NOISES = [("gaussian", 0.1), ("gaussian", 0.3), ("gaussian", 0.5), ("masking", 0.25), ("masking", 0.5)]
SMOKE = ["--datasets", "digits", "--epochs", "1", "--noises", "gaussian:0.3"]
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


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--datasets", default="fashion-mnist,mnist")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--latent-dim", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--limit", type=int, default=None, help="training images (default: all)")
    ap.add_argument("--test-limit", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noises", default=",".join(f"{n}:{v:g}" for n, v in NOISES), help="KIND:LEVEL corruptions")


def main(b: Bench) -> None:
    from vaelab.config import parse_set
    from vaelab.data import DataConfig, load_data
    from vaelab.train import RunConfig

    a, runs = b.args, b.runs
    noises = [(n, float(v)) for n, v in (x.split(":") for x in a.noises.split(","))]
    rows = []
    for ds in a.datasets.split(","):
        data = load_data(DataConfig(name=ds, limit=a.limit, test_limit=a.test_limit), seed=a.seed)
        for noise, level in noises:
            for arch in ("conv", "unet"):
                opts = [f"data.name={ds}", f"model.arch={arch}", f"model.noise={noise}",
                        f"model.{'noise_std' if noise == 'gaussian' else 'drop_prob'}={level}", f"model.latent_dim={a.latent_dim}",
                        f"train.epochs={a.epochs}", f"train.batch_size={a.batch_size}", "train.progress_bar=false", f"seed={a.seed}",
                        *(f"data.{k}={v}" for k, v in (("limit", a.limit), ("test_limit", a.test_limit)) if v is not None)]
                model, seconds = fit_or_reuse(RunConfig.build("denoising-ae", parse_set(opts)),
                                              runs / f"{ds}-{noise}-{level}-{arch}", data=data)
                r = {"dataset": ds, "noise": noise, "level": level, "arch": arch, "parameters": model.num_parameters(),
                     **score(model, data[2], a.seed + 1), "train_seconds": seconds}
                print(f"  {ds} {noise} {level} {arch}: PSNR {r['psnr_noisy']:.2f} -> {r['psnr_denoised']:.2f} dB", flush=True)
                rows.append(r)
    print_table(rows, COLS)
    b.write(rows, epochs=a.epochs, latent_dim=a.latent_dim, limit=a.limit, test_limit=a.test_limit, seed=a.seed)
