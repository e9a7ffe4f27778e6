"""Colour images in bits per dimension: four VAEs and their bidirectional twins on CIFAR-10, 8-bit likelihoods.

Colour images and honest likelihoods (#21): the four VAEs and their bidirectional twins on CIFAR-10
under a discretised 8-bit likelihood, with bits per dimension on exact pixels.

Training uses all 50,000 CIFAR-10 training images (from the tarball, or offline from the JPEG copy in
$VAELAB_DATA/cifar10). Bits per dimension are measured only on images whose pixels are exact: the
exact-pixel test subset ($VAELAB_DATA/cifar10/cifar10_exact_subset.npz, 1,017 images; JPEG removes
exactly the detail bpd measures), with --nll-k importance samples on the first --nll-images of them.

Two stages, both resumable (every run directory under --runs is reused once finished):

1. choose: the VAE with each candidate network, likelihood, channel conditioning and bottleneck (CHOICES)
   for --choose-epochs epochs (a candidate measured by an earlier call whose run is gone keeps its figures), compared
   by the validation split's negative ELBO in bits per dimension (a bound on the JPEG validation
   images, the only number the choice looks at);
2. table: vae, beta-vae, beta-tcvae, iwae and their twins bvae, beta-bvae, beta-tcbvae, biwae with the
   chosen network and likelihood: parameters, seconds per epoch, bpd on the exact test images, FID of
   the prior's and the GMM sampler's samples (features of a LeNet trained on CIFAR-10's own labels,
   fid_lenet: not comparable with Inception FID), PSNR, SSIM and the linear probe on the run's test
   split;
3. fine-tune (--finetune-exact E): each table model trained E epochs more from its weights
   (train.init_from) on the exact-pixel training images (7,261 trained on, 807 held out), the peak
   learning rate chosen among --finetune-lrs by the vae's held-out bound, then bpd on the same exact
   test images (bpd_exact_finetuned).

    VAELAB_DATA=../shared/data python -m benchmarks colour --runs DIR [--choose-epochs 1] [--epochs 2] [--nll-images 200]
    python -m benchmarks colour --runs DIR --choice resnet-dlogistic-cc --models vae,bvae   # a subset; rows merge
    python -m benchmarks colour --table                                                       # Markdown of colour.json

writes benchmarks/results/colour.json.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from benchmarks._harness import Bench, add_metric_arguments, cifar10_exact, data_settings, print_table, train_or_reuse

PAIRS = [("vae", "bvae"), ("beta-vae", "beta-bvae"), ("beta-tcvae", "beta-tcbvae"), ("iwae", "biwae")]
# candidate (network, likelihood) settings for the colour default, compared on the VAE
CHOICES = {
    "conv-dgaussian": ["model.arch=conv", "model.likelihood=dgaussian"],
    "conv-dlogistic": ["model.arch=conv", "model.likelihood=dlogistic"],
    "resnet-dgaussian": ["model.arch=resnet", "model.likelihood=dgaussian"],
    "resnet-dlogistic": ["model.arch=resnet", "model.likelihood=dlogistic"],
    # the G and B means conditioned on R (and G), PixelCNN++'s coefficients
    "resnet-dlogistic-cc": ["model.arch=resnet", "model.likelihood=dlogistic", "model.channel_conditioning=true"],
    # a wider bottleneck: 256 latent units behind a 1,024-unit layer (the default is 64 behind 256)
    "resnet-dlogistic-z256": ["model.arch=resnet", "model.likelihood=dlogistic", "model.latent_dim=256",
                              "model.hidden_dim=1024"],
    "resnet-dlogistic-cc-z256": ["model.arch=resnet", "model.likelihood=dlogistic", "model.channel_conditioning=true",
                                 "model.latent_dim=256", "model.hidden_dim=1024"],
    # a code that is a map (model.latent_channels): C channels at the last stage's resolution, no fully
    # connected bottleneck; 8x8 behind two stages of 64 and 128 channels, or 16x16 behind one of 64;
    # batches of 64 (twice the steps per epoch of the default 128)
    "resnet-dlogistic-cc-map8x8x8": ["model.arch=resnet", "model.likelihood=dlogistic", "model.channel_conditioning=true",
                                     "model.conv_channels=[64,128]", "model.latent_channels=8", "train.batch_size=64"],
    "resnet-dlogistic-cc-map8x8x16": ["model.arch=resnet", "model.likelihood=dlogistic", "model.channel_conditioning=true",
                                      "model.conv_channels=[64,128]", "model.latent_channels=16", "train.batch_size=64"],
    "resnet-dlogistic-cc-map16x16x4": ["model.arch=resnet", "model.likelihood=dlogistic", "model.channel_conditioning=true",
                                       "model.conv_channels=[64]", "model.latent_channels=4", "train.batch_size=64"],
}
DIMS = 3 * 32 * 32
SMOKE = ["--data", "cifar10-exact", "--limit", "100", "--test-limit", "50", "--choices", "conv-dlogistic", "--epochs", "1", "--latent-dim", "16", "--models", "vae",
         "--nll-k", "4", "--nll-images", "20", "--fid-images", "64", "--finetune-exact", "1", "--finetune-lrs", "1e-3"]
NEEDS = ("cifar10-exact",)  # the data its smoke test reads (besides scikit-learn's)
COLS = ["model", "parameters", "param_ratio", "seconds_per_epoch", "bpd_exact", "bpd_exact_twin_minus_uni", "kl_nats",
        "fid_lenet_prior", "fid_lenet_gmm", "psnr", "ssim", "probe_linear_acc"]


def exact_test_npz(runs: Path) -> Path:
    """The exact-pixel test images as an .npz that `vaelab evaluate --test-data` reads (x_test, y_test)."""
    import numpy as np

    out = runs / "cifar10_exact_test.npz"
    if not out.is_file():
        z = np.load(cifar10_exact())
        tmp = out.with_suffix(".tmp.npz")
        np.savez(tmp, x_test=z["x_test"], y_test=z["y_test"])
        tmp.replace(out)
    return out


def train(model: str, settings: list[str], name: str, epochs: int, a: argparse.Namespace, runs: Path,
          data: str | None = None) -> Path:
    """Train (or resume, or reuse) ``model`` on --data (or ``data``) with ``settings`` into runs/NAME (the
    harness's train_or_reuse; --limit cuts the training images)."""
    # a code that is a map has its size from the map (latent_channels x h x w), not from --latent-dim
    latent = None if any(v.startswith("model.latent_channels=") for v in settings) else a.latent_dim
    source, where = data_settings(data or a.data)
    limit = [f"data.{k}={v}" for k, v in (("limit", a.limit), ("test_limit", a.test_limit)) if v]
    return train_or_reuse(model, source, epochs, runs, [*where, *limit, *settings], latent_dim=latent, name=name)


def val_bpd(run: Path) -> float:
    """The last epoch's validation negative ELBO in bits per dimension (from the run's metrics.csv)."""
    import csv

    rows = [r for r in csv.DictReader(open(run / "logs" / "metrics.csv")) if r.get("val/nelbo")]
    return float(rows[-1]["val/nelbo"]) / (DIMS * math.log(2))


def vaelab_evaluate(run: Path, metrics: str, **options) -> dict:
    """`vaelab evaluate RUN --metrics METRICS --json --no-report` with OPTIONS (--no-report: the table reads
    the numbers; redrawing the run's report would fit its GMM sampler once more)."""
    from vaelab.api import evaluate_run

    print(f"evaluating {run}: {metrics}", flush=True)
    return evaluate_run(run, metrics.split(","), update_report=False, **options)


def exact_bpd(run: Path, a: argparse.Namespace, exact: Path) -> dict:
    """The run's NLL on the exact test images (cached on its own in the run directory)."""
    done = run / f"colour_nll-k{a.nll_k}-n{a.nll_images}.json"
    if done.is_file():
        return json.loads(done.read_text())
    ex = vaelab_evaluate(run, "nll", test_data=str(exact), nll_k=a.nll_k, nll_images=a.nll_images)
    done.write_text(json.dumps(ex, indent=2))
    print(f"{run.name}: bpd {ex['bpd']:.4f} on the exact test images", flush=True)
    return ex


def evaluate(run: Path, a: argparse.Namespace, exact: Path) -> dict:
    """Every figure of the table for one run (cached in run/colour_metrics.json)."""
    done = run / "colour_metrics.json"
    if done.is_file():
        row = json.loads(done.read_text())
        # rows cached before kl_nats was kept: the run's own test-split KL, which `evaluate --metrics elbo` also gives
        row.setdefault("kl_nats", json.loads((run / "metrics.json").read_text()).get("kl"))
        return row

    ex = exact_bpd(run, a, exact)  # first: the other figures take longer (the GMM sampler's fit on 1,024-number codes)
    train_m = json.loads((run / "metrics.json").read_text())
    secs = train_m.get("train_seconds")
    if secs is None:  # a run killed after training, before its metrics: the span from its config to its last checkpoint
        secs = (run / "checkpoints" / "last.ckpt").stat().st_mtime - (run / "config.yaml").stat().st_mtime
    # the test-split ELBO, KL, PSNR and SSIM: the run's own metrics under --bpd-only (the same functions on the same
    # split); FID and the probe then stay blank and nothing is cached, so a later call without it measures them
    own = train_m if a.bpd_only else vaelab_evaluate(run, "elbo,recon,au,probes,fid", samplers=("prior", "gmm"),
                                                      fid_images=a.fid_images)
    row = {"run": str(run), "parameters": train_m["parameters"], "train_seconds": secs,
           "seconds_per_epoch": secs / a.epochs, "bpd_exact": ex["bpd"], "nll_exact_nats": ex["nll"],
           "nll_images": min(a.nll_images, ex["n_test"]),
           "nelbo_test_jpeg_bpd": own["nelbo"] / (DIMS * math.log(2)), "kl_nats": own.get("kl"), "psnr": own.get("psnr"),
           "ssim": own.get("ssim"), "active_units": own.get("active_units")}
    if a.bpd_only:
        return {**row, "bpd_only": True}
    row.update(fid_lenet_prior=own.get("fid_lenet"), fid_lenet_gmm=own.get("fid_lenet_gmm"), probe_linear_acc=own.get("probe_linear_acc"))
    done.write_text(json.dumps(row, indent=2))
    return row


def finetune(row: dict, model: str, settings: list[str], lr: float, a: argparse.Namespace, runs: Path) -> Path:
    """``model``'s table run, trained further on the 8,068 exact-pixel training images (train.init_from):
    7,261 train and 807 validation images (data.val_fraction 0.1), the learning rate annealed from ``lr``."""
    src = Path(row["run"])
    extra = [f"train.init_from={src}", f"train.lr={lr}", "train.schedule=onecycle"]
    settings = [v for v in settings if not v.startswith(("train.schedule=", "train.lr="))] + extra
    return train(model, settings, f"{src.name}-ftexact-lr{lr:g}-e{a.finetune_exact}", a.finetune_exact, a, runs,
                 "cifar10-exact")


def finetuned_bpd(run: Path, a: argparse.Namespace, exact: Path) -> dict:
    """bpd of a fine-tuned run on the same exact test images as the table (cached in run/colour_metrics.json)."""
    done = run / "colour_metrics.json"
    if done.is_file():
        return json.loads(done.read_text())
    ex = exact_bpd(run, a, exact)
    m = json.loads((run / "metrics.json").read_text())
    out = {"run": str(run), "bpd_exact": ex["bpd"], "val_nelbo_bpd": val_bpd(run),
           "seconds_per_epoch": m["train_seconds"] / a.finetune_exact}
    done.write_text(json.dumps(out, indent=2))
    return out


def tables(result: dict) -> str:
    """Markdown tables of colour.json: the choice stage, then the eight models."""
    lines = ["| candidate | settings | validation -ELBO (bpd) | s/epoch |", "|---|---|---|---|"]
    for name, c in sorted(result.get("choosing", {}).items(), key=lambda kv: kv[1]["val_nelbo_bpd"]):
        mark = " (chosen)" if name == result.get("choice") else ""
        settings = ", ".join(v.removeprefix("model.") for v in c.get("settings", CHOICES.get(name, [])))
        lines.append(f"| {name}{mark} | {settings} | {c['val_nelbo_bpd']:.3f} | {c['seconds_per_epoch']:.0f} |")
    lines += ["", "| model | parameters | ratio | s/epoch | bpd (exact test) | twin - uni | KL (nats) | FID prior | FID GMM | PSNR | SSIM | "
                  "linear probe | bpd fine-tuned on exact pixels |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def f(v, fmt):
        return "" if v is None else format(v, fmt)

    for r in result["results"]:
        lines.append(f"| {r['model']} | {r['parameters']:,} | {f(r.get('param_ratio'), '.3f')} | {r['seconds_per_epoch']:.0f} | "
                     f"{r['bpd_exact']:.3f} | {f(r.get('bpd_exact_twin_minus_uni'), '+.3f')} | {f(r.get('kl_nats'), '.1f')} | "
                     f"{f(r.get('fid_lenet_prior'), '.1f')} | "
                     f"{f(r.get('fid_lenet_gmm'), '.1f')} | {f(r.get('psnr'), '.2f')} | {f(r.get('ssim'), '.3f')} | "
                     f"{f(r.get('probe_linear_acc'), '.3f')} | {f(r.get('bpd_exact_finetuned'), '.3f')} |")
    ft = result.get("finetune")
    if ft:
        lines += ["", "| fine-tuning peak learning rate | vae: validation -ELBO on exact pixels (bpd) |", "|---|---|"]
        lines += [f"| {lr}{' (chosen)' if float(lr) == ft['lr'] else ''} | {v:.3f} |" for lr, v in ft["choosing"].items()]
    return "\n".join(lines)


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--table", action="store_true", help="print the Markdown tables of colour.json and stop")
    ap.add_argument("--data", default="cifar10", help="the training images of stages 1 and 2 (cifar10-exact: the exact-pixel subset)")
    ap.add_argument("--limit", type=int, default=None, help="at most this many training images, every stage (default: all)")
    ap.add_argument("--test-limit", type=int, default=None, help="at most this many images of each run's own test split "
                                                                 "(its report and figures; default: all)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs of each of the eight models")
    ap.add_argument("--choose-epochs", type=int, default=1, help="epochs of each stage-1 candidate")
    ap.add_argument("--latent-dim", type=int, default=64)
    add_metric_arguments(ap, nll_k=1000, nll_images=200, fid_images=5000)  # bpd on the first --nll-images of the 1,017
    ap.add_argument("--choice", default=None, help="skip stage 1 and use this CHOICES entry")
    ap.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting added to the chosen ones for the table's eight models (repeatable; part of their run names)")
    ap.add_argument("--choose-only", action="store_true", help="run stage 1, record it in colour.json and stop")
    ap.add_argument("--choices", default=",".join(CHOICES), help="the CHOICES entries stage 1 compares (default: all)")
    ap.add_argument("--candidates", default=None,
                    help="comma-separated CHOICES entries that stage 1 trains now; the others keep the figures an earlier "
                         "call measured (two calls with disjoint sets run side by side, OMP_NUM_THREADS=1 each)")
    ap.add_argument("--finetune-exact", type=int, default=0, metavar="EPOCHS",
                    help="then train each model this many epochs more on the exact-pixel training images (0: not)")
    ap.add_argument("--finetune-lrs", default="1e-4,3e-4,1e-3",
                    help="peak learning rates tried for the fine-tuning on the vae; the one with the lowest validation bound "
                         "on exact pixels is used for every model")
    ap.add_argument("--bpd-only", action="store_true",
                    help="a run without its full figures yet gets only parameters, seconds per epoch and bpd (the rest blank)")
    ap.add_argument("--models", default=None, help="comma-separated subset of the eight (default: all)")


def main(b: Bench) -> None:
    a, runs = b.args, b.runs
    if a.table:
        print(tables(b.previous()))
        return
    runs.mkdir(parents=True, exist_ok=True)
    exact = exact_test_npz(runs)

    old = b.previous()
    choosing = {}
    if a.choice is None:
        compared = {k: v for k, v in CHOICES.items() if k in a.choices.split(",")}
        now = set(a.candidates.split(",")) if a.candidates else set(compared)
        if now - set(compared) or not compared:
            raise SystemExit(f"--candidates / --choices: unknown {', '.join(sorted(now - set(compared)))}; CHOICES has "
                             f"{', '.join(CHOICES)}")
        for name, settings in compared.items():
            run = runs / f"choose-vae-{name}-e{a.choose_epochs}"
            kept = old.get("choosing", {}).get(name)
            if name not in now and not (run / "metrics.json").is_file():
                if kept and kept.get("epochs") == a.choose_epochs:
                    choosing[name] = {**kept, "settings": settings}
                    print(f"choose {name}: validation nELBO {kept['val_nelbo_bpd']:.4f} bpd (measured earlier, kept)", flush=True)
                else:
                    print(f"choose {name}: not measured yet (not in --candidates)", flush=True)
                continue
            if not (run / "metrics.json").is_file() and kept and kept.get("epochs") == a.choose_epochs:
                # measured by an earlier call whose run directory is gone: keep its figures, say so
                choosing[name] = {**kept, "settings": settings, "run": kept.get("run", "(earlier call)")}
                print(f"choose {name}: validation nELBO {kept['val_nelbo_bpd']:.4f} bpd (measured earlier, kept)", flush=True)
                continue
            run = train("vae", settings, f"choose-vae-{name}-e{a.choose_epochs}", a.choose_epochs, a, runs)
            choosing[name] = {"val_nelbo_bpd": val_bpd(run), "epochs": a.choose_epochs, "settings": settings,
                              "run": str(run), "parameters": json.loads((run / "metrics.json").read_text())["parameters"],
                              "seconds_per_epoch": json.loads((run / "metrics.json").read_text())["train_seconds"] / a.choose_epochs}
            print(f"choose {name}: validation nELBO {choosing[name]['val_nelbo_bpd']:.4f} bpd, "
                  f"{choosing[name]['seconds_per_epoch']:.0f} s/epoch", flush=True)
        missing = set(compared) - set(choosing)
        if missing:  # a partial stage 1 (--candidates): record what it measured, choose once every candidate has figures
            now_old = b.previous()  # a call beside this one may have written
            merged = {**now_old, "choosing": {**now_old.get("choosing", {}), **choosing}} if now_old else None
            if merged is not None:
                b.write_json(b.result_path(), merged)
            print(f"not chosen yet: {', '.join(sorted(missing))} have no figures; run them with --candidates", flush=True)
            return
        choice = min(choosing, key=lambda n: choosing[n]["val_nelbo_bpd"])
        print(f"chosen: {choice}", flush=True)
        if a.choose_only:
            now_old = b.previous()
            keep = now_old.get("choice") == choice  # the table's rows belong to the choice they were trained with
            stamp = ("benchmark", "results", *b.stamp())
            b.write(now_old.get("results", []) if keep else [],
                    **{k: v for k, v in now_old.items() if keep and k not in stamp},
                    choice=choice, choice_settings=CHOICES[choice], choosing=choosing, choose_epochs=a.choose_epochs)
            return
    else:
        choice = a.choice
        if choice not in CHOICES:
            raise SystemExit(f"--choice {choice}: not in CHOICES ({', '.join(CHOICES)})")
        choosing = old.get("choosing", {})  # stage 1 as an earlier call recorded it
    settings = CHOICES[choice] + a.extra
    tag = "".join("-" + v.split(".", 1)[-1].replace("=", "") for v in a.extra)  # e.g. -scheduleonecycle
    wanted = set(a.models.split(",")) if a.models else None

    rows = []
    for uni, bi in PAIRS:
        pair = {}
        for m in (uni, bi):
            if wanted is not None and m not in wanted:
                continue
            name = f"{m}-{choice}{tag}-e{a.epochs}"
            run = train(m, settings, name, a.epochs, a, runs)
            pair[m] = {"model": m, **evaluate(run, a, exact)}
        rows += list(pair.values())
        for r in pair.values():
            print(f"{r['model']}: bpd {r['bpd_exact']:.4f}, FID prior {r.get('fid_lenet_prior')}, gmm {r.get('fid_lenet_gmm')}, "
                  f"PSNR {r.get('psnr')}, {r['seconds_per_epoch']:.0f} s/epoch", flush=True)
    ft_meta = None
    if a.finetune_exact and rows:
        vae_row = next((r for r in rows if r["model"] == "vae"), None)
        if vae_row is None:  # the choice needs the vae's table run
            vae_row = {"model": "vae", "run": str(train("vae", settings, f"vae-{choice}{tag}-e{a.epochs}", a.epochs, a, runs))}
        tried = {}
        for lr in [float(v) for v in a.finetune_lrs.split(",")]:
            tried[f"{lr:g}"] = val_bpd(finetune(vae_row, "vae", settings, lr, a, runs))
            print(f"fine-tune lr {lr:g}: vae validation -ELBO on exact pixels {tried[f'{lr:g}']:.4f} bpd", flush=True)
        lr = float(min(tried, key=tried.get))
        ft_meta = {"epochs": a.finetune_exact, "lr": lr, "choosing": tried, "images": "exact-pixel train subset: 7,261 train, 807 validation"}
        for r in rows:
            got = finetuned_bpd(finetune(r, r["model"], settings, lr, a, runs), a, exact)
            r.update(bpd_exact_finetuned=got["bpd_exact"], finetune_seconds_per_epoch=got["seconds_per_epoch"],
                     finetune_run=got["run"])
            print(f"{r['model']}: fine-tuned on exact pixels, bpd {got['bpd_exact']:.4f}", flush=True)
    # keep the rows of models an earlier call measured with the same choice and budget (--models runs a subset);
    # read again now: a call running beside this one may have written its rows since this one started
    old = b.previous()
    if old:
        # epochs None: only stage 1 recorded so far
        if old.get("choice") == choice and old.get("epochs") in (a.epochs, None) and old.get("table_settings", a.extra) == a.extra:
            have = {r["model"] for r in rows}
            before = {r["model"]: r for r in old["results"]}
            for r in rows:  # a fine-tuning an earlier call measured from this same run stays with its row
                b = before.get(r["model"], {})
                if "bpd_exact_finetuned" not in r and b.get("run") == r["run"] and "bpd_exact_finetuned" in b:
                    r.update({k: b[k] for k in ("bpd_exact_finetuned", "finetune_seconds_per_epoch", "finetune_run") if k in b})
            rows = [r for r in old["results"] if r["model"] not in have] + rows
            if ft_meta is None or old.get("finetune", {}).get("epochs") == a.finetune_exact:
                ft_meta = ft_meta or old.get("finetune")
        choosing = choosing or old.get("choosing", {})
    order = [m for pair in PAIRS for m in pair]
    rows.sort(key=lambda r: order.index(r["model"]))
    by = {r["model"]: r for r in rows}
    for uni, bi in PAIRS:  # after the merge: a twin and its model may come from two calls
        if uni in by and bi in by:
            by[bi]["param_ratio"] = by[bi]["parameters"] / by[uni]["parameters"]
            by[bi]["bpd_exact_twin_minus_uni"] = by[bi]["bpd_exact"] - by[uni]["bpd_exact"]
    print_table(rows, COLS)
    best = min(rows, key=lambda r: r["bpd_exact"]) if rows else None
    latent = next((int(v.split("=", 1)[1]) for v in settings if v.startswith("model.latent_dim=")), a.latent_dim)
    if any(v.startswith("model.latent_channels=") for v in settings) and rows:  # the map's size, from a trained run
        import yaml

        latent = yaml.safe_load((Path(rows[0]["run"]) / "config.yaml").read_text())["model"]["latent_dim"]
    b.write(rows, epochs=a.epochs, latent_dim=latent, nll_k=a.nll_k, nll_images=a.nll_images,
                 fid_images=a.fid_images, choice=choice, choice_settings=CHOICES[choice], table_settings=a.extra, choosing=choosing,
                 best={"model": best["model"], "bpd_exact": best["bpd_exact"]} if best else None, finetune=ft_meta,
                 data="CIFAR-10 train: all 50,000 images; bpd: the exact-pixel test subset" if a.data == "cifar10" and not a.limit
                 else f"{a.data}, {a.limit or 'all'} training images; bpd: the exact-pixel test subset")

