"""The `vaelab` command: one subcommand per job, thin over vaelab.api."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .errors import VaelabError


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from .config import deep_merge, parse_set

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


def cmd_train(args: argparse.Namespace) -> int:
    from .api import train_run
    from .config import deep_merge
    from .train import RunConfig

    if args.resume:
        run_dir = Path(args.resume)
        cfg = RunConfig.load(run_dir / "config.yaml")
        over = _overrides(args)
        if args.model and args.model != cfg.model.name:
            from .errors import ConfigError

            raise ConfigError(f"{run_dir} is a {cfg.model.name} run; --resume cannot change the model to {args.model}")
        if over:  # only the length of training may change on resume
            allowed = {"train": {"epochs", "progress_bar", "accelerator", "devices", "num_nodes", "strategy", "eval_batch_size"}}
            bad = [f"{k}.{kk}" if isinstance(v, dict) else k for k, v in over.items()
                   for kk in (v if isinstance(v, dict) else [None]) if not (k in allowed and kk in allowed[k])]
            if bad:
                from .errors import ConfigError

                raise ConfigError(f"--resume continues a run as configured; only --epochs and how it runs (train.progress_bar, accelerator, devices, num_nodes, strategy, eval_batch_size) may change; got {bad}")
            cfg = RunConfig.from_dict(deep_merge(cfg.to_dict(), over))
        run_dir, metrics = train_run(cfg, run_dir, resume=True)
    else:
        if not args.model:
            from .errors import ConfigError

            raise ConfigError("name a model to train (see `vaelab models`), or --resume RUN_DIR")
        cfg = RunConfig.build(args.model, _overrides(args))
        run_dir, metrics = train_run(cfg, args.out)
    shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}
    print(json.dumps(shown))
    print(f"report: {(run_dir / 'report.html').resolve()}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .api import evaluate_run

    metrics = [m.strip() for m in args.metrics.split(",")] if args.metrics else None
    opts = {k: v for k, v in {"nll_k": args.nll_k, "nll_images": args.nll_images, "fid_features": args.fid_features,
                              "fid_images": args.fid_images, "n_labels": args.n_labels}.items() if v is not None}
    result = evaluate_run(args.run_dir, metrics, update_report=not args.no_report, **opts)
    if args.json:
        print(json.dumps(result))
    else:
        width = max(len(k) for k in result)
        for k, v in result.items():
            print(f"{k:<{width}}  {v:.4f}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    from .api import interpolate_run

    print(interpolate_run(args.run_dir, args.out, args.pairs, args.steps, args.mode))
    return 0


def cmd_traverse(args: argparse.Namespace) -> int:
    from .api import traverse_run

    units = [int(u) for u in args.units.split(",")] if args.units else None
    print(traverse_run(args.run_dir, args.out, args.index, args.span, args.steps, units))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from .api import sample_run

    print(sample_run(args.run_dir, args.n, args.out, args.seed, args.sampler))
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from .api import reconstruct_run

    print(reconstruct_run(args.run_dir, args.out, args.n, args.noisy))
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from .data import SOURCES
    from .data.download import data_roots

    print("search order: " + ", ".join(str(r) for r in data_roots()) + ", then download\n")
    for name, src in SOURCES.items():
        where = None if src.needs_path else src.locate()
        status = f"found: {where}" if where else ("needs data.path" if src.needs_path else f"not found; {src.how_to_get}")
        print(f"{name:<14} {src.description}\n{'':<14} {status}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    import dataclasses

    from .models import MODELS

    for name, spec in MODELS.items():
        own = [f.name for f in dataclasses.fields(spec.cls.config_class) if f.name not in ("name", "image_shape")]
        print(f"{name:<16} {spec.description}")
        if args.verbose:
            print(f"{'':<16} options: {', '.join('model.' + o for o in own)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="vaelab", description="Autoencoders and VAEs: train, evaluate, generate.")
    p.add_argument("--version", action="version", version=f"vaelab {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model into a run directory")
    t.add_argument("model", nargs="?", help="model name (see `vaelab models`)")
    t.add_argument("--data", help="dataset name (see `vaelab datasets`); default fashion-mnist")
    t.add_argument("--epochs", type=int)
    t.add_argument("--latent-dim", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--out", help="run directory (default runs/MODEL-DATA-TIME); never overwritten")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="any config key, e.g. model.beta=4, train.schedule=onecycle")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="test-set metrics of a run")
    e.add_argument("run_dir")
    e.add_argument("--metrics", help="comma-separated subset of: elbo, recon, au, nll, fid, probes, few_label, mig; "
                                     "or all (default: elbo,recon,au)")
    e.add_argument("--nll-k", type=int, help="importance samples per image for nll (default 1000)")
    e.add_argument("--nll-images", type=int, help="evaluate nll on the first N test images (default: all)")
    e.add_argument("--fid-features", choices=["lenet", "inception"], help="feature network for FID (default lenet)")
    e.add_argument("--fid-images", type=int, help="images per side for FID (default 10000)")
    e.add_argument("--n-labels", type=int, help="labelled images for the few-label transfer (default 2000)")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--no-report", action="store_true", help="do not update metrics.json and report.html")
    e.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("sample", help="draw new images from the prior")
    s.add_argument("run_dir")
    s.add_argument("-n", type=int, default=64)
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--sampler", choices=["prior", "gmm"], default="prior",
                   help="the N(0, I) prior, or a Gaussian mixture fitted to the training codes")
    s.set_defaults(func=cmd_sample)

    i = sub.add_parser("interpolate", help="decode paths between pairs of test images")
    i.add_argument("run_dir")
    i.add_argument("--out", required=True)
    i.add_argument("--pairs", type=int, default=4)
    i.add_argument("--steps", type=int, default=10)
    i.add_argument("--mode", choices=["linear", "slerp"], default="linear")
    i.set_defaults(func=cmd_interpolate)

    tv = sub.add_parser("traverse", help="sweep each latent unit with the others fixed")
    tv.add_argument("run_dir")
    tv.add_argument("--out", required=True)
    tv.add_argument("--index", type=int, default=0, help="which test image to start from")
    tv.add_argument("--span", type=float, default=3.0)
    tv.add_argument("--steps", type=int, default=9)
    tv.add_argument("--units", help="comma-separated units (default: all)")
    tv.set_defaults(func=cmd_traverse)

    r = sub.add_parser("reconstruct", help="test images beside their reconstructions")
    r.add_argument("run_dir")
    r.add_argument("-n", type=int, default=32)
    r.add_argument("--out", required=True)
    r.add_argument("--noisy", action="store_true", help="denoising models: clean / corrupted / denoised rows")
    r.set_defaults(func=cmd_reconstruct)

    d = sub.add_parser("datasets", help="every data source, where it was found or how to get it")
    d.set_defaults(func=cmd_datasets)
    m = sub.add_parser("models", help="every model by name")
    m.add_argument("-v", "--verbose", action="store_true", help="also list each model's options")
    m.set_defaults(func=cmd_models)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except VaelabError as e:
        print(f"vaelab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vaelab: interrupted; the last completed epoch's checkpoint is kept (resume with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
