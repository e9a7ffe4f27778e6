"""The autoencoder family on Fashion-MNIST with one shared architecture and budget: quality and step time.

Quality: each model is trained with exactly `vaelab train NAME --data fashion-mnist --epochs E`
(default conv networks, latent 16, batch 128, Adam 1e-3; linear-ae is linear by definition) and
evaluated with `vaelab evaluate RUN --json`. Reconstruction error is the per-pixel MSE of
decode(E[z|x]) on the 10,000 test images, comparable across likelihoods; the KL and active units
exist for the VAEs. Finished runs in --runs (the zoo's folder by default) are reused (pass the same --runs to
resume the benchmark).

Speed: a separate pass times, side by side in one process, one optimisation step (loss, backward,
Adam) of each model on batch 128, and reports seconds per epoch of 422 steps (54,000 images).
Run it on a quiet machine: `--timing-only` re-times without retraining.

    python -m benchmarks family [--epochs 2] [--runs DIR] [--timing-only]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks._harness import Bench, print_table, train_or_reuse

MODELS = ["ae", "linear-ae", "sparse-ae", "denoising-ae", "contractive-ae", "vae", "beta-vae", "beta-tcvae", "iwae"]
STEPS_PER_EPOCH = 422  # ceil(54,000 / 128)
SMOKE = ["--models", "ae,vae", "--data", "digits", "--epochs", "1", "--steps", "2"]
RUNS_OF = "zoo"  # the same models at the same settings as the zoo's: a finished run is reused


def train_and_evaluate(name: str, data: str, epochs: int, runs: Path) -> dict:
    from vaelab.api import evaluate_run

    run = train_or_reuse(name, data, epochs, runs)
    ev = evaluate_run(run, None, update_report=False)  # `vaelab evaluate RUN --json --no-report`
    m = json.loads((run / "metrics.json").read_text())
    row = {"model": name, "parameters": m["parameters"], "test_mse": ev["mse"], "psnr": ev["psnr"], "ssim": ev.get("ssim"),
           "kl": ev.get("kl"), "nelbo": ev.get("nelbo"), "active_units": ev.get("active_units")}
    for extra in ("mi", "tc", "dwkl", "iwae", "sparsity", "contractive"):
        if extra in ev:
            row[extra] = ev[extra]
    return row


def time_steps(names: list[str], data: str, steps: int = 20, warmup: int = 3) -> dict[str, float]:
    """Seconds per optimisation step of each model, measured back to back on the same batch."""
    import torch

    from vaelab.data import DataConfig, load_data
    from vaelab.models import build, make_config

    train = load_data(DataConfig(name=data, limit=128, val_fraction=0.0, test_limit=1))[0]
    x = train.float()
    out = {}
    for name in names:
        torch.manual_seed(0)
        model = build(make_config(name, {"latent_dim": 16}), train.shape, n_train=54_000)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for i in range(warmup + steps):
            if i == warmup:
                t0 = time.perf_counter()
            loss = model.loss(x).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        out[name] = (time.perf_counter() - t0) / steps
        print(f"{name:<16} {out[name] * 1000:8.1f} ms/step", flush=True)
    return out


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--steps", type=int, default=20, help="timed optimisation steps per model")
    ap.add_argument("--timing-only", action="store_true", help="re-time the steps; keep the quality rows of the last result")


def main(b: Bench) -> None:
    a = b.args
    names = a.models.split(",")
    if a.timing_only:
        rows = b.previous()["results"]
    else:
        rows = []
        for name in names:
            rows.append(train_and_evaluate(name, a.data, a.epochs, b.runs))
            print(json.dumps(rows[-1]), flush=True)
    step = time_steps(names, a.data, a.steps)
    for r in rows:
        r["ms_per_step"] = step[r["model"]] * 1000
        r["seconds_per_epoch"] = step[r["model"]] * STEPS_PER_EPOCH
    print_table(rows, ["model", "parameters", "test_mse", "psnr", "nelbo", "kl", "active_units", "ms_per_step", "seconds_per_epoch"])
    b.write(rows, epochs=a.epochs, dataset=a.data, latent_dim=16, batch_size=128)
