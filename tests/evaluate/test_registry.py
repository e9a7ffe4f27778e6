"""The metric registry: a metric of one's own is one file (the guide's file, run as printed), each
option is declared once (the function's default, the decorator's meaning) and the command line reads
its flags and help from the registry."""
from __future__ import annotations

import json
import re
from typing import Literal

import pytest
import torch

from tests.guides import restored, run_guide

import vaelab
from vaelab.data import ImageSet
from vaelab.errors import ConfigError
from vaelab.evaluate import METRICS, default_metrics, evaluate, get_metric, metric_options


@pytest.fixture(autouse=True)
def registry():
    with restored(METRICS) as r:  # what a test registers is gone after it
        yield r


def test_the_guides_metric_through_vaelab_evaluate_import(tmp_path, monkeypatch, capsys):
    """The must-show: a user's metric works in `vaelab evaluate RUN --metrics NAME --import file.py`,
    its option a flag; every command as the guide prints it. The number is checked against the share
    of images under the threshold computed here."""
    outputs = run_guide("adding-a-metric.md", "goodrecon.py", tmp_path, monkeypatch, capsys)
    assert re.search(r"good_recon .*\n +--max-mse 0\.02 +per-pixel squared error", outputs[0])
    result = json.loads(outputs[2].splitlines()[-1])
    assert result["good_recon_max_mse"] == 0.05 and {"mse", "psnr"} <= set(result)

    from vaelab.data import load_run_data
    from vaelab.train import RunConfig

    run = tmp_path / "runs" / "digits"
    cfg = RunConfig.load(run / "config.yaml")
    test = load_run_data(cfg.data, cfg.seed, run)[2]
    model = vaelab.load(run)
    with torch.no_grad():
        x = test.images.float() / 255
        err = (model.reconstruct(x) - x).pow(2).mean((1, 2, 3))
    assert result["good_recon"] == pytest.approx(float((err < 0.05).double().mean()), abs=1 / len(test))
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["good_recon"] == result["good_recon"]  # merged into the run's metrics like any metric's


def test_options_are_declared_once_and_read_from_the_function():
    @vaelab.register_metric("toy", mode="how to count", cut="a threshold", names="a comma list", n="a count")
    def toy(model, data, mode: Literal["sum", "mean"] = "mean", cut: float = 0.5, names: tuple[str, ...] = ("a",),
            n: int | None = None):
        """A toy metric."""
        return {"toy": 1.0, "mode": mode, "n": n}

    spec = get_metric("toy")
    assert spec.description == "A toy metric." and not spec.default and not spec.images_only
    opts = spec.options
    assert opts["mode"].choices == ("sum", "mean") and opts["mode"].default == "mean"
    assert opts["cut"].parse("0.25") == 0.25 and opts["names"].parse("x, y") == ("x", "y") and opts["n"].parse("7") == 7
    assert [o.shown for o in opts.values()] == ["mean", "0.5", "a", "null"]
    assert "mode" in metric_options() and metric_options()["mode"] == [("toy", opts["mode"])]
    # the function takes only the options it names: the others given to every metric do not reach it
    assert spec(None, None, batch_size=10, seed=1, train=None, mode="sum", nll_k=5) == {"toy": 1.0, "mode": "sum", "n": None}

    for bad, why in ((dict(missing="not a parameter"), "'missing'"), (dict(x="no default"), "'x'"),
                     (dict(seed="given to every metric"), "'seed'")):
        with pytest.raises(ConfigError, match=f"option {why}.*keyword parameter.*with a default"):
            vaelab.register_metric("bad", **bad)(lambda model, data, x, seed=0: {})
    assert "bad" not in METRICS


def test_defaults_and_images_only_are_declarations():
    assert default_metrics() == tuple(n for n in ("accuracy", "recon", "elbo", "au"))
    assert get_metric("fid").images_only and not get_metric("nll").images_only

    calls = []

    @vaelab.register_metric("always", default=True)
    def always(model, data, **_):
        calls.append("always")
        return {"always": 1.0}

    @vaelab.register_metric("pixels", images_only=True)
    def pixels(model, data, **_):
        calls.append("pixels")
        return {"pixels": 1.0}

    from vaelab.models import build, make_config

    model = build(make_config("vae", {"arch": "mlp", "mlp_hidden": [8], "latent_dim": 2}), (3,))
    vectors = ImageSet(torch.randn(6, 3))
    out = evaluate(model, vectors, None, batch_size=4)  # the default metrics, the one registered since included
    assert "always" in out and "nelbo" in out
    assert evaluate(model, vectors, ["pixels", "always"]) == {"always": 1.0} and calls.count("pixels") == 0
    with pytest.raises(ConfigError, match=r"unknown metric\(s\) \['nope'\].*register_metric"):
        evaluate(model, vectors, ["nope"])


def test_evaluate_help_lists_each_metric_option_from_the_registry(capsys):
    from vaelab.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for key, uses in metric_options().items():
        flag = "--" + key.replace("_", "-")
        assert flag in out and all(f"{m}: default {o.shown}" in out for m, o in uses), flag
    assert "--metrics METRICS comma-separated metrics that `vaelab metrics` lists" in out
    args = build_parser().parse_args(["evaluate", "RUN", "--nll-k", "7", "--fid-samplers", "prior,maf",
                                      "--fid-features", "inception"])
    assert (args.nll_k, args.fid_samplers, args.fid_features, args.n_labels) == (7, ("prior", "maf"), "inception", None)


def test_an_option_named_like_a_flag_of_the_command_stays_an_api_option():
    @vaelab.register_metric("clash", json="an option of the same name as --json", depth="a fresh one")
    def clash(model, data, json: bool = False, depth: int = 2):
        return {}

    from vaelab.cli import build_parser

    args = build_parser().parse_args(["evaluate", "RUN", "--json", "--depth", "5"])
    assert args.json is True and args.depth == 5  # --json stays the command's; --depth is the metric's
    assert "depth" in args.metric_options and "json" not in args.metric_options
