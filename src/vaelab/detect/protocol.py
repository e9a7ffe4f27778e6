"""The one-class protocol: for each normal class c (and seed), train on the training images of c
only, score the whole test set, and measure ROC-AUC with anomaly = (label != c).

Each (class, seed) run lives in ``out_dir/runs/class<c>-seed<s>`` (config.yaml, model.safetensors,
logs; its resumable checkpoint is removed once it is scored unless ``keep_checkpoints``) beside
``result.json``; running the protocol again into the same ``out_dir`` reuses finished results and
resumes an interrupted run, so a long benchmark can be stopped and continued."""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..config import deep_merge
from ..data import DataConfig, load_data, load_split
from ..errors import ConfigError, ModelError, VaelabError
from ..fileio import atomic_write_json, atomic_write_text
from ..models import get_spec
from ..train import CHECKPOINT, RunConfig
from ..train import load_run
from .detector import DEFAULT_SCORE, AutoencoderDetector
from .scores import SCORES, density_free_scores, load_entry_points


def _as_list(v: str | Sequence[Any] | None, kind: type = str) -> list[Any] | None:
    if v is None:
        return None
    if isinstance(v, str):
        return [kind(p.strip()) for p in v.split(",") if p.strip()]
    return [kind(p) for p in v]


def one_class_protocol(dataset: str, model_name: str = "vae", epochs: int = 20, seeds: Sequence[int] | int = (0,),
                       classes: Sequence[int | str] | None = None, score: str | Sequence[str] = DEFAULT_SCORE,
                       overrides: dict[str, Any] | None = None, out_dir: str | Path = "runs/one-class",
                       keep_checkpoints: bool = False, detector_options: dict[str, Any] | None = None,
                       log: Callable[[str], None] | None = print, jobs: int = 1) -> dict[str, Any]:
    """Run the protocol; returns (and writes to ``out_dir/one_class.json``) per-score, per-class
    mean / std of ROC-AUC over seeds, the overall mean (mean of the class means) and its std over
    seeds, every run's numbers, and the table as text (also ``out_dir/one_class.txt``).

    ``score``: one score or several (a list or 'mse,nelbo'): each is a column, all from the same
    trained models. ``seeds``: a list, or a count n for seeds 0..n-1. ``classes``: default every
    class of the dataset. ``overrides``: nested run-config keys (e.g. {"model": {"arch": "mlp"}});
    data.name, data.classes and data.drop_classes are set by the protocol.

    ``jobs``: how many (class, seed) runs train at once, each in its own process with
    cpu_count // jobs torch threads (small models use many cores poorly, so 2 single-thread
    processes beat 1 two-thread one on a 2-core CPU: benchmarks/throughput.py measures it). Every
    run is seeded, so ``jobs`` changes the results only by the floating-point effects of the
    thread count."""
    scores = _as_list(score) or []
    load_entry_points()
    bad = [s for s in scores if s not in SCORES]
    if not scores or bad:
        raise ConfigError(f"unknown anomaly score(s) {bad or scores}; choose from: {', '.join(SCORES)}")
    spec = get_spec(model_name)
    for s in scores:  # refuse before training what cannot be scored after it
        sc = AutoencoderDetector(score=s, **(detector_options or {}))._make_score()
        if sc.needs_density and not spec.cls.has_density:
            raise ModelError(f"the {s!r} score needs a model with a posterior density and a prior (has_density: vae, iwae, "
                             f"bvae, ...); {model_name} has none. Use {', '.join(density_free_scores())} or a combo of those")
    seeds = list(range(seeds)) if isinstance(seeds, int) else _as_list(seeds, int)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be a count >= 1 or distinct integers, got {seeds}")
    if epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {epochs}")
    if not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs must be an integer >= 1, got {jobs!r}")
    overrides = dict(overrides or {})
    taken = [f"data.{k}" for k in ("name", "classes", "drop_classes") if k in (overrides.get("data") or {})]
    taken += [k for k in ("seed",) if k in overrides] + (["train.epochs"] if "epochs" in (overrides.get("train") or {}) else [])
    if taken:
        raise ConfigError(f"the one-class protocol sets {', '.join(taken)} itself; remove them from the overrides "
                          "(use --data, --epochs, --seeds, --classes)")
    say = log or (lambda _: None)
    out_dir = Path(out_dir)
    base = deep_merge({"train": {"progress_bar": False}}, overrides)
    probe = RunConfig.build(model_name, deep_merge(base, {"data": {"name": dataset}}))
    test_cfg = DataConfig(**{**probe.data.__dict__, "classes": None, "drop_classes": None})
    test_labels = load_split(test_cfg, "test", apply_class_filter=False)
    class_names = test_labels.class_names
    present = sorted(set(test_labels.labels.tolist())) if test_labels.labels is not None else []
    if not present:
        raise ConfigError(f"{dataset} has no labels: the one-class protocol needs labelled classes")
    named = _as_list(classes, str)  # numbers or class names
    classes = test_labels.class_ids(named, "classes") if named else present
    missing = [c for c in classes if c not in present]
    if missing:
        raise ConfigError(f"{dataset} has no class(es) {missing}; its classes are {present}")

    t_start = time.perf_counter()
    tasks = [(RunConfig.build(model_name, deep_merge(base, {"data": {"name": dataset, "classes": [c]},
                                                           "train": {"epochs": epochs}, "seed": seed})),
              c, seed, scores, out_dir / "runs" / f"class{c}-seed{seed}", keep_checkpoints, detector_options or {})
             for c in classes for seed in seeds]
    if jobs == 1 or len(tasks) == 1:
        runs = [_one_run(*t, say) for t in tasks]
    else:
        threads = max(1, (os.cpu_count() or 1) // jobs)
        with ProcessPoolExecutor(min(jobs, len(tasks)), mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_set_threads, initargs=(threads,)) as pool:
            futures = [pool.submit(_one_run, *t, print if log is not None else _silent) for t in tasks]
            runs = [f.result() for f in futures]
    result = summarise(runs, scores, classes, seeds, class_names)
    result.update({"dataset": dataset, "model": model_name, "epochs": epochs, "overrides": overrides, "jobs": jobs,
                   "detector_options": detector_options or {}, "seconds": time.perf_counter() - t_start})
    result["table"] = format_table(result)
    atomic_write_json(out_dir / "one_class.json", result)
    atomic_write_text(out_dir / "one_class.txt", result["table"] + "\n")
    say(result["table"])
    return result


def _set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def _silent(_: str) -> None:
    pass


def _one_run(cfg: RunConfig, c: int, seed: int, scores: list[str], run_dir: Path, keep_checkpoints: bool,
             detector_options: dict[str, Any], say: Callable[[str], None]) -> dict[str, Any]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    done = run_dir / "result.json"
    requested = json.loads(json.dumps(cfg.to_dict()))  # as asked, before training fills in the image shape
    specs = {s: _score_spec(s, detector_options) for s in scores}
    prev: dict[str, Any] = {}
    if done.is_file():
        prev = json.loads(done.read_text())
        if _as_current(prev.get("requested_config")) != requested or prev.get("detector_options", {}) != detector_options:
            raise ConfigError(f"{run_dir} holds a run of another configuration; choose another --out for this one")
    # a score is reused only if it was computed under the same definition (a changed default
    # combo or window is scored again from the saved model)
    kept = [s for s in prev.get("auroc", {})
            if prev.get("score_specs", {}).get(s) == (specs.get(s) or _score_spec(s, detector_options))]
    todo = [s for s in scores if s not in kept]
    if prev and not todo:
        say(f"class {c} seed {seed}: done before, " + ", ".join(f"{s} {prev['auroc'][s]:.4f}" for s in scores))
        return prev
    t0 = time.perf_counter()
    if done.is_file() or (run_dir / "model.safetensors").is_file() and not (run_dir / CHECKPOINT).is_file():
        model, (train, _, test) = load_run(run_dir), load_data(cfg.data, cfg.seed)  # trained: score it (again)
    else:
        resume = (run_dir / CHECKPOINT).is_file()
        if not resume and (run_dir / "config.yaml").is_file():
            shutil.rmtree(run_dir)  # this protocol's own run, killed before its first checkpoint: start it again
        from ..train import fit  # imports Lightning: only when training

        model, (train, _, test) = fit(cfg, run_dir, resume=resume)
    train_seconds = prev.get("train_seconds", time.perf_counter() - t0)
    y = (test.labels != c).numpy().astype(np.int64)
    row: dict[str, Any] = {"class": c, "seed": seed, "n_train": len(train), "n_test": len(test),
                           "train_seconds": train_seconds, "auroc": {}, "average_precision": {}, "score_seconds": {},
                           "score_specs": {}}
    for s in kept:
        for k in ("auroc", "average_precision", "score_seconds", "score_specs"):
            row[k][s] = prev[k][s]
    for s in todo:
        t1 = time.perf_counter()
        det = AutoencoderDetector(model, s, normalize=False, seed=seed, batch_size=cfg.train.eval_batch_size,
                                  **detector_options).fit(train)
        raw = det.raw_scores(test)
        row["auroc"][s] = float(roc_auc_score(y, raw))
        row["average_precision"][s] = float(average_precision_score(y, raw))
        row["score_seconds"][s] = time.perf_counter() - t1
        row["score_specs"][s] = specs[s]
    row.update({"requested_config": requested, "detector_options": detector_options, "run_dir": str(run_dir)})
    atomic_write_json(done, row)
    if not keep_checkpoints and (run_dir / CHECKPOINT).is_file():
        (run_dir / CHECKPOINT).unlink()
    say(f"class {c} seed {seed}: " + ", ".join(f"{s} {row['auroc'][s]:.4f}" for s in scores) + f" ({train_seconds:.0f} s)")
    return row


def _as_current(requested: dict[str, Any] | None) -> dict[str, Any] | None:
    """A run's saved config as this version writes it: keys added since take their defaults, so a
    newer vaelab still recognises (and reuses) the runs an older one finished."""
    try:
        return json.loads(json.dumps(RunConfig.from_dict(requested, saved=True).to_dict())) if requested else requested
    except VaelabError:
        return requested


def _score_spec(score: str, detector_options: dict[str, Any]) -> str:
    """The definition of ``score`` under the detector's options (see Score.spec)."""
    return AutoencoderDetector(score=score, **detector_options)._make_score().spec()


def summarise(runs: list[dict[str, Any]], scores: list[str], classes: list[int], seeds: list[int],
              class_names: list[str] | None = None) -> dict[str, Any]:
    """Per score: per class the ROC-AUC of each seed, their mean and (population) std; the overall
    mean of the class means, and the std over seeds of the class-averaged ROC-AUC."""
    auroc: dict[str, Any] = {}
    for s in scores:
        table = np.array([[next(r["auroc"][s] for r in runs if r["class"] == c and r["seed"] == sd) for sd in seeds]
                          for c in classes])  # [classes, seeds]
        per_class = {str(c): {"name": (class_names[c] if class_names and c < len(class_names) else str(c)),
                              "runs": table[i].tolist(), "mean": float(table[i].mean()), "std": float(table[i].std())}
                     for i, c in enumerate(classes)}
        per_seed = table.mean(0)
        auroc[s] = {"per_class": per_class, "mean": float(table.mean(1).mean()), "std": float(per_seed.std()),
                    "per_seed_mean": per_seed.tolist()}
    slim = [{k: v for k, v in r.items() if k != "requested_config"} for r in runs]
    return {"scores": scores, "classes": classes, "seeds": seeds, "class_names": class_names or [], "auroc": auroc,
            "runs": slim}


def format_table(result: dict[str, Any]) -> str:
    """Rows: the classes and their mean; columns: the method (model / score), 'mean ± std'."""
    scores, classes = result["scores"], result["classes"]
    model = result.get("model", "model")
    heads = [f"{model} ({s})" for s in scores]
    first = [f"{c} {result['auroc'][scores[0]]['per_class'][str(c)]['name']}".strip() for c in classes]
    if all(f == f"{c} {c}" for f, c in zip(first, classes)):
        first = [str(c) for c in classes]

    def cell(v: dict[str, Any]) -> str:
        return f"{v['mean']:.4f} ± {v['std']:.4f}" if len(result["seeds"]) > 1 else f"{v['mean']:.4f}"

    rows = [[f] + [cell(result["auroc"][s]["per_class"][str(c)]) for s in scores] for f, c in zip(first, classes)]
    rows.append(["mean"] + [cell(result["auroc"][s]) for s in scores])
    widths = [max(len(r[i]) for r in rows + [["normal class"] + heads]) for i in range(len(heads) + 1)]
    title = (f"One-class ROC-AUC on {result.get('dataset', '?')}: {result.get('epochs', '?')} epochs, "
             f"seeds {result['seeds']} (mean ± std over seeds)")
    line = lambda r: "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip()  # noqa: E731
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([title, line(["normal class"] + heads), sep, *map(line, rows[:-1]), sep, line(rows[-1])])
