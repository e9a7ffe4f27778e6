"""Every model of the zoo at one budget: NLL, active units, FID, PSNR, SSIM, rFID, linear probe.

One table like the Bidirectional-VAE paper's Table II, for the models vaelab has: parameters,
NLL (importance sampling), active units, FID of prior and GMM samples, PSNR, SSIM, rFID, and the
accuracy of a linear probe on the latent means, on Fashion-MNIST and MNIST.

Every model gets the same budget (default conv networks, latent 16, batch 128, Adam 1e-3,
E epochs). FID uses vaelab's LeNet feature network trained on each dataset (fid_lenet): comparable
between rows of one dataset, not with published Inception FIDs.

    VAELAB_DATA=../shared/data python -m benchmarks zoo [--epochs 2] [--runs DIR]
    python -m benchmarks zoo --epochs 5 --runs DIR --finished-only   # the table of what DIR holds so far
    python -m benchmarks zoo --epochs 5 --runs DIR --models vamp,wae,... --name zoo_longtail

A row's ``fid_best`` is the lowest FID among its prior, its GMM and, where the samplers benchmark
scored the same run (vae, rae-l2, wae), the two-stage, MAF and IAF samplers (``best_sampler`` names it).

--finished-only trains and evaluates nothing: it writes the rows already evaluated in --runs and
lists the missing (dataset, model) pairs in the JSON, so a partial table is never mistaken for a
whole one.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks._harness import Bench, print_table
from benchmarks.models._zoo import SMOKE as ZOO_SMOKE
from benchmarks.models._zoo import add_arguments, get_row

MODELS = ["ae", "vae", "beta-vae", "beta-tcvae", "iwae", "bvae", "beta-bvae", "beta-tcbvae", "biwae",
          # the long tail (priors, divergences, regularised AEs, discrete codes, flows, conditioning)
          "vamp", "wae", "info-vae", "rae-l2", "rae-gp", "dip-vae", "vq-vae", "vae-iaf", "cvae"]
COLS = ["dataset", "model", "parameters", "nll", "active_units", "fid_lenet", "fid_lenet_gmm", "fid_best", "best_sampler",
        "psnr", "ssim", "rfid_lenet", "probe_linear_acc", "probe_mlp_acc", "seconds_per_epoch"]

SMOKE = [*ZOO_SMOKE, "--models", "vae"]


def _with_best_sampler(row: dict, runs: Path) -> dict:
    """The row with the samplers benchmark's FIDs when that script measured this run (every sampler),
    the best sampler's FID (``fid_best``, ``best_sampler``) and seconds per training epoch."""
    import json

    row = dict(row)
    for f in sorted((runs / f"{row['model']}-{row['dataset']}-e{row['epochs']}").glob("samplers_fid*.json")):
        row.update({k: v for k, v in json.loads(f.read_text()).items() if k.startswith("fid_lenet")})
    fids = {("prior" if k == "fid_lenet" else k[len("fid_lenet_"):]): v for k, v in row.items()
            if k.startswith("fid_lenet") and v is not None}
    if fids:
        row["best_sampler"] = min(fids, key=fids.get)
        row["fid_best"] = fids[row["best_sampler"]]
    row["seconds_per_epoch"] = row["train_seconds"] / row["epochs"]
    return row


def arguments(ap: argparse.ArgumentParser) -> None:
    add_arguments(ap)
    ap.add_argument("--models", default=",".join(MODELS))


def main(b: Bench) -> None:
    a, runs = b.args, b.runs
    rows, missing = [], []
    for ds in a.datasets.split(","):
        for m in a.models.split(","):
            row = get_row(m, ds, a, runs)
            if row is None:
                missing.append(f"{ds}/{m}")
                continue
            rows.append(_with_best_sampler(row, runs))
            print({k: rows[-1].get(k) for k in COLS}, flush=True)
    print_table(rows, COLS)
    if missing:
        print("missing (not yet trained and evaluated):", ", ".join(missing))
    b.write(rows, epochs=a.epochs, nll_k=a.nll_k, nll_images=a.nll_images, fid_images=a.fid_images, missing=missing)

