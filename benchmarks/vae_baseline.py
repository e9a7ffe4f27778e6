"""The foundation's quality check: `vaelab train vae --data D --epochs 10 --latent-dim 16` with the
default conv networks and Bernoulli likelihood, on Fashion-MNIST and MNIST; test negative ELBO.

    VAELAB_DATA=../shared/data python benchmarks/vae_baseline.py [--epochs 10] [--datasets fashion-mnist,mnist]
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

TARGETS = {"fashion-mnist": 243.0, "mnist": 102.0}  # from the foundation issue: plain PyTorch conv VAE 240.1 / 100.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--datasets", default="fashion-mnist,mnist")
    ap.add_argument("--out", default=None, help="keep the run directories here")
    a = ap.parse_args()
    base = Path(a.out or tempfile.mkdtemp(prefix="vaelab-bench-"))
    rows = []
    for ds in a.datasets.split(","):
        run = base / f"vae-{ds}"
        cmd = ["vaelab", "train", "vae", "--data", ds, "--epochs", str(a.epochs), "--latent-dim", "16", "--out", str(run),
               "--set", "train.progress_bar=false"]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        m = json.loads((run / "metrics.json").read_text())
        rows.append({"dataset": ds, "epochs": a.epochs, "parameters": m["parameters"], "test_nelbo": m["nelbo"],
                     "test_rec": m["rec"], "test_kl": m["kl"], "psnr": m["psnr"], "train_seconds": m["train_seconds"],
                     "target_nelbo": TARGETS.get(ds), "meets_target": m["nelbo"] <= TARGETS.get(ds, float("inf"))})
    print_table(rows, ["dataset", "epochs", "parameters", "test_nelbo", "target_nelbo", "meets_target", "psnr", "train_seconds"])
    write_result("vae_baseline", rows)


if __name__ == "__main__":
    main()
