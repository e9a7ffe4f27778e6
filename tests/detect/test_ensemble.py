"""The detector's ensemble (several models, one score: the mean of their raw scores): against the
members' own detectors, an ensemble of one against the single model, n_models training one model
per seed, its export (ONNX) against the Python scores, `vaelab detect RUN RUN`, and the errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import require_module, vaelab_here
from vaelab.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ["data.name=digits", "model.latent_dim=4", "train.epochs=2", "train.batch_size=64", "train.progress_bar=false",
         "model.conv_channels=[8]", "model.hidden_dim=32"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs of one configuration with seeds 0 and 1, the training split and 200 test digits."""
    import vaelab
    from vaelab.api import train_run
    from vaelab.config import parse_set
    from vaelab.data import load_data, load_split
    from vaelab.train import RunConfig

    root = tmp_path_factory.mktemp("ensemble")
    dirs = []
    for seed in (0, 1):
        cfg = RunConfig.build("vae", parse_set([*SMALL, f"seed={seed}"]))
        dirs.append(train_run(cfg, root / f"run-{seed}")[0])
    cfg = RunConfig.build("vae", parse_set(SMALL))
    train = load_data(cfg.data, 0)[0]
    test = load_split(cfg.data, "test").images[:200]
    return dirs, [vaelab.load(d) for d in dirs], train, test


def test_the_ensemble_score_is_the_mean_of_its_members_raw_scores(runs):
    from vaelab.detect import AutoencoderDetector

    _, models, train, test = runs
    singles = [AutoencoderDetector(m, seed=0, normalize=False).fit(train) for m in models]  # raw training scores
    ens = AutoencoderDetector(models, seed=0).fit(train)
    assert len(ens.models_) == len(ens.scores_) == 2 and ens.model_ is ens.models_[0]
    want = np.mean([d.raw_scores(test) for d in singles], 0)
    np.testing.assert_allclose(ens.raw_scores(test), want, rtol=0, atol=1e-10)
    # the members differ (two seeds), so the mean is not either member's score
    assert not np.allclose(singles[0].raw_scores(test), singles[1].raw_scores(test))
    # the normalisation anchors are the quantiles of the mean calibration score (the same held-out part: one seed)
    train_raw = np.mean([d.calibration_scores_ for d in singles], 0)
    lo, hi = np.quantile(train_raw, ens.norm_quantiles_)
    assert ens.raw_min_ == pytest.approx(lo, abs=1e-10) and ens.raw_max_ == pytest.approx(hi, abs=1e-10)


def test_an_ensemble_of_one_scores_as_the_model(runs):
    from vaelab.detect import AutoencoderDetector

    dirs, models, train, test = runs
    one = AutoencoderDetector(models[0], seed=0).fit(train)
    listed = AutoencoderDetector([dirs[0]], seed=0).fit(train)  # a run directory in a list
    np.testing.assert_array_equal(listed.raw_scores(test), one.raw_scores(test))
    assert listed.threshold_ == one.threshold_


def test_n_models_trains_one_model_per_seed(tmp_path):
    from sklearn.datasets import load_digits

    from vaelab.data import ImageSet
    from vaelab.detect import AutoencoderDetector
    from vaelab.train import RunConfig

    d = load_digits()
    x = torch.from_numpy((d.images[:300] * 255 / 16).round().astype(np.uint8))[:, None]
    small = {"model": {"latent_dim": 4, "conv_channels": [8], "hidden_dim": 32}, "train": {"batch_size": 64}}
    det = AutoencoderDetector(model_name="vae", n_models=2, epochs=1, overrides=small, train_dir=tmp_path, seed=3,
                              score="mse").fit(ImageSet(x))
    assert len(det.models_) == 2
    assert [RunConfig.load(tmp_path / f"model-{i}" / "config.yaml").seed for i in (0, 1)] == [3, 4]
    p0, p1 = (torch.cat([p.flatten() for p in m.parameters()]) for m in det.models_)
    assert p0.shape == p1.shape and not torch.equal(p0, p1)
    want = np.mean([((m.reconstruct(x.float() / 255) - x.float() / 255) ** 2).flatten(1).mean(1).detach().numpy()
                    for m in det.models_], 0)
    np.testing.assert_allclose(det.raw_scores(x), want, rtol=1e-5)


def test_ensemble_errors_name_the_fix(runs):
    from vaelab.detect import AutoencoderDetector

    _, models, train, _ = runs
    with pytest.raises(ConfigError, match="integer >= 1"):
        AutoencoderDetector(n_models=0).fit(train)
    with pytest.raises(ConfigError, match="pass them as a list"):
        AutoencoderDetector(models[0], n_models=2).fit(train)
    with pytest.raises(ConfigError, match="empty list"):
        AutoencoderDetector([]).fit(train)
    with pytest.raises(ConfigError, match="Autoencoder, a run directory or a list"):
        AutoencoderDetector([models[0], 3]).fit(train)


def test_exported_ensemble_equals_the_detector(runs, tmp_path):
    require_module("onnxruntime")
    from vaelab.detect import AutoencoderDetector
    from vaelab.detect.export import export_detector
    from vaelab.exported import load_exported

    _, models, train, test = runs
    det = AutoencoderDetector(models, seed=0).fit(train)
    out = export_detector(det, tmp_path / "bundle", "onnx")
    assert json.loads((out / "manifest.json").read_text())["ensemble"] == 2
    x = test.float() / 255
    got = load_exported(out)(x.numpy())
    raw = det.raw_scores(test)
    assert np.all(np.abs(got["raw_score"] - raw) <= 1e-4 * np.maximum(np.abs(raw), 1.0))
    err = np.mean([((m.reconstruct(x) - x) ** 2).mean(1).detach().numpy() for m in models], 0)
    np.testing.assert_allclose(got["error_map"], err, rtol=1e-4, atol=1e-6)


def test_cli_detect_with_two_runs_and_runs_of_other_data(runs, tmp_path):
    from vaelab.api import train_run
    from vaelab.config import parse_set
    from vaelab.train import RunConfig

    dirs = runs[0]
    out = tmp_path / "det"
    p = vaelab_here("detect", str(dirs[0]), str(dirs[1]), "--data", "digits", "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert json.loads((out / "metrics.json").read_text())["n"] > 0
    report = (out / "report.html").read_text()
    assert "ensemble of 2 runs" in report and str(dirs[1].resolve()) in report
    other = train_run(RunConfig.build("vae", parse_set([*SMALL, "train.epochs=1", "data.classes=[0,1]"])),
                      tmp_path / "other")[0]
    p = vaelab_here("detect", str(dirs[0]), str(other), "--data", "digits", "--out", str(tmp_path / "bad"))
    assert p.returncode == 2 and "trained on different data" in p.stderr and "Traceback" not in p.stderr


def test_cli_export_of_two_runs(runs, tmp_path):
    dirs = runs[0]
    out = tmp_path / "bundle"
    p = vaelab_here("export", str(dirs[0]), str(dirs[1]), "--format", "torchscript", "--score", "mse", "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert json.loads((out / "manifest.json").read_text())["ensemble"] == 2
