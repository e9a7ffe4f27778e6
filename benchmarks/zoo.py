"""One table like the Bidirectional-VAE paper's Table II, for the models vaelab has: parameters,
NLL (importance sampling), active units, FID of prior and GMM samples, PSNR, SSIM, rFID, and the
accuracy of a linear probe on the latent means, on Fashion-MNIST and MNIST.

Every model gets the same budget (default conv networks, latent 16, batch 128, Adam 1e-3,
E epochs). FID uses vaelab's LeNet feature network trained on each dataset (fid_lenet): comparable
between rows of one dataset, not with published Inception FIDs.

    VAELAB_DATA=../shared/data python benchmarks/zoo.py [--epochs 2] [--runs DIR]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table, write_result  # noqa: E402
from _zoo_runner import run_and_evaluate  # noqa: E402

MODELS = ["ae", "vae", "beta-vae", "beta-tcvae", "iwae", "bvae", "beta-bvae", "beta-tcbvae", "biwae"]
COLS = ["dataset", "model", "parameters", "nll", "active_units", "fid_lenet", "fid_lenet_gmm", "psnr", "ssim",
        "rfid_lenet", "probe_linear_acc", "probe_mlp_acc"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--datasets", default="fashion-mnist,mnist")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--runs", default=None, help="run directories (reused when already finished)")
    ap.add_argument("--nll-k", type=int, default=1000)
    ap.add_argument("--nll-images", type=int, default=500)
    ap.add_argument("--fid-images", type=int, default=5000)
    a = ap.parse_args()
    runs = Path(a.runs or tempfile.mkdtemp(prefix="vaelab-zoo-"))
    rows = []
    for ds in a.datasets.split(","):
        for m in a.models.split(","):
            rows.append(run_and_evaluate(m, ds, a.epochs, runs, a.nll_k, a.nll_images, a.fid_images))
            print({k: rows[-1].get(k) for k in COLS}, flush=True)
    print_table(rows, COLS)
    write_result("zoo", rows, epochs=a.epochs, nll_k=a.nll_k, nll_images=a.nll_images, fid_images=a.fid_images)


if __name__ == "__main__":
    main()
