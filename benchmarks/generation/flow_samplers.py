"""The flow posterior (vae-iaf) and the samplers fitted to the codes on one dataset: NLL and held-out log p(z).

1. vae and vae-iaf, the same MLP networks and 16 latent units, trained --epochs each: test -ELBO and
   the importance-sampled NLL (k = --nll-k on the first --nll-images test images).
2. On the vae's codes E[z|x]: each sampler (prior, gmm, maf, iaf, two-stage) fitted on the training
   codes (20,000 at most, the samplers' default), its mean log-density of the held-out test codes and
   its fitting time. Does a flow beat the gmm? The table says.
Finished runs in --runs are reused, not retrained.

    python -m benchmarks flow_samplers [--data mnist] [--epochs 10] [--latent-dim 16] [--steps N] [--runs DIR]

writes benchmarks/results/NAME_DATA_dLATENT[_stepsN].json (NAME: --name, flow_samplers by default).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks._harness import Bench, add_metric_arguments, train_or_reuse

SMOKE = ["--data", "digits", "--epochs", "1", "--latent-dim", "4", "--nll-k", "4", "--nll-images", "32", "--steps", "20"]


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--data", default="mnist")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--latent-dim", type=int, default=16)
    add_metric_arguments(ap, nll_k=200, nll_images=1000)
    ap.add_argument("--steps", type=int, default=None, help="Adam steps of maf, iaf and two-stage (default: theirs, 2000)")


def main(b: Bench) -> None:
    import torch

    import vaelab
    from vaelab.api import evaluate_run
    from vaelab.data import load_data
    from vaelab.generate import make_sampler
    from vaelab.models import embed_images
    from vaelab.train import RunConfig

    a = b.args
    fit_kw = {} if a.steps is None else {"steps": a.steps}
    models = {}
    for name in ("vae", "vae-iaf"):
        run = train_or_reuse(name, a.data, a.epochs, b.runs, ["model.arch=mlp"], latent_dim=a.latent_dim,
                             name=f"{name}-{a.data}-d{a.latent_dim}-e{a.epochs}")
        ev = evaluate_run(run, ["elbo", "nll"], update_report=False, nll_k=a.nll_k, nll_images=a.nll_images)
        models[name] = {"nelbo": ev["nelbo"], "kl": ev["kl"], "nll": ev["nll"], "run_dir": str(run)}
        print(f"{name:8s} test -ELBO {ev['nelbo']:.2f}  KL {ev['kl']:.2f}  NLL (k={a.nll_k}, {a.nll_images} images) {ev['nll']:.2f}", flush=True)

    run = Path(models["vae"]["run_dir"])
    cfg = RunConfig.load(run / "config.yaml")
    model = vaelab.load(run)
    train, _, test = load_data(cfg.data, cfg.seed)
    held = embed_images(model, test)
    samplers, scores = {}, {}
    for name in ("prior", "gmm", "maf", "iaf", "two-stage"):
        torch.manual_seed(0)
        t = time.time()
        s = make_sampler(name, seed=0, **(fit_kw if name in ("maf", "iaf", "two-stage") else {})).fit(model, train)
        fit_s = time.time() - t
        lp = scores[name] = s.log_prob_codes(held)
        samplers[name] = {"heldout_log_p": float(lp.mean()), "heldout_log_p_se": float(lp.std() / len(lp) ** 0.5), "fit_seconds": fit_s}
        print(f"{name:10s} held-out mean log p(z) {lp.mean():9.3f} +- {samplers[name]['heldout_log_p_se']:.3f}  (fit {fit_s:.1f} s)", flush=True)
    for name in ("maf", "iaf", "two-stage"):  # paired over the same held-out codes
        diff = scores[name] - scores["gmm"]
        samplers[name]["minus_gmm"] = float(diff.mean())
        samplers[name]["minus_gmm_se"] = float(diff.std() / len(diff) ** 0.5)
        print(f"{name:10s} - gmm: {diff.mean():7.3f} +- {samplers[name]['minus_gmm_se']:.3f} nats per code (paired)")
    best_flow = max(("maf", "iaf"), key=lambda n: samplers[n]["heldout_log_p"])
    verdict = samplers[best_flow]["heldout_log_p"] > samplers["gmm"]["heldout_log_p"]
    print(f"best flow ({best_flow}) beats the gmm on held-out codes: {verdict}")
    result = f"{a.name}_{a.data}_d{a.latent_dim}" + ("" if a.steps is None else f"_steps{a.steps}")
    b.write({"models": models, "samplers": samplers, "flow_beats_gmm": verdict}, name=result, dataset=a.data, epochs=a.epochs,
            latent_dim=a.latent_dim, sampler_steps=a.steps or 2000, n_train_codes=min(len(train), 20_000), n_test_codes=len(held))

