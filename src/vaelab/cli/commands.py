"""The `vaelab` subcommands: each turns its parsed options into one call of vaelab.api and prints
what it returns (results on stdout as JSON or paths; progress and notes go to stderr)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from ..config import deep_merge, parse_set

    o: dict[str, Any] = {}
    direct = {
        ("data", "name"): getattr(args, "data", None),
        ("model", "latent_dim"): getattr(args, "latent_dim", None),
        ("train", "epochs"): getattr(args, "epochs", None),
        ("train", "batch_size"): getattr(args, "batch_size", None),
        ("train", "lr"): getattr(args, "lr", None),
        ("seed",): getattr(args, "seed", None),
    }
    for path, value in direct.items():
        if value is None:
            continue
        node = o
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = value
    return deep_merge(o, parse_set(getattr(args, "set", None)))


def class_list(text: str) -> list[int | str]:
    """A comma list of classes: numbers as numbers, anything else a class name (resolved against the data)."""
    return [int(c) if c.strip().lstrip("-").isdigit() else c.strip() for c in text.split(",") if c.strip()]


def _score_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of the anomaly scores given on the command line (the flags the parser made from the registry)."""
    return {k: getattr(args, f"score_option_{k}") for k in getattr(args, "score_options", ())
            if getattr(args, f"score_option_{k}") is not None}


def _strict_dumps(obj: Any, **kw: Any) -> str:
    """JSON for stdout as the files are written: no NaN literal (null, with null_reasons)."""
    from ..fileio import strict_json

    return json.dumps(strict_json(obj), allow_nan=False, **kw)


