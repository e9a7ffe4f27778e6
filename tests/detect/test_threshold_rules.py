"""The threshold rules and PyOD's probability outputs wired into AutoencoderDetector and `vaelab
detect`: each rule's threshold_ is the rule's own function applied to the detector's scores."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from vaelab.errors import ConfigError

from tests.conftest import vaelab_here


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    from vaelab.api import train_run
    from vaelab.config import parse_set
    from vaelab.train import RunConfig

    cfg = RunConfig.build("vae", parse_set(["data.name=digits", "data.classes=[0,1,2,3,4]", "model.arch=mlp", "model.mlp_hidden=[32]",
                                            "model.latent_dim=4", "train.epochs=3", "train.batch_size=64", "train.progress_bar=false"]))
    run, _ = train_run(cfg, tmp_path_factory.mktemp("thr") / "run")
    return run


def _sets(run):
    from vaelab.data import load_data, load_split
    from vaelab.train import RunConfig

    cfg = RunConfig.load(run / "config.yaml")
    train = load_data(cfg.data, cfg.seed)[0]
    test = load_split(cfg.data, "test", apply_class_filter=False)
    y = (test.labels >= 5).long().numpy()
    return train, test, y


@pytest.mark.parametrize("rule", ["mad", "iqr", "gmm", "contamination"])
def test_unsupervised_rules_apply_their_function_to_the_calibration_scores(digits_run, rule):
    from vaelab.detect import AutoencoderDetector
    from vaelab.detect import thresholds as T

    train, _, _ = _sets(digits_run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", T.ThresholdFallbackWarning)  # gmm may fall back on unimodal scores
        det = AutoencoderDetector(digits_run, threshold_rule=rule, contamination=0.05).fit(train)
        ref = {"mad": lambda s: T.threshold_mad(s), "iqr": lambda s: T.threshold_iqr(s),
               "gmm": lambda s: T.threshold_gmm(s, 0, contamination=0.05),
               "contamination": lambda s: T.threshold_contamination(s, 0.05, held_out=True)}[rule](det.calibration_scores_)
    assert det.threshold_ == pytest.approx(ref, rel=1e-12, abs=1e-12)
    assert det.threshold_info_["rule"] == rule
    np.testing.assert_array_equal(det.labels_, (det.decision_scores_ > det.threshold_).astype(np.int64))


def test_f1_rule_picks_the_f1_best_threshold_on_the_validation_set(digits_run):
    from sklearn.metrics import f1_score

    from vaelab.detect import AutoencoderDetector
    from vaelab.detect.thresholds import threshold_f1

    train, test, y = _sets(digits_run)
    val, yv = test.subset(np.arange(0, len(test), 2)), y[::2]
    det = AutoencoderDetector(digits_run, threshold_rule="f1").fit(train, val=val, val_labels=yv)
    s = det.decision_function(val, clip=False)
    assert det.threshold_ == pytest.approx(threshold_f1(s, yv)[0])
    best = max(f1_score(yv, (s > t).astype(int)) for t in np.unique(s))  # brute force over every cut
    assert f1_score(yv, det.predict(val)) == pytest.approx(best)
    with pytest.raises(ConfigError, match="labelled validation set"):
        AutoencoderDetector(digits_run, threshold_rule="f1").fit(train)
    with pytest.raises(ConfigError, match="unknown threshold_rule"):
        AutoencoderDetector(digits_run, threshold_rule="median").fit(train)


def test_predict_proba_and_confidence_have_pyods_meaning(digits_run):
    from vaelab.detect import AutoencoderDetector
    from vaelab.detect.thresholds import predict_proba

    train, test, _ = _sets(digits_run)
    det = AutoencoderDetector(digits_run).fit(train)
    for method in ("linear", "unify"):
        p = det.predict_proba(test, method)
        assert p.shape == (len(test), 2) and np.allclose(p.sum(1), 1) and (p >= 0).all()
        np.testing.assert_allclose(p, predict_proba(det.calibration_scores_, det.decision_function(test, clip=False), method))
    c = det.predict_confidence(test)
    assert c.shape == (len(test),) and ((c >= 0) & (c <= 1)).all()


def test_cli_threshold_rule_f1_with_a_validation_set(digits_run, tmp_path, capsys):
    p = vaelab_here("detect", str(digits_run), "--data", "digits", "--split", "test", "--threshold-rule", "f1", "--val-data", "digits",
                    "--val-split", "train", "--out", str(tmp_path / "d"))
    assert p.returncode == 0, p.stderr
    m = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert m["threshold_from"] == "f1" and 0 < m["threshold_info"]["f1"] <= 1
    from vaelab.cli import main as cli_main

    assert cli_main(["detect", str(digits_run), "--data", "digits", "--threshold-rule", "f1", "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "labelled validation set" in err and "Traceback" not in err


@pytest.mark.parametrize("n,alpha", [(19, 0.1), (50, 0.05), (12, 0.1)])
def test_the_held_out_contamination_threshold_is_the_conformal_quantile(n, alpha):
    """On n held-out scores the threshold is the ceil((n + 1)(1 - alpha))-th smallest, and the probability that a
    new score from the same distribution exceeds it is (n + 1 - k) / (n + 1) <= alpha: checked exactly for normal
    scores, averaging the Gaussian tail above each draw's threshold over 4,000 draws (four standard errors)."""
    from scipy.stats import norm

    from vaelab.detect.thresholds import threshold_contamination

    rng = np.random.default_rng(n)
    k = int(np.ceil((n + 1) * (1 - alpha) - 1e-9))
    tails = []
    for _ in range(4000):
        s = rng.normal(size=n)
        thr = threshold_contamination(s, alpha, held_out=True)
        assert thr == np.sort(s)[k - 1]
        tails.append(norm.sf(thr))
    tails = np.asarray(tails)
    want = (n + 1 - k) / (n + 1)
    assert alpha - 1 / (n + 1) <= want <= alpha
    assert abs(tails.mean() - want) < 4 * tails.std() / np.sqrt(len(tails)), (tails.mean(), want)
    # the fitted data's own rule (linear interpolation, PyOD) sits lower, so it flags more new data
    assert threshold_contamination(s, alpha) <= threshold_contamination(s, alpha, held_out=True)


