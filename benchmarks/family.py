"""The autoencoder family on Fashion-MNIST with one shared architecture and budget.

Each model is trained with exactly `vaelab train NAME --data fashion-mnist --epochs E` (default conv
networks, latent 16, batch 128, Adam 1e-3; linear-ae is linear by definition) and evaluated with
`vaelab evaluate RUN --json`. Reconstruction error is the per-pixel MSE of decode(E[z|x]) on the
10,000 test images, comparable across likelihoods; the KL and active units exist for the VAEs.

    python benchmarks/family.py [--epochs 2] [--models ae,linear-ae,...]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table, write_result  # noqa: E402

MODELS = ["ae", "linear-ae", "sparse-ae", "denoising-ae", "contractive-ae", "vae", "beta-vae", "beta-tcvae", "iwae"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    base = Path(a.out or tempfile.mkdtemp(prefix="vaelab-family-"))
    rows = []
    for name in a.models.split(","):
        run = base / name
        cmd = ["vaelab", "train", name, "--data", "fashion-mnist", "--epochs", str(a.epochs), "--out", str(run),
               "--set", "train.progress_bar=false"]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        ev = json.loads(subprocess.run(["vaelab", "evaluate", str(run), "--json", "--no-report"], check=True,
                                       capture_output=True, text=True).stdout)
        m = json.loads((run / "metrics.json").read_text())
        row = {"model": name, "parameters": m["parameters"], "test_mse": ev["mse"], "psnr": ev["psnr"],
               "kl": ev.get("kl"), "nelbo": ev.get("nelbo"), "active_units": ev.get("active_units"),
               "seconds_per_epoch": m["train_seconds"] / a.epochs}
        for extra in ("mi", "tc", "dwkl", "iwae", "sparsity", "contractive"):
            if extra in ev:
                row[extra] = ev[extra]
        rows.append(row)
        print(json.dumps(row), flush=True)
    print_table(rows, ["model", "parameters", "test_mse", "psnr", "nelbo", "kl", "active_units", "seconds_per_epoch"])
    write_result("family", rows, epochs=a.epochs, dataset="fashion-mnist", latent_dim=16)


if __name__ == "__main__":
    main()
