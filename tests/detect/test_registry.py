"""The score registry from outside the package: the score of docs/guide/adding-a-score.md, a file of its
own imported with --import, works in `vaelab scores`, in `AutoencoderDetector(score=NAME)`, in
`vaelab detect --score NAME` and, through the export head it declares, in `vaelab export` (the exported
scorer gives the detector's scores). Also: the package's own scores, their options read from one place,
and no copied list of score names left outside vaelab/detect/scores."""
from __future__ import annotations

import ast
import json
import logging
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import vaelab
from tests.conftest import require_module
from vaelab.detect import SCORE_NAMES, AutoencoderDetector
from vaelab.errors import ConfigError, ModelError

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "guide" / "adding-a-score.md"


def guide_file(tmp: Path) -> Path:
    """The guide's one-file score, written where a user would keep it."""
    code = next(b for b in re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S) if b.startswith("# topk_mse.py"))
    path = tmp / "topk_mse.py"
    path.write_text(code)
    return path


@pytest.fixture(scope="module")
def user_score(tmp_path_factory):
    """The guide's file imported as --import does; its registration removed afterwards."""
    from vaelab.detect.scores import SCORES
    from vaelab.models import import_models

    path = guide_file(tmp_path_factory.mktemp("user"))
    (name,) = import_models([str(path)])
    yield path
    SCORES.pop("topk_mse", None)
    sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny VAE on the 8 x 8 digits (one epoch, an MLP): what every check below scores with."""
    from vaelab.api import train_run
    from vaelab.config import parse_set
    from vaelab.data import load_run_data
    from vaelab.train import RunConfig

    cfg = RunConfig.build("vae", parse_set(["data.name=digits", "model.latent_dim=4", "train.epochs=1", "train.batch_size=64",
                                            "train.progress_bar=false", "model.arch=mlp", "model.mlp_hidden=[32]"]))
    run_dir, _ = train_run(cfg, tmp_path_factory.mktemp("registry") / "run")
    train, held_out, _ = load_run_data(cfg.data, cfg.seed, run_dir, None)
    return run_dir, cfg, train, held_out


def topk_by_hand(model, images, k):
    x = images.float() / 255
    with torch.no_grad():
        err = (model.decode(model.encode(x).mean).mean - x).pow(2).flatten(1)
    return err.sort(1, descending=True).values[:, :k].mean(1).double().numpy()


def test_the_user_score_in_the_detector(user_score, run):
    run_dir, _, train, _ = run
    model = vaelab.load(run_dir)
    det = AutoencoderDetector(model, score="topk_mse", top_k=5, normalize=False).fit(train)
    assert det.score_.spec() == "topk_mse(top_k=5)" and det.get_params()["top_k"] == 5
    np.testing.assert_allclose(det.raw_scores(train.images[:40]), topk_by_hand(model, train.images[:40], 5), rtol=1e-5)
    default = AutoencoderDetector(model, score="topk_mse").fit(train)
    assert default.score_.spec() == "topk_mse(top_k=10)" and default.top_k == 10  # its declared default
    combo = AutoencoderDetector(model, score="combo", combo=("mse", "topk_mse"), top_k=3).fit(train)
    assert combo.score_.spec() == "combo(zscore: mse() + topk_mse(top_k=3))"
    with pytest.raises(ConfigError, match="top_k must be >= 1"):
        AutoencoderDetector(model, score="topk_mse", top_k=0).fit(train)


def test_the_user_score_in_vaelab_scores(user_score, capsys):
    from vaelab.cli import main

    assert main(["scores", "-v", "--import", str(user_score)]) == 0
    out = capsys.readouterr().out
    row = next(ln for ln in out.splitlines() if ln.startswith("topk_mse "))
    assert "yes" in row.split() and "any model" in row and "worst pixels" not in row
    assert re.search(r"top_k = 10 +how many of the worst pixels topk_mse averages", out)
    for name in SCORE_NAMES:  # the package's own, each with what it needs and whether it exports
        assert re.search(rf"^{name} ", out, flags=re.M), name
    assert re.search(r"^nll +likelihood +no ", out, flags=re.M) and re.search(r"^patch_mse .* yes ", out, flags=re.M)
    assert "patch_size = 15" in out and "nll_k = 100" in out and "gmm_components = 5" in out


def test_the_user_score_in_vaelab_detect(user_score, run, tmp_path, capsys):
    from vaelab.cli import main

    run_dir, _, _, _ = run
    out = tmp_path / "det"
    code = main(["detect", str(run_dir), "--data", "digits", "--score", "topk_mse", "--top-k", "5", "--import",
                 str(user_score), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["score"] == "topk_mse"
    rows = (out / "scores.csv").read_text().splitlines()
    assert len(rows) > 100  # every test image scored
    assert main(["detect", str(run_dir), "--data", "digits", "--score", "topk_mse", "--top-k", "0", "--import",
                 str(user_score), "--out", str(tmp_path / "bad")]) == 2
    assert "top_k must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_the_user_score_exports_and_agrees_with_the_detector(user_score, run, fmt, tmp_path):
    if fmt == "onnx":
        require_module("onnx")
        require_module("onnxruntime")
    from vaelab.cli import main
    from vaelab.data import load_split
    from vaelab.exported import load_exported

    run_dir, cfg, train, held_out = run
    bundle = tmp_path / "bundle"
    assert main(["export", str(run_dir), "--score", "topk_mse", "--top-k", "4", "--import", str(user_score),
                 "--format", fmt, "--out", str(bundle)]) == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["score"] == "topk_mse" and manifest["score_spec"] == "topk_mse(top_k=4)"
    # the detector vaelab export fits: the run's training split, calibrated on its validation split
    det = AutoencoderDetector(vaelab.load(run_dir), "topk_mse", top_k=4, seed=cfg.seed, batch_size=cfg.train.eval_batch_size,
                              contamination=0.1).fit(train, calibration_set=held_out)
    test = load_split(cfg.data, "test").images[:100]
    got = load_exported(bundle)((test.float() / 255).numpy())
    np.testing.assert_allclose(got["raw_score"], det.raw_scores(test), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got["score"], det.decision_function(test, clip=False), rtol=1e-5, atol=1e-6)
    assert (got["flag"] == det.predict(test)).mean() >= 0.99  # equal but for a score on the threshold itself


def test_a_score_without_an_export_head_is_refused_by_name(tmp_path):
    from vaelab.detect.export import EXPORTABLE_SCORES, check_exportable
    from vaelab.detect.scores import SCORES, Score, register_score

    @register_score("no_head_score")
    class NoHead(Score):
        """A score the exporter has no torch version of."""

        def batch(self, model, x):
            return x.flatten(1).mean(1)

    try:
        with pytest.raises(ConfigError, match="'no_head_score' score cannot be exported: the exporter has no torch"):
            check_exportable("no_head_score")
        with pytest.raises(ConfigError, match="cannot be exported"):
            check_exportable("combo", combo="mse,no_head_score")
        assert "no_head_score" not in EXPORTABLE_SCORES and "nll" not in EXPORTABLE_SCORES and "mse" in EXPORTABLE_SCORES
    finally:
        SCORES.pop("no_head_score")


def test_registration_is_checked():
    from vaelab.detect.scores import SCORES, Score, register_score

    with pytest.raises(ModelError, match="subclass of vaelab.detect.scores.Score"):
        register_score("x")(int)

    class NoDefault(Score):
        def __init__(self, width):
            self.width = width

    with pytest.raises(ModelError, match="width without a default"):
        register_score("no_default")(NoDefault)
    with pytest.raises(ModelError, match="does not take"):
        register_score("typo", widht=3)(NoDefault)

    @register_score("clash")
    class Clash(Score):
        def __init__(self, seed: int = 0):
            self.seed = seed

    try:
        with pytest.raises(ConfigError, match="named like the detector's own settings"):
            AutoencoderDetector(score="clash")._make_score()
    finally:
        SCORES.pop("clash")
    assert "no_default" not in SCORES and "typo" not in SCORES


def test_the_detectors_options_come_from_the_registry():
    """The detector lists no score option of its own: it takes every registered score's (class_energy and
    a user's included), reads an option not given as the score's declared default, refuses an unknown one,
    and keeps the given ones as scikit-learn parameters (clone, set_params)."""
    import inspect

    from sklearn.base import clone

    from vaelab.detect.scores import all_options, get_score

    own = set(inspect.signature(AutoencoderDetector.__init__).parameters)
    assert not own & set(all_options())
    det = AutoencoderDetector(score="feature_gmm", gmm_components=2)
    assert det.get_params()["gmm_components"] == 2 and "knn_k" not in det.get_params()
    assert det.feature_dims == get_score("feature_gmm").options["feature_dims"].default == 64
    assert det.patch_size == 15 and AutoencoderDetector(score="class_energy")._make_score().spec() == "class_energy()"
    again = clone(det)
    assert again.get_params() == det.get_params() and again._make_score().spec() == det._make_score().spec()
    det.set_params(feature_dims=6, contamination=0.2)
    assert det._make_score().spec() == "feature_gmm(dims=6, gmm_components=2, reg_covar=0.0001, source='feature')"
    with pytest.raises(ConfigError, match="unknown detector setting.*gmm_component'"):
        AutoencoderDetector(gmm_component=3)
    with pytest.raises(ConfigError, match="unknown anomaly score 'psnr'"):
        AutoencoderDetector(score="psnr")._make_score()


def test_calibration_says_how_far_it_is(run, monkeypatch, caplog):
    import vaelab.progress as progress

    run_dir, _, train, _ = run
    monkeypatch.setattr(progress, "EVERY_S", 0.0)  # a line for every batch
    progress.set_quiet(False)
    with caplog.at_level(logging.INFO, logger="vaelab"):
        AutoencoderDetector(run_dir, score="mse", batch_size=200).fit(train)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("scoring with mse")]
    assert any(re.search(r"\d+/\d+ images \(\d+%\)", ln) for ln in lines) and any("done" in ln for ln in lines)
    caplog.clear()
    progress.set_quiet(True)
    try:
        with caplog.at_level(logging.INFO, logger="vaelab"):
            AutoencoderDetector(run_dir, score="mse", batch_size=200).fit(train)
    finally:
        progress.set_quiet(False)
    assert not [r for r in caplog.records if r.getMessage().startswith("scoring with")]


def test_no_list_of_score_names_outside_the_scores_package():
    """Every literal tuple, list or set in src/vaelab (but vaelab/detect/scores) names at most one score:
    a list of several would be a copy of the registry that drifts from it."""
    src = ROOT / "src" / "vaelab"
    found = []
    for path in src.rglob("*.py"):
        if (src / "detect" / "scores") in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                names = [e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in SCORE_NAMES]
                if len(names) >= 2:
                    found.append(f"{path.relative_to(src)}:{node.lineno} {names}")
    assert not found, found


def test_the_detection_guide_names_every_score():
    """The score table of docs/guide/detection.md names each of the package's scores once, and nothing else."""
    text = (ROOT / "docs" / "guide" / "detection.md").read_text()
    table = text.split("| score | what | needs |")[1].split("\n\n")[0]
    named = [n for row in table.splitlines()[2:] for n in re.findall(r"`(\w+)`", row.split("|")[1])]
    assert sorted(named) == sorted(SCORE_NAMES)


def test_a_score_from_an_installed_packages_entry_point(tmp_path, monkeypatch):
    """A module that an installed package names in the `vaelab.scores` entry-point group (here as
    importlib.metadata would list it): its score is found by name, with no --import and no edit of vaelab."""
    import importlib.metadata as metadata

    from vaelab.detect.scores import SCORES, get_score, registry

    (tmp_path / "ep_scores.py").write_text(
        "import vaelab\nfrom vaelab.detect.scores import Score\n\n\n@vaelab.register_score('ep_score')\nclass EpScore(Score):\n"
        "    \"\"\"A score that an installed package provides.\"\"\"\n\n    def batch(self, model, x):\n"
        "        return x.flatten(1).mean(1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    listed = {"vaelab.scores": [metadata.EntryPoint("ep", "ep_scores", "vaelab.scores")]}
    monkeypatch.setattr(metadata, "entry_points", lambda group: listed.get(group, []))
    registry.load_entry_points.cache_clear()
    try:
        spec = get_score("ep_score")
        assert spec.cls.__name__ == "EpScore" and spec.module == "ep_scores" and not spec.exportable
    finally:
        SCORES.pop("ep_score", None)
        sys.modules.pop("ep_scores", None)
        registry.load_entry_points.cache_clear()
