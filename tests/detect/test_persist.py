"""A saved detector: it reloads without refitting and scores identically, and a damaged or edited folder
is refused with what is wrong, never loaded half-way."""
import json

import numpy as np
import pytest
import torch

from vaelab.detect import AutoencoderDetector
from vaelab.errors import CheckpointError, ConfigError

from .test_detect import TINY, squares


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    return squares(300, g), squares(60, g), torch.rand(20, 1, 16, 16, generator=g)


@pytest.fixture(scope="module")
def model(data):
    return AutoencoderDetector(score="mse", epochs=1, overrides=TINY).fit(data[0]).model_


@pytest.mark.parametrize("score", ["combo", "nelbo", "mahalanobis", "latent_knn", "feature_gmm"])
def test_a_saved_detector_reloads_and_scores_identically(score, data, model, tmp_path):
    normal, held, noise = data
    det = AutoencoderDetector(model, score, contamination=0.05).fit(normal)
    det.save(tmp_path / "det")
    again = AutoencoderDetector.load(tmp_path / "det")
    x = torch.cat([held, noise])
    np.testing.assert_array_equal(again.decision_function(x, clip=False), det.decision_function(x, clip=False))
    np.testing.assert_array_equal(again.predict_pvalues(x), det.predict_pvalues(x))
    assert again.threshold_ == det.threshold_ and again.get_params()["contamination"] == 0.05
    np.testing.assert_array_equal(again.labels_, det.labels_)


def test_an_ensemble_that_trained_its_models_saves_them(data, tmp_path):
    normal, held, _ = data
    det = AutoencoderDetector(score="latent_gmm", epochs=1, n_models=2, overrides=TINY).fit(normal)
    det.save(tmp_path / "ens")
    again = AutoencoderDetector.load(tmp_path / "ens")
    assert len(again.models_) == 2 and sorted(p.name for p in (tmp_path / "ens").iterdir()) == [
        "arrays.safetensors", "detector.json", "model-0.safetensors", "model-1.safetensors"]
    np.testing.assert_array_equal(again.raw_scores(held), det.raw_scores(held))


def test_a_damaged_or_edited_folder_is_refused(data, model, tmp_path):
    normal = data[0]
    det = AutoencoderDetector(model, "latent_knn").fit(normal)
    det.save(tmp_path / "det")
    with pytest.raises(ConfigError, match="not an empty folder"):
        det.save(tmp_path / "det")  # a saved detector is never overwritten
    doc = json.loads((tmp_path / "det" / "detector.json").read_text())

    def edited(change, name):
        d = tmp_path / name
        d.mkdir()
        for f in (tmp_path / "det").iterdir():
            (d / f.name).write_bytes(f.read_bytes())
        new = json.loads(json.dumps(doc))
        change(new)
        (d / "detector.json").write_text(json.dumps(new))
        return d

    cases = {
        "score": (lambda d: d["params"].update(knn_k=9), "settings make"),
        "nan": (lambda d: d["learned"].update(threshold_=None), "finite numbers"),
        "unknown": (lambda d: d["params"].update(pickle="x"), "unknown settings"),
        "format": (lambda d: d.update(format="pickle"), "not a vaelab detector"),
        "array": (lambda d: d["members"][0]["state"]["train_"].update(tensor="nope"), "no array 'nope'"),
        "count": (lambda d: d["learned"].update(n_calibration_=3), "calibration scores"),
    }
    for name, (change, msg) in cases.items():
        with pytest.raises(CheckpointError, match=msg):
            AutoencoderDetector.load(edited(change, name))
    (tmp_path / "link").symlink_to(tmp_path / "det")
    with pytest.raises(CheckpointError, match="symlink"):
        AutoencoderDetector.load(tmp_path / "link")
    (tmp_path / "trunc").mkdir()
    (tmp_path / "trunc" / "detector.json").write_text(json.dumps(doc))
    (tmp_path / "trunc" / "arrays.safetensors").write_bytes((tmp_path / "det" / "arrays.safetensors").read_bytes()[:100])
    with pytest.raises(CheckpointError, match="safetensors"):
        AutoencoderDetector.load(tmp_path / "trunc")


def test_a_second_vaelab_detect_reuses_the_calibrated_detector(tmp_path, monkeypatch):
    from vaelab.api import train_run
    from vaelab.cli import main
    from vaelab.config import parse_set
    from vaelab.train import RunConfig

    cfg = RunConfig.build("vae", parse_set(["data.name=digits", "model.arch=mlp", "model.mlp_hidden=[16]", "model.latent_dim=2",
                                            "train.epochs=1", "train.batch_size=128", "train.progress_bar=false"]))
    run, _ = train_run(cfg, tmp_path / "run")
    assert main(["detect", str(run), "--data", "digits", "--out", str(tmp_path / "d1")]) == 0
    kept = list((run / "detectors").iterdir())
    assert len(kept) == 1 and (kept[0] / "detector.json").is_file()

    def no_fit(self, *a, **k):
        raise AssertionError("the detector was fitted again")

    monkeypatch.setattr(AutoencoderDetector, "fit", no_fit)
    assert main(["detect", str(run), "--data", "digits", "--out", str(tmp_path / "d2")]) == 0  # reused: no fit
    assert (tmp_path / "d1" / "scores.csv").read_text() == (tmp_path / "d2" / "scores.csv").read_text()
    with pytest.raises(AssertionError, match="fitted again"):  # other settings: another key, fitted anew
        main(["detect", str(run), "--data", "digits", "--contamination", "0.2", "--out", str(tmp_path / "d3")])
    weights = run / "model.safetensors"
    import safetensors.torch as st

    w = st.load_file(str(weights))
    w = {k: v + 0.01 for k, v in w.items()}
    from vaelab.models.persist import read_metadata

    st.save_file(w, str(weights), metadata=read_metadata(weights))
    with pytest.raises(AssertionError, match="fitted again"):  # other weights: fitted anew
        main(["detect", str(run), "--data", "digits", "--out", str(tmp_path / "d4")])


def test_update_calibration_follows_drifted_normal_data_without_refitting(data, model, tmp_path):
    """Normal images from a changed camera score higher: recalibrating on a batch of them brings the share of new
    drifted images flagged back to the rate, and keep= slides a window over the stream."""
    normal, held, _ = data
    det = AutoencoderDetector(model, "mse", threshold_rule="conformal", fpr=0.1).fit(normal)
    g = torch.Generator().manual_seed(5)
    drifted = 1 - squares(400, g)  # a camera whose polarity changed: dark squares on white
    batch, later = drifted[:200], drifted[200:]
    before = det.predict(later).mean()
    score_state = det.score_
    det.update_calibration(batch)
    assert det.score_ is score_state and det.n_calibration_ == 200 and det.calibrated_on_.startswith("update_calibration")
    after = det.predict(later).mean()
    assert before > 0.5 and after < 0.2, (before, after)  # what the brighter images look like is normal again
    np.testing.assert_array_equal(det.calibration_raw_, det.raw_scores(batch))
    det.update_calibration(later[:50], keep=100)
    assert det.n_calibration_ == 150
    det.save(tmp_path / "det")
    again = AutoencoderDetector.load(tmp_path / "det")
    np.testing.assert_array_equal(again.predict_pvalues(later), det.predict_pvalues(later))
    with pytest.raises(ConfigError, match="keep is"):
        det.update_calibration(batch, keep=-1)
