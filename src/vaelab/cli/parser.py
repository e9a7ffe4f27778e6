"""The `vaelab` argument parser: one subparser per command, each bound to its function in
vaelab.cli.commands. Building it imports no torch, so `vaelab --help` is instant: options read from
a registry (the metrics' options of `vaelab evaluate`) are added when their command is parsed."""
from __future__ import annotations

import argparse
from typing import Callable

from . import commands as cmds


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that adds the anomaly scores' options (``takes_score_options``: detect, export,
    app) when it first parses or prints its help: the score registry imports torch, which `vaelab --help`
    and the other commands do without. The modules given with --import are imported first, so that the
    options of a score of one's own are flags too."""

    takes_score_options = False
    _score_options_added = False
    # a command's options read from another registry (the metrics'), added once before it first parses
    lazy_options: "Callable[[argparse.ArgumentParser, list[str]], None] | None" = None

    def _add_lazy_options(self, args: list[str] | None) -> None:
        if self.lazy_options is not None:
            add, self.lazy_options = self.lazy_options, None
            add(self, list(args) if args is not None else [])

    def _add_score_options(self, args: list[str] | None) -> None:
        if not self.takes_score_options or self._score_options_added:
            return
        self._score_options_added = True
        from ..api import import_modules, list_scores

        import_modules(_imports(args or []))
        flags: dict[str, dict] = {}  # option name -> its flag's settings, from the first score that declares it
        for row in list_scores(options=True):
            for opt in row["options"]:
                f = flags.setdefault(opt["name"], {"opt": opt, "defaults": {}})
                f["defaults"].setdefault(opt["default"], []).append(row["name"])
        group = self.add_argument_group("score options (each score takes those it declares: `vaelab scores -v`)")
        names = []
        for name, f in flags.items():
            flag, opt = "--" + name.replace("_", "-"), f["opt"]
            if flag in self._option_string_actions:  # a score's option named like a flag of the command: Python API only
                continue
            defaults = "; ".join(f"{', '.join(scores)}: {d}" for d, scores in f["defaults"].items())
            group.add_argument(flag, dest=f"score_option_{name}", metavar=None if opt["choices"] else opt["type"].upper(),
                               type=_flag_type(opt["type"]),
                               choices=opt["choices"], help=f"{opt['meaning'] or name} (default {defaults})")
            names.append(name)
        self.set_defaults(score_options=names)

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        self._add_score_options(args)
        self._add_lazy_options(args)
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._add_score_options(None)
        self._add_lazy_options(None)
        return super().format_help()


def _imports(args: list[str]) -> list[str]:
    """The values of --import MODULE / --import=MODULE in a command's arguments."""
    out = [a.split("=", 1)[1] for a in args if a.startswith("--import=")]
    return out + [b for a, b in zip(args, args[1:]) if a == "--import"]


