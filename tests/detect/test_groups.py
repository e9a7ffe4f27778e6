"""Many categories in one model: one model trained on every group, each group with its own score state,
normalisation, threshold and p-values."""
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from vaelab.data import DataConfig, load_data
from vaelab.detect import AutoencoderDetector
from vaelab.errors import ConfigError, DataError

SMALL = {"model": {"arch": "mlp", "mlp_hidden": [64], "latent_dim": 4}, "train": {"batch_size": 64}}


@pytest.fixture(scope="module")
def fitted():
    train, _, test = load_data(DataConfig(name="digits"))
    det = AutoencoderDetector(score="latent_knn", epochs=15, overrides=SMALL, seed=0).fit(train, groups=train.labels)
    return det, train, test


def test_each_group_is_calibrated_on_its_own_items_by_one_model(fitted):
    det, train, test = fitted
    assert sorted(det.groups_) == list(range(10)) and len(det.models_) == 1
    assert all(sub.model_ is det.model_ for sub in det.groups_.values())  # one model, ten calibrations
    for c, sub in det.groups_.items():
        n_c = int((train.labels == c).sum())
        assert sub.n_calibration_ == max(1, round(0.1 * n_c)) and len(sub.score_.train_) == n_c - sub.n_calibration_
    assert len(set(det.thresholds_.values())) > 1 and det.threshold_ is None
    # each class normal in turn, every test digit scored by that class's state: one-class detection from one model
    aucs = []
    for c in range(10):
        s = det.decision_function(test, clip=False, groups=np.full(len(test), c))
        aucs.append(roc_auc_score((test.labels != c).numpy(), s))
    assert np.mean(aucs) > 0.85, aucs
    # a group's items are scored, flagged and given p-values by that group's detector alone
    g = test.labels.numpy()
    for c in (0, 7):
        idx = np.nonzero(g == c)[0]
        x = test.subset(torch.as_tensor(idx))
        np.testing.assert_array_equal(det.predict(test, groups=g)[idx], det.groups_[c].predict(x))
        np.testing.assert_array_equal(det.predict_pvalues(test, groups=g)[idx], det.groups_[c].predict_pvalues(x))
    flagged = det.predict(test, groups=g).mean()
    assert 0.02 < flagged < 0.25, flagged  # test digits are normal for their own class: about the contamination


def test_groups_are_required_and_checked(fitted):
    det, train, test = fitted
    with pytest.raises(ConfigError, match="pass groups="):
        det.predict(test)
    with pytest.raises(DataError, match="not seen in fit"):
        det.predict(test, groups=np.full(len(test), 11))
    with pytest.raises(DataError, match="one group label per item"):
        det.predict(test, groups=[0, 1])
    plain = AutoencoderDetector(det.model_, "mse").fit(train)
    with pytest.raises(ConfigError, match="fitted without"):
        plain.predict(test, groups=test.labels)


def test_a_grouped_detector_saves_its_model_once_and_each_groups_calibration(fitted, tmp_path):
    det, train, test = fitted
    g = test.labels.numpy()
    det.save(tmp_path / "det")
    files = sorted(p.name for p in (tmp_path / "det").iterdir())
    assert files == ["detector.json", *[f"group-{k}" for k in range(10)], "model-0.safetensors"]
    assert not list((tmp_path / "det" / "group-3").glob("model-*"))  # the weights are stored once
    again = AutoencoderDetector.load(tmp_path / "det")
    np.testing.assert_array_equal(again.decision_function(test, clip=False, groups=g), det.decision_function(test, clip=False, groups=g))
    np.testing.assert_array_equal(again.predict_pvalues(test, groups=g), det.predict_pvalues(test, groups=g))
    assert again.thresholds_ == det.thresholds_
    # recalibrating one group leaves the others as they were
    before = dict(again.thresholds_)
    sevens = test.subset(torch.nonzero(test.labels == 7).squeeze(1))
    again.update_calibration(sevens, groups=np.full(len(sevens), 7))
    assert again.groups_[7].n_calibration_ == len(sevens) and again.thresholds_[7] != before[7]
    assert {k: v for k, v in again.thresholds_.items() if k != 7} == {k: v for k, v in before.items() if k != 7}
    with pytest.raises(ConfigError, match="groups_\\[GROUP\\]"):
        again.predict_proba(test)


def test_vaelab_detect_group_by_label_calibrates_each_class_of_the_run(tmp_path):
    import csv
    import json

    from vaelab.api import train_run
    from vaelab.cli import main
    from vaelab.config import parse_set
    from vaelab.train import RunConfig

    cfg = RunConfig.build("vae", parse_set(["data.name=digits", "model.arch=mlp", "model.mlp_hidden=[32]", "model.latent_dim=4",
                                            "train.epochs=2", "train.batch_size=128", "train.progress_bar=false"]))
    run, _ = train_run(cfg, tmp_path / "run")
    assert main(["detect", str(run), "--data", "digits", "--score", "latent_knn", "--group-by-label", "--out", str(tmp_path / "d")]) == 0
    m = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert sorted(m["thresholds"], key=int) == [str(c) for c in range(10)] and m["threshold"] is None
    rows = list(csv.DictReader(open(tmp_path / "d" / "scores.csv")))
    flags = [int(r["flagged"]) for r in rows]
    assert flags == [int(float(r["score"]) > m["thresholds"][r["label"]] - 1e-5 * abs(m["thresholds"][r["label"]]))
                     for r in rows] and m["n_flagged"] == sum(flags)
    assert 0.02 < m["flagged_fraction"] < 0.3  # test digits are normal for their own class
    assert main(["detect", str(run), "--data", "digits", "--group-by-label", "--fdr", "0.1", "--out", str(tmp_path / "f")]) == 0
