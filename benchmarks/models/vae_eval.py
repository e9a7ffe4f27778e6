"""Every evaluation metric on one VAE, and the evaluation issue's targets (linear probe, few-label transfer).

`vaelab train vae --data fashion-mnist --epochs 20 --latent-dim 16`, then `vaelab evaluate RUN --metrics
all` (NLL with k = --nll-k importance samples on the first --nll-images test images; FID with vaelab's
LeNet features on --fid-images images). Checks the evaluation issue's targets: linear-probe accuracy
>= 0.78, and few-label transfer (2,000 labels, frozen encoder, the head on the encoder's features; mean
of 3 label draws) beating the same head trained on raw pixels. Its run is the zoo's (--runs defaults to
the zoo's folder): a finished run of the same settings is reused, not retrained.

    python -m benchmarks vae_eval [--epochs 20] [--nll-images 1000] [--runs DIR]
"""
from __future__ import annotations

import argparse

from benchmarks._harness import Bench, add_metric_arguments, train_or_reuse

SMOKE = ["--data", "digits", "--epochs", "1", "--nll-k", "4", "--nll-images", "32", "--fid-images", "64", "--n-labels", "20",
         "--few-label-repeats", "1"]
RUNS_OF = "zoo"


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--epochs", type=int, default=20)
    add_metric_arguments(ap, nll_k=1000, nll_images=1000, fid_images=10000, few_label=True)


def main(b: Bench) -> None:
    from vaelab.api import evaluate_run

    a = b.args
    run = train_or_reuse("vae", a.data, a.epochs, b.runs)
    print(f"evaluating {run}: every metric", flush=True)
    ev = evaluate_run(run, ["all"], update_report=True, redraw=False, nll_k=a.nll_k, nll_images=a.nll_images,
                      fid_images=a.fid_images, n_labels=a.n_labels, few_label_repeats=a.few_label_repeats)
    ev["meets_probe_target"] = ev["probe_linear_acc"] >= 0.78
    ev["transfer_beats_pixels"] = ev["few_label_encoder_acc"] > ev["few_label_pixels_acc"]
    for k, v in ev.items():
        print(f"{k:<24} {v:.4f}" if isinstance(v, float) else f"{k:<24} {v}")
    b.write(ev, dataset=a.data, epochs=a.epochs, run_dir=str(run))
