"""Each unidirectional VAE beside its bidirectional twin at the same budget: parameters, -ELBO, NLL, probes.

Each unidirectional VAE beside its bidirectional twin (same architecture and budget) on
Fashion-MNIST and MNIST: parameters, test negative ELBO, NLL, active units, PSNR, SSIM and
linear-probe accuracy. Its runs are the zoo's (--runs defaults to the zoo's folder), reused when finished.

    VAELAB_DATA=../shared/data python -m benchmarks bidirectional [--epochs 2] [--runs DIR]
    python -m benchmarks bidirectional --epochs 5 --runs DIR --finished-only   # the pairs DIR holds so far
"""
from __future__ import annotations

import argparse

from benchmarks._harness import Bench, print_table
from benchmarks.models._zoo import SMOKE as ZOO_SMOKE
from benchmarks.models._zoo import add_arguments, get_row

PAIRS = [("vae", "bvae"), ("beta-vae", "beta-bvae"), ("beta-tcvae", "beta-tcbvae"), ("iwae", "biwae")]
COLS = ["dataset", "model", "parameters", "param_ratio", "nelbo", "nll", "active_units", "psnr", "ssim", "probe_linear_acc"]
SMOKE = [*ZOO_SMOKE, "--unidirectional", "vae"]
RUNS_OF = "zoo"


def arguments(ap: argparse.ArgumentParser) -> None:
    add_arguments(ap)
    ap.add_argument("--unidirectional", default=",".join(u for u, _ in PAIRS), help="the pairs, by their unidirectional model")


def main(b: Bench) -> None:
    a, runs = b.args, b.runs
    pairs = [(u, t) for u, t in PAIRS if u in a.unidirectional.split(",")]
    rows, missing = [], []
    for ds in a.datasets.split(","):
        for uni, bi in pairs:
            u, t = get_row(uni, ds, a, runs), get_row(bi, ds, a, runs)
            if u is None or t is None:
                missing.append(f"{ds}/{uni}+{bi}")
                continue
            for r in (u, t):
                rows.append({k: r.get(k) for k in COLS if k != "param_ratio"} | {"param_ratio": r["parameters"] / u["parameters"]})
            d = {k: t[k] - u[k] for k in ("nelbo", "nll", "psnr", "ssim", "probe_linear_acc") if k in t and k in u}
            print(f"{ds} {bi} - {uni}: " + ", ".join(f"{k} {v:+.3f}" for k, v in d.items()), flush=True)
    print_table(rows, COLS)
    if missing:
        print("missing pairs (not yet trained and evaluated):", ", ".join(missing))
    b.write(rows, epochs=a.epochs, nll_k=a.nll_k, nll_images=a.nll_images, missing=missing)
