"""One table like the Bidirectional-VAE paper's Table II, for the models vaelab has: parameters,
NLL (importance sampling), active units, FID of prior and GMM samples, PSNR, SSIM, rFID, and the
accuracy of a linear probe on the latent means, on Fashion-MNIST and MNIST.

Every model gets the same budget (default conv networks, latent 16, batch 128, Adam 1e-3,
E epochs). FID uses vaelab's LeNet feature network trained on each dataset (fid_lenet): comparable
between rows of one dataset, not with published Inception FIDs.

    VAELAB_DATA=../shared/data python benchmarks/zoo.py [--epochs 2] [--runs DIR]
    python benchmarks/zoo.py --epochs 5 --runs DIR --finished-only   # the table of what DIR holds so far

--finished-only trains and evaluates nothing: it writes the rows already evaluated in --runs and
lists the missing (dataset, model) pairs in the JSON, so a partial table is never mistaken for a
whole one.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table, write_result  # noqa: E402
from _zoo_runner import add_arguments, get_row  # noqa: E402

MODELS = ["ae", "vae", "beta-vae", "beta-tcvae", "iwae", "bvae", "beta-bvae", "beta-tcbvae", "biwae"]
COLS = ["dataset", "model", "parameters", "nll", "active_units", "fid_lenet", "fid_lenet_gmm", "psnr", "ssim",
        "rfid_lenet", "probe_linear_acc", "probe_mlp_acc"]


def main() -> None:
    ap = argparse.ArgumentParser()
    add_arguments(ap)
    ap.add_argument("--models", default=",".join(MODELS))
    a = ap.parse_args()
    runs = Path(a.runs or tempfile.mkdtemp(prefix="vaelab-zoo-"))
    rows, missing = [], []
    for ds in a.datasets.split(","):
        for m in a.models.split(","):
            row = get_row(m, ds, a, runs)
            if row is None:
                missing.append(f"{ds}/{m}")
                continue
            rows.append(row)
            print({k: rows[-1].get(k) for k in COLS}, flush=True)
    print_table(rows, COLS)
    if missing:
        print("missing (not yet trained and evaluated):", ", ".join(missing))
    write_result("zoo", rows, epochs=a.epochs, nll_k=a.nll_k, nll_images=a.nll_images, fid_images=a.fid_images, missing=missing)


if __name__ == "__main__":
    main()
