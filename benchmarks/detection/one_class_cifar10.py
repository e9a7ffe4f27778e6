"""One-class CIFAR-10 with attribute restoration (arnet): train on one class, score the whole test set; ROC-AUC per class.

Ten tasks, each with one class normal and the other nine anomalies on the 10,000 test images
(`vaelab bench one-class`, i.e. `vaelab.api.one_class_run`). The model is `arnet` (colour and
orientation erased and restored, with a rotation head), trained --epochs per class on the
JPEG-compressed CIFAR-10 copy; its own scores `restoration` and `transform_nll` stand beside the
reconstruction scores `mse` and `ssim` of the same models. Three configurations (--config):

- `code-head`: the rotation head is a linear layer on the restoring autoencoder's code;
- `head-net`: the rotation head is its own classifier of the colour image turned four ways
  (`model.head_net=true`, RotNet-style, with flips and crops);
- `vae`: the detector's default before this benchmark, a conv `vae` with its default network, scored by the
  default `combo` (vaelab.detect.DEFAULT_COMBO), `mse` and `nelbo`.

The published from-scratch results this compares with are about 0.86 mean ROC-AUC (ARNet, GEOM).
Each configuration is kept under its own key of the results file, with its s/epoch. `--combo A,B`
(repeatable) adds the column `A+B`: the z-score mean of those scores of the same trained models (vaelab's
`combo`), computed per class and kept in its run directory.

    VAELAB_DATA=../shared/data python -m benchmarks one_class_cifar10 --config head-net [--epochs 10] [--runs DIR]

Rerunning into the same --runs reuses the trained classes and the scores already computed.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks._harness import Bench, print_table

SMOKE = ["--epochs", "1", "--classes", "0", "--set", "data.limit=100", "--set", "data.test_limit=50",
         "--set", "model.latent_dim=8", "--set", "model.head_width=4"]
NEEDS = ("cifar10",)
SCORES = {"arnet": "restoration,transform_nll,mse,ssim", "vae": "combo,mse,nelbo"}
CONFIGS = {"code-head": ("arnet", ["model.latent_dim=64", "model.transform_head=true"]),
           "head-net": ("arnet", ["model.latent_dim=64", "model.head_net=true"]),
           "vae": ("vae", [])}


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--config", choices=sorted(CONFIGS), default="head-net", help="the rotation head (default head-net)")
    ap.add_argument("--epochs", type=int, default=10, help="per class (default 10)")
    ap.add_argument("--classes", help="comma-separated normal classes (default: all ten)")
    ap.add_argument("--scores", default=None, help="comma-separated (default: arnet's four, or the vae's combo, mse, nelbo)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more run-config keys")
    ap.add_argument("--combo", action="append", default=[],
                    help="comma-separated scores whose combo (mean of z-scores) is added as a column (repeatable)")


def combo_roc_auc(run: Path, members: str, c: int) -> float:
    """ROC-AUC of the combo of ``members`` on the trained one-class run of class ``c`` (kept in the run)."""
    from sklearn.metrics import roc_auc_score

    import vaelab
    from vaelab.data import load_data
    from vaelab.detect import AutoencoderDetector
    from vaelab.train import RunConfig

    kept = run / f"combo-{members.replace(',', '+')}.json"
    if kept.is_file():
        return json.loads(kept.read_text())["roc_auc"]
    cfg = RunConfig.load(run / "config.yaml")
    train, _, test = load_data(cfg.data, cfg.seed)
    det = AutoencoderDetector(vaelab.load(run), "combo", combo=members, normalize=False, seed=cfg.seed,
                              batch_size=cfg.train.eval_batch_size).fit(train)
    auc = float(roc_auc_score((test.labels != c).numpy(), det.raw_scores(test)))
    kept.write_text(json.dumps({"members": members, "roc_auc": auc}) + "\n")
    return auc


def main(b: Bench) -> None:
    from vaelab.api import one_class_run
    from vaelab.config import parse_set

    a = b.args
    model, base = CONFIGS[a.config]
    sets = [*base, "train.progress_bar=false", *a.set]
    classes = [int(c) for c in a.classes.split(",")] if a.classes else None
    out, result = one_class_run("cifar10", model, a.epochs, 1, classes, a.scores or SCORES[model], parse_set(sets), b.runs,
                                keep_checkpoints=True)
    names = {c: v["name"] for c, v in result["auroc"][result["scores"][0]]["per_class"].items()}
    rows = [{"class": c, "name": names[c], **{s: result["auroc"][s]["per_class"][c]["mean"] for s in result["scores"]}}
            for c in names]
    columns = list(result["scores"])
    for combo in a.combo:
        col = combo.replace(",", "+")
        for r in rows:
            r[col] = combo_roc_auc(out / "runs" / f"class{r['class']}-seed0", combo, int(r["class"]))
        columns.append(col)
    rows.append({"class": "mean", "name": "", **{s: sum(r[s] for r in rows) / len(rows) for s in columns}})
    print_table(rows, ["class", "name", *columns])
    seconds = [json.loads(p.read_text())["train_seconds"] for p in sorted(out.glob("runs/*/result.json"))]
    per_epoch = sum(seconds) / len(seconds) / a.epochs if seconds else None
    print(f"{a.config}: {per_epoch:.1f} s/epoch (mean over {len(seconds)} classes)" if per_epoch else "", flush=True)
    entry = {"rows": rows, "summary": {f"{s}_mean_roc_auc": rows[-1][s] for s in columns},
             "classes": len(rows) - 1, "epochs": a.epochs, "model": model, "settings": sets, "seconds_per_epoch": per_epoch,
             "train_seconds_per_class": seconds,
             "command": b.command}

    def change(payload: dict) -> None:
        if isinstance(payload["results"], list):  # a file from before the configurations: the code head's
            payload["results"] = {"code-head": {"rows": payload.pop("results"), "summary": payload.pop("summary", {}),
                                                "epochs": payload.pop("epochs", None), "settings": payload.pop("settings", [])}}
            payload.pop("seconds", None)
        payload["results"][a.config] = entry
        payload["summary"] = {f"{cfg}_{k}": v for cfg, e in payload["results"].items() for k, v in e["summary"].items()}

    b.update(change)
