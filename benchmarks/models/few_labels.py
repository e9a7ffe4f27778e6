"""Learning from few labels: stacked AEs, VAE features and the semi-supervised VAE with 100 and 1,000 labels.

Test accuracy with 100 and 1,000 labelled training images (the rest of
the training split unlabelled) on Fashion-MNIST and MNIST, mean and std over 3 seeds, of

  scratch     the stacked classifier (layers 512,256,64, ReLU) trained on the labels alone
  greedy      the same network from the same initial weights, greedily pretrained layer by layer as
              stacked autoencoders on every training image, then fine-tuned: step 1 the head only
              ('greedy_head'), step 2 the whole network ('greedy')
  vae_head    a conv VAE trained on every training image, frozen; the few-label two-layer head of
              vaelab.evaluate.representation (_fit_head) on its encoder's features (the network
              output before the latent heads), as the few_label metric does ('vae_head'), and on
              its latent means ('vae_latent_head')
  ssvae       the semi-supervised conv VAE (model.n_labels, model.xi): ELBO on every image + xi x
              label NLL of a classifier on the latent mean; its predict()

Every method sees the same labelled images for a seed: vaelab.train.batches.labelled_indices. The
VAE and the greedy pretraining are trained once per dataset and seed and shared by both label
counts; fine-tuning, the baseline and the semi-supervised VAE once per label count.

    VAELAB_DATA=../shared/data python -m benchmarks few_labels [--epochs 10] [--seeds 0,1,2]
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

from benchmarks._harness import Bench, fit_or_reuse, print_table

METHODS = ["scratch", "greedy_head", "greedy", "vae_head", "vae_latent_head", "ssvae"]
SMOKE = ["--datasets", "digits", "--labels", "20", "--seeds", "0", "--epochs", "1", "--finetune-epochs", "2",
         "--layers", "32,16"]


def run_dataset(ds: str, a: argparse.Namespace, seed: int, runs: Path) -> list[dict]:
    import torch

    from vaelab.config import parse_set
    from vaelab.data import DataConfig, load_data
    from vaelab.evaluate.classification import accuracy as model_accuracy
    from vaelab.evaluate.representation import _fit_head, encoder_features
    from vaelab.models import embed_images
    from vaelab.train import RunConfig
    from vaelab.train.batches import labelled_indices
    from vaelab.pretrain import PretrainConfig, accuracy, build_network, finetune, greedy_pretrain

    data = load_data(DataConfig(name=ds, limit=a.limit, test_limit=a.test_limit, val_fraction=0.0), seed=0)
    train, _, test = data
    n_classes = int(max(train.labels.max(), test.labels.max())) + 1
    rows = []

    def row(n, method, acc, t0, shared_seconds=0.0):
        """shared_seconds: the unsupervised training (pretraining, VAE) that every label count reuses."""
        r = {"dataset": ds, "n_labels": n, "seed": seed, "method": method, "acc": acc,
             "seconds": time.perf_counter() - t0, "shared_seconds": shared_seconds}
        print(f"  {ds} seed {seed} {n:>5} labels  {method:<12} acc {acc:.4f}  ({r['seconds']:.0f} s "
              f"+ {shared_seconds:.0f} s shared)", flush=True)
        rows.append(r)

    # greedy layer-wise pretraining: once per dataset and seed
    pcfg = PretrainConfig(layers=[int(u) for u in a.layers.split(",")], activation=a.activation, epochs_per_layer=a.epochs,
                          finetune_epochs=a.finetune_epochs, batch_size=a.batch_size, image_shape=list(train.shape),
                          n_classes=n_classes)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.perf_counter()
    net = build_network(pcfg, seed).to(dev)
    initial = {k: v.clone() for k, v in net.state_dict().items()}
    greedy_pretrain(net, train.images, pcfg, seed)
    pretrained = {k: v.clone() for k, v in net.state_dict().items()}
    pretrain_seconds = time.perf_counter() - t0

    # the unsupervised VAE: once per dataset and seed
    common = [f"data.name={ds}", "data.val_fraction=0.0", f"train.epochs={a.epochs}", f"train.batch_size={a.batch_size}",
              "train.progress_bar=false", f"model.latent_dim={a.latent_dim}", f"seed={seed}",
              *(f"data.{k}={v}" for k, v in (("limit", a.limit), ("test_limit", a.test_limit)) if v is not None)]
    vae, fit_seconds = fit_or_reuse(RunConfig.build("vae", parse_set(common)), runs / f"vae-{ds}-{seed}", data=data)
    t0 = time.perf_counter()
    ztr, zte = embed_images(vae, train), embed_images(vae, test)
    ftr, fte = encoder_features(vae, train), encoder_features(vae, test)
    vae_seconds = fit_seconds + time.perf_counter() - t0  # training (now or by an earlier call) and embedding

    for n in [int(v) for v in a.labels.split(",")]:
        idx = labelled_indices(len(train), n, seed)
        xl, yl = train.images[idx], train.labels[idx]
        t0 = time.perf_counter()
        base = build_network(pcfg, seed).to(dev)
        base.load_state_dict(initial)
        finetune(base, xl, yl, pcfg, "all", 2 * pcfg.finetune_epochs, seed)
        row(n, "scratch", accuracy(base, test.images, test.labels), t0)
        t0 = time.perf_counter()
        net.load_state_dict(pretrained)
        finetune(net, xl, yl, pcfg, "head", pcfg.finetune_epochs, seed)
        row(n, "greedy_head", accuracy(net, test.images, test.labels), t0, pretrain_seconds)
        finetune(net, xl, yl, pcfg, "all", pcfg.finetune_epochs, seed)
        row(n, "greedy", accuracy(net, test.images, test.labels), t0, pretrain_seconds)
        t0 = time.perf_counter()
        row(n, "vae_head", _fit_head(ftr[idx], yl, fte, test.labels, n_classes, seed), t0, vae_seconds)
        t0 = time.perf_counter()
        row(n, "vae_latent_head", _fit_head(ztr[idx], yl, zte, test.labels, n_classes, seed), t0, vae_seconds)
        ss, ss_seconds = fit_or_reuse(RunConfig.build("ssvae", parse_set(common + [f"model.n_labels={n}", f"model.xi={a.xi}",
                                                                                     f"model.n_classes={n_classes}"])),
                                      runs / f"ssvae-{ds}-{seed}-{n}", data=data)
        t0 = time.perf_counter() - ss_seconds  # its training (now or by an earlier call) and the scoring
        row(n, "ssvae", model_accuracy(ss, test)["accuracy"], t0)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    keys = sorted({(r["dataset"], r["n_labels"]) for r in rows}, key=lambda k: (k[0], k[1]))
    for ds, n in keys:
        for m in METHODS:
            accs = [r["acc"] for r in rows if r["dataset"] == ds and r["n_labels"] == n and r["method"] == m]
            if accs:
                out.append({"dataset": ds, "n_labels": n, "method": m, "acc_mean": statistics.fmean(accs),
                            "acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0, "seeds": len(accs)})
    return out


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--datasets", default="fashion-mnist,mnist")
    ap.add_argument("--labels", default="100,1000")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=10, help="VAE and semi-supervised VAE epochs; pretraining epochs per layer")
    ap.add_argument("--finetune-epochs", type=int, default=200, help="epochs on the labels of each fine-tuning step (scratch: twice)")
    ap.add_argument("--layers", default="512,256,64")
    ap.add_argument("--activation", default="relu", help="of the stacked layers (sigmoid: the classic stacked AEs)")
    ap.add_argument("--latent-dim", type=int, default=16)
    ap.add_argument("--xi", type=float, default=1.0, help="weight of the mean label NLL in the semi-supervised VAE")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--limit", type=int, default=None, help="training images (default: all)")
    ap.add_argument("--test-limit", type=int, default=None)


def main(b: Bench) -> None:
    a, runs = b.args, b.runs
    warnings.filterwarnings("ignore", ".*val_dataloader.*")  # data.val_fraction=0: every training image is used
    rows = []
    for ds in a.datasets.split(","):
        for seed in [int(s) for s in a.seeds.split(",")]:
            rows += run_dataset(ds, a, seed, runs)
    table = summarise(rows)
    print_table(table, ["dataset", "n_labels", "method", "acc_mean", "acc_std", "seeds"])
    b.write(table, per_seed=rows, epochs=a.epochs, finetune_epochs=a.finetune_epochs, layers=a.layers, activation=a.activation,
            latent_dim=a.latent_dim, xi=a.xi, limit=a.limit, test_limit=a.test_limit)
