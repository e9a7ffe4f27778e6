"""Every evaluation metric on one VAE: `vaelab train vae --data fashion-mnist --epochs 20
--latent-dim 16`, then `vaelab evaluate RUN --metrics all` (NLL with k = 1000 importance samples on
the first --nll-images test images; FID with vaelab's LeNet features on 10,000 images).
Checks the evaluation issue's targets: linear-probe accuracy >= 0.78, and few-label transfer
(2,000 labels, frozen encoder, the head on the encoder's features; mean of 3 label draws) beating
the same head trained on raw pixels. A finished run in --out is reused, not retrained.

    python benchmarks/vae_eval.py [--epochs 20] [--nll-images 1000] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--nll-images", type=int, default=1000)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    run = Path(a.out or tempfile.mkdtemp(prefix="vaelab-vae-eval-")) / f"vae-{a.data}-e{a.epochs}"
    if not (run / "metrics.json").is_file():
        cmd = ["vaelab", "train", "vae", "--data", a.data, "--epochs", str(a.epochs), "--latent-dim", "16",
               "--out", str(run), "--set", "train.progress_bar=false"]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    cmd = ["vaelab", "evaluate", str(run), "--metrics", "all", "--json", "--nll-k", "1000", "--nll-images", str(a.nll_images)]
    print("$", " ".join(cmd), flush=True)
    ev = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    ev["meets_probe_target"] = ev["probe_linear_acc"] >= 0.78
    ev["transfer_beats_pixels"] = ev["few_label_encoder_acc"] > ev["few_label_pixels_acc"]
    for k, v in ev.items():
        print(f"{k:<24} {v:.4f}" if isinstance(v, float) else f"{k:<24} {v}")
    write_result("vae_eval", ev, dataset=a.data, epochs=a.epochs, run_dir=str(run))


if __name__ == "__main__":
    main()
