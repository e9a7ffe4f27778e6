"""Which sampler makes a model generate well: FID of prior, GMM, two-stage, MAF and IAF samples for vae, rae-l2, wae.

FID (LeNet features) of samples from the prior and from densities fitted to the training codes (gmm,
two-stage, maf, iaf; vaelab.generate) for `vae`, `rae-l2` and `wae` on Fashion-MNIST and MNIST. Ghosh
et al. (ICLR 2020) report that ex-post density estimation is what makes a regularised autoencoder
generate well; the table shows whether it holds here (an RAE has no prior of its own, so its prior
column is empty).

The runs are the zoo's (same budget: default conv networks, latent 16, E epochs, one seed; --runs
defaults to the zoo's folder, finished runs reused). FID compares --fid-images samples with as many
test images, as `vaelab evaluate --metrics fid --fid-samplers ...` does.

    VAELAB_DATA=../shared/data python -m benchmarks samplers [--epochs 5] [--runs DIR] [--fid-images 5000]
"""
from __future__ import annotations

import argparse
import json

from benchmarks._harness import Bench, print_table, train_or_reuse

MODELS = ("vae", "rae-l2", "wae")
SAMPLERS = ("prior", "gmm", "two-stage", "maf", "iaf")
SMOKE = ["--datasets", "digits", "--models", "vae", "--epochs", "1", "--fid-images", "64", "--samplers", "prior,gmm"]
RUNS_OF = "zoo"


def _key(sampler: str) -> str:
    return "fid_lenet" if sampler == "prior" else f"fid_lenet_{sampler}"


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--datasets", default="fashion-mnist,mnist")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--fid-images", type=int, default=5000)
    ap.add_argument("--samplers", default=",".join(SAMPLERS), help=f"which of {', '.join(SAMPLERS)} (default all)")


def main(b: Bench) -> None:
    from vaelab.api import evaluate_run

    a = b.args
    samplers = tuple(s for s in SAMPLERS if s in a.samplers.split(","))
    rows = []
    for ds in a.datasets.split(","):
        for m in a.models.split(","):
            run = train_or_reuse(m, ds, a.epochs, b.runs)
            cache = run / (f"samplers_fid{a.fid_images}.json" if samplers == SAMPLERS else
                           f"samplers_fid{a.fid_images}-{'-'.join(samplers)}.json")
            if cache.is_file():
                ev = json.loads(cache.read_text())
            else:
                print(f"evaluating {run}: FID of {', '.join(samplers)}", flush=True)
                ev = evaluate_run(run, ["fid"], update_report=False, fid_images=a.fid_images, samplers=samplers)
                cache.write_text(json.dumps(ev, indent=2))
            row = {"dataset": ds, "model": m, **{s: ev.get(_key(s)) for s in samplers}, "rfid": ev.get("rfid_lenet")}
            fitted = {s: row[s] for s in samplers if row[s] is not None}
            row["best_sampler"] = min(fitted, key=fitted.get) if fitted else None
            rows.append(row)
            print(row, flush=True)
    print_table(rows, ["dataset", "model", *samplers, "rfid", "best_sampler"])
    b.write(rows, epochs=a.epochs, fid_images=a.fid_images, runs=str(b.runs))