def cmd_train(args: argparse.Namespace) -> int:
    from ..api import train_job

    run_dir, metrics = train_job(args.model, _overrides(args), args.out, args.resume)
    shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}
    print(_strict_dumps(shown))
    print(f"report: {(run_dir / 'report.html').resolve()}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..api import evaluate_run

    metrics = [m.strip() for m in args.metrics.split(",")] if args.metrics else None
    opts = {k: getattr(args, k) for k in args.metric_options if getattr(args, k) is not None}  # the metric options given
    if args.no_report and (args.report or args.figures):
        from ..errors import ConfigError

        raise ConfigError("--report and --figures redraw report.html and --no-report leaves the run untouched; give one of them")
    result = evaluate_run(args.run_dir, metrics, update_report=not args.no_report, test_data=args.test_data,
                          redraw=args.report or args.figures or not args.json, run_data=args.run_data,
                          figures=True if args.figures else None, **opts)
    if args.json:
        print(json.dumps(result))
    else:
        width = max(len(k) for k in result)
        for k, v in result.items():
            print(f"{k:<{width}}  {v:.4f}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    from ..api import interpolate_run

    print(interpolate_run(args.run_dir, args.out, args.pairs, args.steps, args.mode))
    return 0


def cmd_traverse(args: argparse.Namespace) -> int:
    from ..api import traverse_run

    units = [int(u) for u in args.units.split(",")] if args.units else None
    print(traverse_run(args.run_dir, args.out, args.index, args.span, args.steps, units))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from ..api import sample_run

    print(sample_run(args.run_dir, args.n, args.out, args.seed, args.sampler, args.class_, run_data=args.run_data))
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from ..api import reconstruct_run

    print(reconstruct_run(args.run_dir, args.out, args.n, args.noisy))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from ..api import explain_run

    print(explain_run(args.run_dir, args.method, args.data, args.n, args.out, args.anomaly, args.layer, args.unit, args.seed))
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from ..config import deep_merge, parse_set
    from ..errors import ConfigError

    try:
        layers = [int(u) for u in args.layers.split(",") if u.strip()]
    except ValueError:
        raise ConfigError(f"--layers takes comma-separated layer widths such as 512,256,64; got {args.layers!r}") from None
    labels: int | None
    if args.labels is None or args.labels.lower() == "all":
        labels = None if args.labels else 1000
    else:
        try:
            labels = int(args.labels)
        except ValueError:
            raise ConfigError(f"--labels takes a number of labelled images or 'all'; got {args.labels!r}") from None
    over: dict[str, Any] = {"data": {"name": args.data}, "pretrain": {"layers": layers, "n_labels": labels}}
    for key, value in (("epochs_per_layer", args.epochs_per_layer), ("finetune_epochs", args.finetune_epochs)):
        if value is not None:
            over["pretrain"][key] = value
    if args.seed is not None:
        over["seed"] = args.seed
    over = deep_merge(over, parse_set(args.set))
    from ..api import pretrain_run  # the heavy imports, once the arguments are known to be good

    run_dir, metrics = pretrain_run(over, args.out)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}))
    print(f"report: {(run_dir / 'report.html').resolve()}")
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    from ..api import detect_run

    opts = _score_options(args)
    if args.norm_range is not None:
        opts["norm_range"] = args.norm_range  # a name or LOW,HIGH: the detector reads both
    anomaly = class_list(args.anomaly_classes) if args.anomaly_classes else None
    if args.threshold_rule:
        opts["threshold_rule"] = args.threshold_rule
    if args.fpr is not None:
        opts["fpr"] = args.fpr
    out, metrics = detect_run(args.run_dir, args.data, args.split, args.score, args.threshold, args.contamination,
                              args.out, anomaly, val_data=args.val_data, val_split=args.val_split,
                              maps=[m.strip() for m in args.maps.split(",") if m.strip()] if args.maps else None,
                              run_data=args.run_data, fdr=args.fdr, group_by_label=args.group_by_label, **opts)
    shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}
    print(json.dumps(shown))
    print(f"report: {(out / 'report.html').resolve()}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..api import export_run

    opts = {**_score_options(args), **{k: v for k, v in {"threshold": args.threshold, "contamination": args.contamination}.items()
                                       if v is not None}}
    out = export_run(args.run_dir, args.out, args.format, args.score, run_data=args.run_data, **opts)
    print(json.dumps(json.loads((out / "manifest.json").read_text())))
    print(f"bundle: {out.resolve()}")
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    from ..api import app_run

    opts = {**_score_options(args), **{k: v for k, v in {"threshold": args.threshold, "contamination": args.contamination}.items()
                                       if v is not None}}
    print(f"fitting the detector of {args.run_dir}, then serving on http://{args.host}:{args.port or 7860} "
          "(Ctrl-C stops it)", flush=True)
    app_run(args.run_dir, args.host, args.port, args.score, args.examples, block=True, **opts)
    return 0


def cmd_bench_one_class(args: argparse.Namespace) -> int:
    from ..api import one_class_run
    from ..config import parse_set
    from ..errors import ConfigError

    try:
        seeds: Any = [int(s) for s in args.seeds.split(",") if s.strip()] if "," in args.seeds else int(args.seeds)
    except ValueError:
        raise ConfigError(f"--seeds takes a count (3: seeds 0, 1, 2) or a comma list (0,4,7); got {args.seeds!r}") from None
    classes = class_list(args.classes) if args.classes else None
    out, result = one_class_run(args.data, args.model, args.epochs, seeds, classes, args.score, parse_set(args.set),
                                args.out, keep_checkpoints=args.keep_checkpoints, jobs=args.jobs)
    print(f"results: {(out / 'one_class.json').resolve()}  (mean ROC-AUC: "
          + ", ".join(f"{s} {result['auroc'][s]['mean']:.4f}" for s in result["scores"]) + ")")
    return 0


def cmd_data_build_ood_study(args: argparse.Namespace) -> int:
    from ..api import build_ood_study_file
    from ..errors import ConfigError

    classes = class_list(args.classes)
    if not classes:
        raise ConfigError(f"--classes takes comma-separated classes such as 0,1,2,3,4 (numbers or names); got {args.classes!r}")
    sizes = build_ood_study_file(args.out, classes, args.seed, args.n_labeled, args.n_normal, args.anomaly_fraction,
                                 data=args.data)
    print(json.dumps(sizes))
    print(f"wrote {Path(args.out).resolve()}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from ..api import compare_runs

    out = args.out if args.out or args.json else "compare.html"
    path, table = compare_runs(args.runs, out)
    if args.json:
        print(_strict_dumps(table, indent=1))
    if path is not None:
        print(f"comparison: {path.resolve()}")
    return 0


def cmd_data_build_defects(args: argparse.Namespace) -> int:
    from ..api import build_defects_file

    sizes = build_defects_file(args.out, args.data, args.kind, args.fraction, args.seed, test_limit=args.test_limit,
                               path=args.path)
    print(json.dumps(sizes))
    print(f"wrote {Path(args.out).resolve()}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from ..api import list_datasets

    listing = list_datasets(declared=args.verbose)
    print("search order: " + ", ".join(listing["search_order"]) + ", then download\n")
    for row in listing["sources"]:
        print(f"{row['name']:<14} {row['description']}\n{'':<14} {row['status']}")
        if args.verbose:
            print(f"{'':<14} " + "; ".join(f"{k}: {v}" for k, v in row["declared"].items()))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from ..api import list_models

    for row in list_models(options=args.verbose):
        print(f"{row['name']:<16} {row['description']}")
        for opt in row.get("options", ()):  # each option with this model's default and its meaning
            print(f"{'':<4}{opt['key'] + ' = ' + opt['default']:<40}" + (f" {opt['meaning']}" if opt["meaning"] else ""))
    return 0


def cmd_scores(args: argparse.Namespace) -> int:
    from ..api import list_scores

    rows = list_scores(options=args.verbose)
    width = max([len(o["name"]) + len(o["default"]) + 5 for r in rows for o in r.get("options", ())] + [36])
    print(f"{'name':<14} {'family':<15} {'exports':<8} {'needs':<34} description")
    for row in rows:
        print(f"{row['name']:<14} {row['family']:<15} {'yes' if row['exportable'] else 'no':<8} {row['needs']:<34} "
              f"{row['description']}")
        for opt in row.get("options", ()):  # each option with its default and meaning
            choices = f" (one of {', '.join(opt['choices'])})" if opt["choices"] else ""
            print(f"{'':<4}{opt['name'] + ' = ' + opt['default']:<{width}} {opt['meaning']}{choices}".rstrip())
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from ..api import list_metrics

    for row in list_metrics(options=args.verbose):
        marks = [m for m, on in (("default", row["default"]), ("images only", row["images_only"])) if on]
        print(f"{row['name']:<12} {row['description']}" + (f" [{', '.join(marks)}]" if marks else ""))
        for opt in row.get("options", ()):  # each option as `vaelab evaluate` takes it, with its default
            print(f"{'':<4}{opt['flag'] + ' ' + opt['default']:<28} {opt['meaning']}")
    return 0
