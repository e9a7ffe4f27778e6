"""Discrete codes and adversarial terms: VQ-VAE against the VAE, FactorVAE's TC estimate, MIG on shapes.

Discrete codes and adversarial terms (#20), three parts:

(a) VQ-VAE against the VAE on Fashion-MNIST at the zoo's budget (default conv networks,
    5 epochs, latent 16 for the VAE): PSNR and SSIM of the test reconstructions, the codebook's
    perplexity and share of codes used on the test set, and FID (LeNet features, --fid-images
    samples) of the VQ-VAE's samples from its learned code prior (`code-prior`, whose bits per grid
    position on the test split are reported) beside the VAE's prior and GMM samples.
(b) FactorVAE's discriminator estimate of the total correlation against the beta-TCVAE minibatch
    (MSS) estimate of Chen et al. computed on the same trained FactorVAE (Fashion-MNIST, 5 epochs),
    both on the test split in batches of --tc-batch.
(c) MIG on vaelab's synthetic shapes (known factors) for factor-vae, beta-tcvae and beta-vae,
    --mig-seeds seeds each, --mig-epochs epochs, MLP networks, latent 10.

Runs live in --runs (reused when finished; by default the zoo's folder, whose runs of the same models
are reused).

    VAELAB_DATA=../shared/data python -m benchmarks discrete_adversarial [--runs DIR] [--parts a,b,c]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks._harness import Bench, print_table, train_or_reuse

SMOKE = ["--data", "digits", "--epochs", "1", "--fid-images", "64", "--code-prior-steps", "5", "--tc-batch", "64",
         "--mig-models", "beta-vae", "--mig-epochs", "1", "--mig-seeds", "1"]
RUNS_OF = "zoo"


def part_a(runs: Path, data: str, epochs: int, fid_images: int, code_prior_steps: int | None = None) -> dict:
    import vaelab
    from vaelab.data import load_data
    from vaelab.evaluate import evaluate
    from vaelab.evaluate.image_quality import feature_net_for, frechet_distance, _features
    from vaelab.data.imageset import to_unit_float
    from vaelab.generate import make_sampler
    from vaelab.train import RunConfig

    out = {}
    for name in ("vq-vae", "vae"):
        run = train_or_reuse(name, data, epochs, runs)
        cfg = RunConfig.load(run / "config.yaml")
        model = vaelab.load(run)
        train, _, test = load_data(cfg.data, cfg.seed)
        cache = run / (f"discrete_adversarial_a_fid{fid_images}.json" if code_prior_steps is None
                       else f"discrete_adversarial_a_fid{fid_images}_steps{code_prior_steps}.json")
        if cache.is_file():
            out[name] = json.loads(cache.read_text())
            continue
        row = {k: v for k, v in evaluate(model, test, ["recon", "elbo"], batch_size=cfg.train.eval_batch_size,
                                         seed=cfg.seed, train=train).items()
               if k in ("psnr", "ssim", "mse", "perplexity", "codes_used", "nelbo")}
        row["parameters"] = model.num_parameters()
        net = feature_net_for("lenet", test, train, cfg.seed)
        n = min(fid_images, len(test))
        real = _features(net, to_unit_float(test.images[:n]))
        samplers = ["code-prior"] if name == "vq-vae" else ["prior", "gmm"]
        for s in samplers:
            smp = make_sampler(s, seed=cfg.seed, **({"steps": code_prior_steps} if s == "code-prior" and code_prior_steps else {}))
            smp = smp.fit(model, train)
            row[f"fid_lenet_{s}"] = frechet_distance(_features(net, smp.sample(n)), real)
            if s == "code-prior":
                row["code_prior_test_bits_per_position"] = smp.bits_per_dim(test)
                row["code_prior_heldout_bits_per_position"] = smp.heldout_bits_per_dim_
                row["code_grid"] = list(model.grid[1:])
                row["num_codes"] = model.config.num_codes
        cache.write_text(json.dumps(row, indent=2))
        out[name] = row
        print(name, row, flush=True)
    return out


def part_b(runs: Path, data: str, epochs: int, batch: int) -> dict:
    import torch

    import vaelab
    from vaelab.data import load_data
    from vaelab.objectives.tc import tc_decomposition
    from vaelab.train import RunConfig

    run = train_or_reuse("factor-vae", data, epochs, runs)
    cfg = RunConfig.load(run / "config.yaml")
    model = vaelab.load(run)
    _, _, test = load_data(cfg.data, cfg.seed)
    disc, mss = [], []
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(test), generator=g)
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)
        for i in range(0, len(test) - batch + 1, batch):
            x = test.images[perm[i : i + batch]].float() / 255
            q = model.encode(x)
            z = q.rsample()
            disc.append(float(model.tc_estimate(z).mean()))
            t = tc_decomposition(z, q.mean, q.variance.log(), len(test), "mss", log_pz=model.prior().log_prob(z))
            mss.append(float(t["tc"].mean()))
    return {"discriminator_tc": sum(disc) / len(disc), "mss_tc": sum(mss) / len(mss), "batches": len(disc), "batch": batch,
            "gamma": model.config.gamma, "epochs": epochs}


def part_c(runs: Path, epochs: int, seeds: int, models: list[str]) -> dict:
    import statistics

    import vaelab
    from vaelab.data import load_data
    from vaelab.evaluate import evaluate
    from vaelab.train import RunConfig

    out = {}
    for name in models:
        vals = []
        for seed in range(seeds):
            run = train_or_reuse(name, "shapes", epochs, runs, [f"seed={seed}", "model.arch=mlp", "train.batch_size=64"],
                                 latent_dim=10, name=f"mig-{name}-shapes-e{epochs}-s{seed}")
            cfg = RunConfig.load(run / "config.yaml")
            _, _, test = load_data(cfg.data, cfg.seed)
            full = load_data(cfg.data.__class__(**{**cfg.data.__dict__, "val_fraction": 0.0}), cfg.seed)[0]
            vals.append(float(evaluate(vaelab.load(run), full, ["mig"], seed=cfg.seed)["mig"]))
            print(name, seed, vals[-1], flush=True)
        out[name] = {"mig": vals, "mean": statistics.mean(vals), "std": statistics.pstdev(vals)}
    return out


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--parts", default="a,b,c")
    ap.add_argument("--data", default="fashion-mnist", help="(a, b) the dataset")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--fid-images", type=int, default=5000, help="(a) images per side of the FID (default 5000)")
    ap.add_argument("--code-prior-steps", type=int, default=None, help="(a) Adam steps of the code prior (default: its own, 2000)")
    ap.add_argument("--tc-batch", type=int, default=500)
    ap.add_argument("--mig-models", default="factor-vae,beta-tcvae,beta-vae")
    ap.add_argument("--mig-epochs", type=int, default=30)
    ap.add_argument("--mig-seeds", type=int, default=3)


def main(b: Bench) -> None:
    a, runs = b.args, b.runs
    parts = {p.strip() for p in a.parts.split(",")}
    res: dict = {}
    if "a" in parts:
        res["vq_vs_vae"] = part_a(runs, a.data, a.epochs, a.fid_images, a.code_prior_steps)
        print_table([{"model": k, **v} for k, v in res["vq_vs_vae"].items()],
                    ["model", "psnr", "ssim", "perplexity", "codes_used", "fid_lenet_code-prior", "fid_lenet_prior",
                     "fid_lenet_gmm", "code_prior_test_bits_per_position"])
    if "b" in parts:
        res["factor_vae_tc"] = part_b(runs, a.data, a.epochs, a.tc_batch)
        print(res["factor_vae_tc"])
    if "c" in parts:
        res["mig_shapes"] = part_c(runs, a.mig_epochs, a.mig_seeds, a.mig_models.split(","))
        print_table([{"model": k, "mean": v["mean"], "std": v["std"]} for k, v in res["mig_shapes"].items()],
                    ["model", "mean", "std"])
    b.write(res, data=a.data, epochs=a.epochs, fid_images=a.fid_images, mig_epochs=a.mig_epochs,
                 mig_seeds=a.mig_seeds, runs=str(runs))