def _metric_options(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """--NAME-OF-OPTION for each option the registered metrics declare (`vaelab metrics -v`), those of
    the metrics that --import brings included; cmd_evaluate passes the ones given (``args.metric_options``)."""
    from ..api import import_modules, metric_options
    from ..errors import VaelabError

    try:
        import_modules(_imports(argv))
    except VaelabError:
        pass  # main() imports them again after parsing, and names the problem

    group = parser.add_argument_group("metric options (each metric takes its own; `vaelab metrics -v` lists them)")
    taken, added = {a.dest for a in parser._actions}, []
    for key, uses in metric_options().items():
        opt = uses[0][1]
        if key in taken:
            continue  # an option of one's own named like one of the command's: it stays an API option
        defaults = "; ".join(f"{m}: default {o.shown}" for m, o in uses)
        try:
            group.add_argument("--" + key.replace("_", "-"), dest=key, type=opt.parse, choices=opt.choices,
                               metavar=key.upper() if opt.choices is None else None, help=f"{opt.meaning} ({defaults})")
        except argparse.ArgumentError:
            continue  # its flag is one of the command's
        added.append(key)
    parser.set_defaults(metric_options=tuple(added))  # the options cmd_evaluate passes on when given


def _flag_bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _flag_type(kind: str):
    """How a flag's text is read, by the type name list_scores gives an option."""
    return {"int": int, "float": float, "bool": _flag_bool}.get(kind, str)


def _config_keys_help() -> str:
    from ..api import config_keys_help  # only when `vaelab train --help` is drawn: it reads the typed configs

    return config_keys_help()


def build_parser() -> argparse.ArgumentParser:
    from .._version import __version__

    p = Parser(prog="vaelab", description="Autoencoders and VAEs: train, evaluate, generate.")
    p.add_argument("--version", action="version", version=f"vaelab {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    t = sub.add_parser("train", help="train a model into a run directory",
                       description="Train MODEL into a run directory. Every config key below can be set with "
                                   "--set KEY=VALUE; the options --data, --epochs, ... are shortcuts for the commonest.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    t.format_help = lambda: argparse.ArgumentParser.format_help(t) + _config_keys_help()  # type: ignore[method-assign]
    t.add_argument("model", nargs="?", help="model name (see `vaelab models`)")
    t.add_argument("--data", help="dataset name (see `vaelab datasets`); default fashion-mnist (data.name)")
    t.add_argument("--epochs", type=int, help="passes over the training data (train.epochs, default 10); with --resume, "
                                              "the new total")
    t.add_argument("--latent-dim", type=int, help="size of the latent code (model.latent_dim, default 16)")
    t.add_argument("--batch-size", type=int, help="images per optimisation step (train.batch_size, default 128)")
    t.add_argument("--lr", type=float, help="learning rate (train.lr, default 0.001)")
    t.add_argument("--seed", type=int, help="random seed; the same seed gives the same run on one machine (default 0)")
    t.add_argument("--out", help="run directory (default runs/MODEL-DATA-TIME); never overwritten")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="any config key, e.g. model.beta=4, train.schedule=onecycle")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    t.set_defaults(func=cmds.cmd_train)

    e = sub.add_parser("evaluate", help="test-set metrics of a run")
    _add_run_data_option(e)
    e.add_argument("run_dir")
    e.add_argument("--metrics", help="comma-separated metrics that `vaelab metrics` lists, or all (default: the ones it "
                                     "marks default)")
    e.lazy_options = _metric_options  # type: ignore[attr-defined]
    e.add_argument("--json", action="store_true", help="print one JSON object; the numbers go to metrics.json but report.html "
                                                     "is not redrawn (add --report)")
    e.add_argument("--report", action="store_true", help="redraw report.html (the default without --json)")
    e.add_argument("--no-report", action="store_true", help="do not update metrics.json and report.html")
    e.add_argument("--figures", action="store_true", help="draw the report's figures, also for a run trained with "
                                                          "train.figures=false (implies --report)")
    e.add_argument("--test-data", metavar="NAME|FILE.npz",
                   help="score this set's test split instead of the run's (a dataset name, or an .npz with x_test): "
                        "e.g. CIFAR-10's exact-pixel images for a model trained on a JPEG copy; the numbers go to "
                        "metrics.json under evaluations, beside the run's own")
    e.set_defaults(func=cmds.cmd_evaluate)

    s = sub.add_parser("sample", help="draw new images from the prior")
    _add_run_data_option(s)
    s.add_argument("run_dir")
    s.add_argument("-n", type=int, default=64)
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--sampler", default="prior", help="prior: the model's prior p(z) (N(0, I) unless the model learns its own); "
                   "gmm: a Gaussian mixture fitted to the training codes; maf, iaf: a normalising flow fitted to them; "
                   "two-stage: a second VAE trained on them; vamp: the VampPrior of a vamp model; code-prior: a "
                   "transformer over a vq-vae's code grid; or any other name of "
                   "vaelab.generate.SAMPLERS")
    s.add_argument("--class", dest="class_", type=int, metavar="K",
                   help="draw class K (a conditional model: cvae); default: the model's unconditional samples")
    _force_option(s)
    s.set_defaults(func=cmds.cmd_sample)

    i = sub.add_parser("interpolate", help="decode paths between pairs of test images")
    i.add_argument("run_dir")
    i.add_argument("--out", required=True)
    i.add_argument("--pairs", type=int, default=4)
    i.add_argument("--steps", type=int, default=10)
    i.add_argument("--mode", choices=["linear", "slerp"], default="linear")
    _force_option(i)
    i.set_defaults(func=cmds.cmd_interpolate)

    tv = sub.add_parser("traverse", help="sweep each latent unit with the others fixed")
    tv.add_argument("run_dir")
    tv.add_argument("--out", required=True)
    tv.add_argument("--index", type=int, default=0, help="which test image to start from")
    tv.add_argument("--span", type=float, default=3.0)
    tv.add_argument("--steps", type=int, default=9)
    tv.add_argument("--units", help="comma-separated units (default: all)")
    _force_option(tv)
    tv.set_defaults(func=cmds.cmd_traverse)

    r = sub.add_parser("reconstruct", help="test images beside their reconstructions")
    r.add_argument("run_dir")
    r.add_argument("-n", type=int, default=32)
    r.add_argument("--out", required=True)
    r.add_argument("--noisy", action="store_true", help="denoising models: clean / corrupted / denoised rows")
    _force_option(r)
    r.set_defaults(func=cmds.cmd_reconstruct)

    ex = sub.add_parser("explain", help="attention maps of test images: grad2 (grad2vae) or gradcam (any conv VAE)")
    ex.add_argument("run_dir")
    ex.add_argument("--method", choices=["grad2", "gradcam"], default="grad2",
                    help="grad2: a grad2vae's own second-order attention; gradcam: gradient attention (Liu et al.) of "
                         "any conv VAE (default grad2)")
    ex.add_argument("--data", help="a dataset name, .npz or folder (default: the run's dataset, test split)")
    ex.add_argument("-n", "--n", type=int, default=8, help="images (default 8; half normal, half anomalous when known)")
    ex.add_argument("--anomaly", action="store_true", help="gradcam: the anomaly variant, against the run's training "
                                                          "posterior statistics")
    ex.add_argument("--layer", help="gradcam: a conv layer's module name or index (default: the encoder's last)")
    ex.add_argument("--unit", type=int, help="gradcam: explain this latent unit (default: the mean over units)")
    ex.add_argument("--seed", type=int, default=0, help="grad2: seed of the posterior sample's noise")
    ex.add_argument("--out", required=True, help="the PNG to write")
    _force_option(ex)
    ex.set_defaults(func=cmds.cmd_explain)

    pt = sub.add_parser("pretrain", help="greedy layer-wise pretraining of a stacked autoencoder, then fine-tuning on labels")
    pt.add_argument("--data", required=True, help="dataset name (see `vaelab datasets`)")
    pt.add_argument("--layers", default="512,256,64", help="comma-separated widths of the stacked layers (default 512,256,64)")
    pt.add_argument("--epochs-per-layer", type=int, help="pretraining epochs per layer (default 5)")
    pt.add_argument("--finetune-epochs", type=int, help="epochs of each fine-tuning step on the labelled images (default 50)")
    pt.add_argument("--labels", help="labelled training images for fine-tuning, or 'all' (default 1000)")
    pt.add_argument("--seed", type=int)
    pt.add_argument("--out", help="output directory (default runs/pretrain-DATA-TIME); never overwritten")
    pt.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="any data.* or pretrain.* key, e.g. data.limit=5000, pretrain.activation=relu, pretrain.baseline=false")
    pt.set_defaults(func=cmds.cmd_pretrain)

    dt = sub.add_parser("detect", help="score a set for anomalies / out-of-distribution images with a trained run")
    _add_run_data_option(dt)
    dt.add_argument("run_dir", nargs="+", help="a training run; several (one configuration, other seeds) make an "
                                               "ensemble scored by the mean of their raw scores")
    dt.add_argument("--data", required=True, help="a dataset name (mnist, ...), an .npz (an OOD-study file: see "
                                                  "`vaelab data build-ood-study`) or a folder of images")
    dt.add_argument("--split", help="OOD-study file: rep1 (default), rep2, labeled or train; a dataset: test (default) or train")
    lim = dt.add_mutually_exclusive_group()
    lim.add_argument("--threshold", type=float, help="flag normalised scores above this, in [0, 1) (e.g. 0.3)")
    lim.add_argument("--contamination", type=float, help="flag about this fraction of new normal data: the quantile of the "
                                                         "scores of the run's validation split (default 0.1)")
    lim.add_argument("--fdr", type=float, metavar="Q", help="flag by Benjamini-Hochberg on the conformal p-values: of the "
                                                            "images flagged, at most Q are normal on average")
    dt.add_argument("--fpr", type=float, help="the false-alarm rate of --threshold-rule conformal (e.g. 0.05)")
    dt.add_argument("--group-by-label", action="store_true",
                    help="many categories in one model: calibrate each class of the run's data (a CSV label column, class "
                         "sub-folders) on its own, and score each item of --data by its class's calibration")
    dt.add_argument("--norm-range", metavar="NAME|LOW,HIGH",
                    help="quantiles of the training scores that the normalised score maps to 0 and 1: quantile "
                         "(default: median and 99.9th percentile, so a fixed --threshold flags a stable share of "
                         "normal images across models), minmax (min and max), or two numbers such as 0.5,0.99")
    dt.add_argument("--score", help="combo (the default: `vaelab scores` lists its members, and class_energy x 2 + class_entropy on "
                                 "an ssvae) or any score `vaelab scores` lists, a score of your own with --import")
    dt.takes_score_options = True
    dt.add_argument("--anomaly-classes", help="comma-separated classes (numbers or names) that mark anomalies in a labelled set")
    dt.add_argument("--threshold-rule", metavar="RULE",
                    help="how the threshold is chosen without --threshold: contamination (default), conformal at a "
                         "false-alarm rate --fpr, f1 on a labelled --val-data set, or mad / iqr / gmm on the calibration scores")
    dt.add_argument("--val-data", help="the labelled validation set of --threshold-rule f1 (same forms as --data; its "
                                       "anomalies marked as --data's are, or by --anomaly-classes)")
    dt.add_argument("--val-split", help="the split of --val-data (as --split)")
    dt.add_argument("--maps", help="comma-separated pixel anomaly maps to compute: mse, ssim, gradient (saved in maps.npz; "
                                   "scored against defect masks when the set has them)")
    dt.add_argument("--out", help="report directory (default RUN_DIR/detect-DATA-TIME)")
    dt.set_defaults(func=cmds.cmd_detect)

    xp = sub.add_parser("export", help="write a run's fitted detector as a standalone ONNX / TorchScript scorer with manifest.json")
    _add_run_data_option(xp)
    xp.add_argument("run_dir", nargs="+", help="a training run; several (the same data, other seeds) export their "
                                               "ensemble as one scorer")
    xp.add_argument("--format", choices=["onnx", "torchscript"], default="onnx", help="the bundle's format (default onnx)")
    xp.add_argument("--score", help="the anomaly score (default combo); `vaelab scores` says which export")
    xp.takes_score_options = True
    xlim = xp.add_mutually_exclusive_group()
    xlim.add_argument("--threshold", type=float, help="flag normalised scores above this, in [0, 1)")
    xlim.add_argument("--contamination", type=float, help="flag this fraction of the training data (default 0.1)")
    xp.add_argument("--out", required=True, help="the bundle directory (new or empty)")
    xp.set_defaults(func=cmds.cmd_export)

    ap = sub.add_parser("app", help="a local web page to score one image with a run's detector: score, flag, "
                                    "reconstruction and anomaly map (needs the app extra: pip install 'vaelab[app]')")
    ap.add_argument("run_dir")
    ap.add_argument("--score", help="the anomaly score (default combo; `vaelab scores` lists them)")
    ap.takes_score_options = True
    alim = ap.add_mutually_exclusive_group()
    alim.add_argument("--threshold", type=float, help="flag normalised scores above this, in [0, 1)")
    alim.add_argument("--contamination", type=float, help="flag this fraction of the training data (default 0.1)")
    ap.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)")
    ap.add_argument("--port", type=int, help="port (default: the first free one from 7860)")
    ap.add_argument("--examples", type=int, default=8, help="example images from the run's test split (default 8)")
    ap.set_defaults(func=cmds.cmd_app)

    bn = sub.add_parser("bench", help="benchmark protocols")
    bn_sub = bn.add_subparsers(dest="bench", required=True)
    oc = bn_sub.add_parser("one-class", help="one-class anomaly detection: train on each class, ROC-AUC on the whole test set")
    oc.add_argument("--data", required=True, help="a labelled dataset: fashion-mnist, mnist, ...")
    oc.add_argument("--model", default="vae", help="model name (default vae)")
    oc.add_argument("--epochs", type=int, default=20, help="per class (default 20: the benchmarked configuration)")
    oc.add_argument("--seeds", default="1", help="a count (3: seeds 0, 1, 2) or a comma list (0,4,7); default 1")
    oc.add_argument("--classes", help="comma-separated normal classes, numbers or names (default: all)")
    oc.add_argument("--score", help="one score or a comma list (one column each): combo (the default) or any score "
                                    "`vaelab scores` lists")
    oc.add_argument("--set", action="append", metavar="KEY=VALUE", help="any run-config key, e.g. model.arch=mlp")
    oc.add_argument("--out", help="output directory (default runs/one-class-DATA-MODEL-TIME); rerun into it to resume")
    oc.add_argument("--keep-checkpoints", action="store_true", help="keep each run's resumable checkpoint")
    oc.add_argument("--jobs", type=int, default=1, help="train this many (class, seed) runs at once, one process each "
                    "with cpu_count/jobs threads (default 1)")
    oc.set_defaults(func=cmds.cmd_bench_one_class)

    dl = sub.add_parser("data", help="build data layouts")
    dl_sub = dl.add_subparsers(dest="data_command", required=True)
    bo = dl_sub.add_parser("build-ood-study", help="the OOD study's layout from MNIST, Fashion-MNIST or CIFAR-10 (32x32, 5 classes, ~5%% anomalies)")
    bo.add_argument("--out", required=True, help="the .npz to write")
    bo.add_argument("--data", default="mnist",
                    help="the images: mnist (the study's; default), fashion-mnist or cifar10 (colour): the same layout on other images")
    bo.add_argument("--seed", type=int, default=0)
    bo.add_argument("--classes", default="0,1,2,3,4", help="in-distribution classes, numbers or names (default 0,1,2,3,4)")
    bo.add_argument("--n-labeled", type=int, default=1000, help="labeled in-distribution images (default 1000)")
    bo.add_argument("--n-normal", type=int, default=1000, help="in-distribution images per representative set (default 1000)")
    bo.add_argument("--anomaly-fraction", type=float, default=0.05,
                    help="anomalies' share of a representative set (default 0.05)")
    _force_option(bo)
    bo.set_defaults(func=cmds.cmd_data_build_ood_study)

    bd = dl_sub.add_parser("build-defects", help="a dataset's test images with synthetic defects and their exact masks")
    bd.add_argument("--out", required=True, help="the .npz to write (x_train, x_test, y_test, masks_test)")
    bd.add_argument("--data", default="fashion-mnist", help="the clean images (default fashion-mnist)")
    bd.add_argument("--path", help="the file or folder of --data npz / folder (e.g. the exact-pixel CIFAR-10 subset)")
    bd.add_argument("--kind", default="noise", choices=["noise", "texture", "blank"],
                    help="the pasted patch: uniform noise, a patch of another image, or a blanked region")
    bd.add_argument("--fraction", type=float, default=0.5, help="share of the test images given a defect (default 0.5)")
    bd.add_argument("--test-limit", type=int, help="at most this many test images (seeded subset)")
    bd.add_argument("--seed", type=int, default=0)
    bd.set_defaults(func=cmds.cmd_data_build_defects)

    d = sub.add_parser("datasets", help="every data source, where it was found or how to get it")
    d.add_argument("-v", "--verbose", action="store_true", help="also what each source declares (path, classes, shape)")
    d.set_defaults(func=cmds.cmd_datasets)
    c = sub.add_parser("compare", help="compare runs side by side in one HTML page",
                       description="One self-contained page: configs (differences highlighted), a metrics table, the "
                                   "training curves of every loss term overlaid, samples and reconstructions side by side.")
    c.add_argument("runs", nargs="+", metavar="RUN_DIR", help="two or more run directories")
    c.add_argument("--out", help="the page to write (default compare.html; with --json only the table, unless --out is given)")
    c.add_argument("--json", action="store_true", help="print the metrics table and the config differences as JSON")
    c.set_defaults(func=cmds.cmd_compare)

    m = sub.add_parser("models", help="every model by name")
    m.add_argument("-v", "--verbose", action="store_true", help="also list each model's options")
    m.set_defaults(func=cmds.cmd_models)
    sc = sub.add_parser("scores", help="every anomaly score by name: what it needs and whether it exports")
    sc.add_argument("-v", "--verbose", action="store_true", help="also list each score's options with their defaults")
    sc.set_defaults(func=cmds.cmd_scores)

    mt = sub.add_parser("metrics", help="every metric by name (vaelab evaluate --metrics)")
    mt.add_argument("-v", "--verbose", action="store_true", help="also list each metric's options")
    mt.set_defaults(func=cmds.cmd_metrics)
    _add_import_option(sub)
    return p