def test_cli_writes_conformal_pvalues_and_flags_at_a_false_alarm_or_discovery_rate(digits_run, tmp_path, capsys):
    """scores.csv holds each image's conformal p-value against the run's validation split; --threshold-rule
    conformal --fpr flags exactly p <= fpr, and --fdr flags the Benjamini-Hochberg set of those p-values."""
    import csv

    from vaelab.cli import main
    from vaelab.detect.conformal import benjamini_hochberg

    def rows(out):
        return list(csv.DictReader(open(out / "scores.csv")))

    assert main(["detect", str(digits_run), "--data", "digits", "--threshold-rule", "conformal", "--fpr", "0.05",
                 "--out", str(tmp_path / "fpr")]) == 0
    r = rows(tmp_path / "fpr")
    p = np.array([float(x["pvalue"]) for x in r])
    m = json.loads((tmp_path / "fpr" / "metrics.json").read_text())
    assert m["threshold_from"] == "conformal, fpr 0.05" and p.min() >= 1 / (m["n_calibration"] + 1) - 1e-6 and p.max() <= 1
    np.testing.assert_array_equal([int(x["flagged"]) for x in r], (p <= 0.05).astype(int))
    assert main(["detect", str(digits_run), "--data", "digits", "--fdr", "0.1", "--out", str(tmp_path / "fdr")]) == 0
    r = rows(tmp_path / "fdr")
    np.testing.assert_allclose([float(x["pvalue"]) for x in r], p, rtol=1e-5)  # the same calibration, the same p-values
    np.testing.assert_array_equal([int(x["flagged"]) for x in r], benjamini_hochberg(p, 0.1))
    m = json.loads((tmp_path / "fdr" / "metrics.json").read_text())
    assert m["threshold_from"].startswith("fdr 0.1") and m["n_flagged"] == int(benjamini_hochberg(p, 0.1).sum())
    capsys.readouterr()
    assert main(["detect", str(digits_run), "--data", "digits", "--fdr", "1.5", "--out", str(tmp_path / "bad")]) == 2
    assert "rate in (0, 1)" in capsys.readouterr().err
