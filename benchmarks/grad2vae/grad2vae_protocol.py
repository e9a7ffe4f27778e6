"""Grad2VAE's paper protocol (its Table 1): the one-class protocol on every class at the paper's schedule.

Part (e) of the grad2vae experiment (results: grad2vae_protocol.json, one entry per dataset and model,
merged with earlier calls): the one-class protocol on every class of each of --datasets, for each of
--models, at --epochs epochs with the paper's schedule (train.schedule=paper: learning rate 1e-3,
divided by 100 after half the epochs; batch 128), scored by nelbo (the paper's score), mse and the
library's default combo from the same models; with --limit the training images of each class are cut
(said in the results). Finished classes are reused and an interrupted class resumes from its
checkpoint, so the run can be completed over several sittings. --table prints the per-class table of
grad2vae_protocol.json as Markdown (with --limit: the entries of that cut) and stops.

    python -m benchmarks grad2vae_protocol --runs DIR [--datasets fashion-mnist,mnist] [--classes 0,1]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks._harness import Bench
from benchmarks.grad2vae._shared import add_cut_arguments, overrides

SMOKE = ["--datasets", "fashion-mnist", "--models", "grad2vae", "--epochs", "2", "--classes", "0", "--compile", "",
         "--limit", "100", "--test-limit", "100", "--set", "model.latent_dim=4"]
NEEDS = ("fashion-mnist",)  # the data its smoke test reads (besides scikit-learn's)


PAPER_TABLE1_MEAN = {"mnist": 0.9823, "fashion-mnist": 0.9639}  # Grad2VAE's Table 1 means, as the issue quotes them
PROTOCOL_SCORES = ("nelbo", "mse", "combo")


def _entry_key(model: str, limit: int | None) -> str:
    """The results key of a protocol entry: the model, with the training images' cut when there is one."""
    return model if limit is None else f"{model}-limit{limit}"



def merge(b: Bench, ds: str, key: str, entry: dict) -> None:
    """Put ``entry`` at results[ds][key] of grad2vae_protocol.json (Bench.update: under a lock). An entry of
    an earlier version under the bare model name with a cut of the training images moves to its own key."""
    def change(payload: dict) -> None:
        per_ds = payload["results"].setdefault(ds, {})
        for name, e in list(per_ds.items()):
            if "settings" not in e and e.get("training_images_per_class") is not None and name == e.get("model"):
                per_ds[_entry_key(name, e["training_images_per_class"])] = per_ds.pop(name)
        per_ds[key] = entry

    b.update(change)