def _add_run_data_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-data", metavar="PATH", help="where the run's own data (its folder, .npz or CSV: data.path in its "
                                                      "config.yaml) is now, when it has moved")


def _force_option(parser: argparse.ArgumentParser) -> None:
    """--force on a command that writes the file --out names: without it an existing file (or a
    symlink, even a dangling one) is refused, never replaced."""
    parser.add_argument("--force", action="store_true", help="replace the file --out names if it exists")
    parser.set_defaults(out_file=True)



def _add_import_option(sub: argparse._SubParsersAction) -> None:
    """--quiet, --import MODULE and --trust-imports on every command (and sub-command)."""
    for parser in {id(sp): sp for sp in sub.choices.values()}.values():
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if nested:
            _add_import_option(nested[0])
            continue
        parser.add_argument("-q", "--quiet", action="store_true",
                            help="no progress: neither the training bar nor the lines of long steps (fits, calibration, NLL, FID)")
        parser.add_argument("--import", dest="imports", action="append", metavar="MODULE",
                            help="a module (dotted name, or a .py file) that registers models, anomaly scores, data "
                                 "sources, metrics or samplers of your own (@vaelab.register_model, register_score, "
                                 "register_source, register_metric, register_sampler); repeatable")
        parser.add_argument("--trust-imports", action="store_true",
                            help="import the module a run's config names for its model (imports:); off by default, as "
                                 "a run directory from someone else could name any code. Never from inside the run "
                                 "directory or beside it")

