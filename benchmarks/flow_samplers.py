"""The flow posterior and the samplers fitted to the codes (#19) on one dataset.

1. vae and vae-iaf, the same MLP networks and 16 latent units, trained --epochs each: test -ELBO and
   the importance-sampled NLL (k = --nll-k on the first --nll-images test images).
2. On the vae's codes E[z|x]: each sampler (prior, gmm, maf, iaf, two-stage) fitted on the training
   codes (20,000 at most, the samplers' default), its mean log-density of the held-out test codes and
   its fitting time. Does a flow beat the gmm? The table says.
Finished runs in --out are reused, not retrained.

    python benchmarks/flow_samplers.py [--data mnist] [--epochs 10] [--latent-dim 16] [--steps N] [--out DIR]

writes benchmarks/results/flow_samplers_DATA_dLATENT[_stepsN].json.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_result  # noqa: E402


def main() -> None:
    import torch

    import vaelab
    from vaelab.api import evaluate_run, train_run
    from vaelab.config import parse_set
    from vaelab.data import load_data
    from vaelab.generate import make_sampler
    from vaelab.models import embed_images
    from vaelab.train import RunConfig

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="mnist")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--latent-dim", type=int, default=16)
    ap.add_argument("--nll-k", type=int, default=200)
    ap.add_argument("--nll-images", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=None, help="Adam steps of maf, iaf and two-stage (default: theirs, 2000)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    fit_kw = {} if a.steps is None else {"steps": a.steps}
    out = Path(a.out or tempfile.mkdtemp(prefix="vaelab-flows-"))
    models = {}
    for name in ("vae", "vae-iaf"):
        run = out / f"{name}-{a.data}-d{a.latent_dim}-e{a.epochs}"
        cfg = RunConfig.build(name, parse_set([f"data.name={a.data}", "model.arch=mlp", f"model.latent_dim={a.latent_dim}",
                                               f"train.epochs={a.epochs}", "train.progress_bar=false"]))
        if not (run / "metrics.json").is_file():
            t = time.time()
            train_run(cfg, run)
            print(f"trained {name} in {time.time() - t:.0f} s", flush=True)
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
    result = f"flow_samplers_{a.data}_d{a.latent_dim}" + ("" if a.steps is None else f"_steps{a.steps}")
    write_result(result, {"models": models, "samplers": samplers, "flow_beats_gmm": verdict},
                 dataset=a.data, epochs=a.epochs, latent_dim=a.latent_dim, sampler_steps=a.steps or 2000, n_train_codes=min(len(train), 20_000), n_test_codes=len(held))


if __name__ == "__main__":
    main()