def protocol_markdown(path: Path, limit: int | None = None) -> str:
    """The per-class table of part (e) from grad2vae_protocol.json, as the README shows it: one row per
    class, for each dataset grad2vae's and the vae's ROC-AUC by nelbo / mse / combo ('-' where a class
    is not finished), the means over the finished classes and the paper's Table 1 mean."""
    results = json.loads(path.read_text())["results"]
    cols, names = [], {}
    for ds in ("mnist", "fashion-mnist"):
        for model in ("grad2vae", "vae"):
            entry = results.get(ds, {}).get(_entry_key(model, limit))
            cols.append((ds, model, entry))
            if entry:
                names[ds] = entry["class_names"]

    def cell(entry: dict | None, c: int | None) -> str:
        if not entry:
            return "-"
        au = entry["auroc"]
        if c is None:
            done = len(entry.get("classes_done", entry["classes"]))
            return "**" + " / ".join(f"{au[s]['mean']:.3f}" for s in PROTOCOL_SCORES) + "**" + ("" if done == 10 else f" ({done})")
        row = {s: au[s]["per_class"].get(str(c)) for s in PROTOCOL_SCORES}
        return "-" if any(v is None for v in row.values()) else " / ".join(f"{row[s]['mean']:.3f}" for s in PROTOCOL_SCORES)

    head = ["class"] + [f"{'MNIST' if ds == 'mnist' else 'Fashion-MNIST'} {m} " + " / ".join(PROTOCOL_SCORES)
                        for ds, m, _ in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in range(10):
        label = " / ".join(str(names[ds][c]) for ds in ("mnist", "fashion-mnist") if ds in names and c < len(names[ds]))
        lines.append("| " + " | ".join([label or str(c)] + [cell(e, c) for _, _, e in cols]) + " |")
    paper = ", ".join(f"{'MNIST' if ds == 'mnist' else 'F-MNIST'} {v:.3f}" for ds, v in PAPER_TABLE1_MEAN.items())
    lines.append("| " + " | ".join([f"mean (paper, nelbo: {paper})"] + [cell(e, None) for _, _, e in cols]) + " |")
    return "\n".join(lines)


def paper_protocol(b: Bench, datasets: list[str], models: list[str], epochs: int, limit: int | None, test_limit: int | None,
                   classes: list[int] | None = None, compile_models: tuple[str, ...] = (), extra: dict | None = None) -> None:
    """(e), one class at a time: every finished class is written to grad2vae_protocol.json at once,
    with the full record of its run, and a later call with the same settings puts those records back
    into --runs before it starts (a run folder that is gone, a new machine), so the protocol goes on
    from the classes it finished, across sittings; an interrupted class resumes from its checkpoint
    while its run folder is there."""
    from vaelab.config import deep_merge
    from vaelab.detect import one_class_protocol
    from vaelab.detect.protocol import format_table, summarise

    path, runs = b.result_path(), b.runs
    data = {k: v for k, v in {"limit": limit, "test_limit": test_limit}.items() if v is not None}
    for ds in datasets:
        for model in models:
            train = {"schedule": "paper", "batch_size": 128, "lr": 1e-3, **({"compile": True} if model in compile_models else {})}
            overrides = deep_merge({"train": train, **({"data": data} if data else {})}, extra or {})
            settings = {"epochs": epochs, "overrides": overrides}
            old = (json.loads(path.read_text()).get("results", {}).get(ds, {}).get(_entry_key(model, limit), {})
                   if path.is_file() else {})
            finished = {int(c): row for c, row in old.get("finished_runs", {}).items()} if old.get("settings") == settings else {}
            out_dir = runs / "protocol" / ds / model
            for c, row in finished.items():  # the records of the classes finished before, where their folders are gone
                done = out_dir / "runs" / f"class{c}-seed0" / "result.json"
                if not done.is_file():
                    done.parent.mkdir(parents=True, exist_ok=True)
                    done.write_text(json.dumps(row, indent=2) + "\n")
            names: list[str] = []
            todo = classes if classes is not None else list(range(10))
            for c in todo:
                t0 = time.perf_counter()
                r = one_class_protocol(ds, model, epochs, 1, [c], list(PROTOCOL_SCORES), overrides, out_dir, log=print)
                names = r["class_names"]
                finished[c] = json.loads((out_dir / "runs" / f"class{c}-seed0" / "result.json").read_text())
                done_classes = sorted(finished)
                summary = summarise(list(finished.values()), list(PROTOCOL_SCORES), done_classes, [0], names)
                entry = {"dataset": ds, "model": model, "epochs": epochs, "schedule": "paper", "settings": settings,
                         "training_images_per_class": limit, "test_images": test_limit,
                         "complete": len(done_classes) == 10, "classes_done": done_classes,
                         "paper_table1_mean": PAPER_TABLE1_MEAN.get(ds),
                         "train_seconds": sum(row["train_seconds"] for row in finished.values()),
                         **{k: summary[k] for k in ("auroc", "classes", "class_names", "scores")},
                         "table": format_table({**summary, "dataset": ds, "model": model, "epochs": epochs}),
                         "finished_runs": {str(k): v for k, v in sorted(finished.items())}}
                merge(b, ds, _entry_key(model, limit), entry)
                means = ", ".join(f"{sc} {summary['auroc'][sc]['mean']:.4f}" for sc in PROTOCOL_SCORES)
                print(f"(e) {ds} {model}: class {c} done in {time.perf_counter() - t0:.0f} s; classes {done_classes}: "
                      f"mean ROC-AUC {means}; wrote {path}", flush=True)


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--datasets", default="fashion-mnist,mnist", help="datasets (default fashion-mnist,mnist)")
    ap.add_argument("--models", default="grad2vae,vae", help="models (default grad2vae,vae)")
    ap.add_argument("--epochs", type=int, default=30, help="epochs, lr / 100 after half (default 30)")
    ap.add_argument("--classes", default=None, help="which normal classes this call runs (default all 10)")
    ap.add_argument("--compile", default="grad2vae", help="models trained with train.compile=true (torch.compile "
                                                          "of the loss; default grad2vae, '' for none)")
    ap.add_argument("--table", action="store_true", help="print the per-class table of grad2vae_protocol.json as markdown "
                                                         "(with --limit: the entries of that cut) and stop")
    add_cut_arguments(ap, seed=False)


def main(b: Bench) -> None:
    a = b.args
    if a.table:
        print(protocol_markdown(b.result_path(), a.limit))
        return
    paper_protocol(b, [d for d in a.datasets.split(",") if d], [m for m in a.models.split(",") if m], a.epochs, a.limit,
                   a.test_limit, [int(c) for c in a.classes.split(",")] if a.classes else None,
                   tuple(m for m in a.compile.split(",") if m), overrides(a))
