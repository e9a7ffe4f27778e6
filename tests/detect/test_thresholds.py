"""Threshold rules and calibrated outputs (vaelab.detect.thresholds): each rule against a direct
numpy / scipy computation of its formula, F1 against a brute-force search, the fallbacks' warnings,
predict_proba / predict_confidence against their formulas and, when installed, against PyOD."""
import math

import numpy as np
import pytest
from scipy.stats import binom, median_abs_deviation
from sklearn.mixture import GaussianMixture

from tests.conftest import require_module
from vaelab.detect.thresholds import (MAD_SCALE, THRESHOLD_RULES, ThresholdFallbackWarning, choose_threshold,
                                      predict_confidence, predict_proba, threshold_contamination, threshold_f1,
                                      threshold_gmm, threshold_iqr, threshold_mad)
from vaelab.errors import ConfigError, DataError


def bimodal(n_normal=900, n_anomalous=100, gap=6.0, seed=0):
    rng = np.random.default_rng(seed)
    return np.r_[rng.normal(0.0, 1.0, n_normal), rng.normal(gap, 1.0, n_anomalous)]


def f1_of(scores, labels, thr):
    """F1 of the rule score > thr, anomalies (1) positive; 0 when nothing is flagged correctly."""
    pred = scores > thr
    tp = int((pred & (labels == 1)).sum())
    fp = int((pred & (labels == 0)).sum())
    fn = int((~pred & (labels == 1)).sum())
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


# -- contamination ------------------------------------------------------------------------------
@pytest.mark.parametrize("c", [0.01, 0.1, 0.25, 0.5])
def test_contamination_is_the_percentile(c):
    s = np.random.default_rng(1).gamma(2.0, size=777)
    thr = threshold_contamination(s, c)
    assert thr == pytest.approx(np.percentile(s, 100 * (1 - c)), abs=1e-12)
    assert abs((s > thr).mean() - c) <= 1.5 / len(s)


@pytest.mark.parametrize("c", [0, -0.1, 0.6, None, "0.1", True])
def test_contamination_out_of_range_is_a_config_error(c):
    with pytest.raises(ConfigError, match="contamination"):
        threshold_contamination(np.arange(10.0), c)


@pytest.mark.parametrize("bad, match", [([], "non-empty"), ([[1.0, 2.0], [3.0, 4.0]], "1-D"),
                                        ([1.0, np.nan], "NaN"), (["a", "b"], "numbers")])
def test_bad_scores_are_a_data_error(bad, match):
    with pytest.raises(DataError, match=match):
        threshold_iqr(bad)


# -- f1 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed, decimals", [(0, None), (1, None), (2, 1), (3, 0)])
def test_f1_matches_a_brute_force_search(seed, decimals):
    rng = np.random.default_rng(seed)
    y = (rng.random(300) < 0.2).astype(int)
    s = rng.normal(size=300) + 1.5 * y
    if decimals is not None:  # many ties
        s = np.round(s, decimals)
    # every cut that can give a different prediction: just below each distinct score
    u = np.unique(s)
    candidates = np.r_[u[0] - 1.0, (u[1:] + u[:-1]) / 2]
    best = max(f1_of(s, y, t) for t in candidates)
    thr, info = threshold_f1(s, y)
    assert info["f1"] == pytest.approx(best, abs=1e-12)
    assert f1_of(s, y, thr) == pytest.approx(best, abs=1e-12)  # the returned threshold, under score > thr
    pred = s > thr
    assert info["precision"] == pytest.approx((pred & (y == 1)).sum() / pred.sum())
    assert info["recall"] == pytest.approx((pred & (y == 1)).sum() / y.sum())
    assert info["fallback"] is None


def test_f1_threshold_sits_between_validation_scores():
    s = np.array([0.0, 1.0, 2.0, 3.0, 10.0, 11.0])
    y = np.array([0, 0, 0, 0, 1, 1])
    thr, info = threshold_f1(s, y)
    assert thr == pytest.approx(6.5) and info["f1"] == 1.0
    # flagging everything is best: the threshold lies just below the lowest score
    thr, info = threshold_f1(np.array([1.0, 2.0, 3.0]), np.array([1, 0, 1]))
    assert info["f1"] == pytest.approx(0.8) and thr < 1.0 and thr == pytest.approx(1.0)


def test_f1_without_anomalies_warns_and_falls_back_to_contamination():
    rng = np.random.default_rng(0)
    train, val = rng.normal(size=500), rng.normal(size=50)
    with pytest.warns(ThresholdFallbackWarning, match="no anomaly.*contamination"):
        thr, info = threshold_f1(val, np.zeros(50, int), train_scores=train, contamination=0.05)
    assert thr == pytest.approx(np.percentile(train, 95))
    assert info["fallback"] == "contamination" and math.isnan(info["f1"])
    with pytest.warns(ThresholdFallbackWarning, match="no anomaly"):  # no training scores: the validation ones
        thr, _ = threshold_f1(val, np.zeros(50, int), contamination=0.05)
    assert thr == pytest.approx(np.percentile(val, 95))


def test_f1_with_only_anomalies():
    rng = np.random.default_rng(0)
    train, val = rng.normal(size=500), rng.normal(5.0, size=50)
    with pytest.warns(ThresholdFallbackWarning, match="only anomalies"):
        thr, info = threshold_f1(val, np.ones(50, int), train_scores=train)
    assert thr == pytest.approx(np.percentile(train, 90)) and info["fallback"] == "contamination"
    with pytest.raises(DataError, match="only anomalies.*normal"):
        threshold_f1(val, np.ones(50, int))


def test_f1_refuses_bad_labels():
    with pytest.raises(DataError, match="1 \\(anomaly\\) or 0"):
        threshold_f1([0.1, 0.2, 0.3], [0, 2, 1])
    with pytest.raises(DataError, match="one label per"):
        threshold_f1([0.1, 0.2, 0.3], [0, 1])


# -- mad, iqr -----------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [0.0, 2.0, 3.0, 4.5])
def test_mad_is_median_plus_k_normal_mads(k):
    s = np.random.default_rng(2).lognormal(size=501)
    med = np.median(s)
    direct = med + k * 1.4826 * np.median(np.abs(s - med))
    assert threshold_mad(s, k) == pytest.approx(direct, rel=1e-5)
    assert threshold_mad(s, k) == pytest.approx(med + k * median_abs_deviation(s, scale="normal"), rel=1e-12)
    assert MAD_SCALE == pytest.approx(1.4826, abs=1e-4)


def test_mad_of_mostly_equal_scores_warns():
    s = np.r_[np.zeros(60), np.arange(1.0, 41.0)]
    with pytest.warns(ThresholdFallbackWarning, match="MAD is 0"):
        assert threshold_mad(s) == 0.0


@pytest.mark.parametrize("k", [0.0, 1.5, 3.0])
def test_iqr_is_the_upper_tukey_fence(k):
    s = np.random.default_rng(3).exponential(size=333)
    q1, q3 = np.percentile(s, [25, 75])
    assert threshold_iqr(s, k) == pytest.approx(q3 + k * (q3 - q1), abs=1e-12)


@pytest.mark.parametrize("k", [-1, math.inf, "3"])
def test_bad_k_is_a_config_error(k):
    with pytest.raises(ConfigError, match="k must be"):
        threshold_iqr(np.arange(5.0), k)


# -- gmm ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_gmm_threshold_is_where_the_high_component_posterior_is_one_half(seed):
    s = bimodal(seed=seed)
    thr, info = threshold_gmm(s, seed, return_info=True)
    assert info["fallback"] is None and 0.5 < thr < 5.5
    # an independent fit with the same seed: scikit-learn's own posterior at the threshold
    gmm = GaussianMixture(2, random_state=seed).fit(s[:, None])
    high = int(np.argmax(gmm.means_[:, 0]))
    post = gmm.predict_proba(np.array([[thr - 1e-3], [thr], [thr + 1e-3]]))[:, high]
    assert post[1] == pytest.approx(0.5, abs=1e-6)
    assert post[0] < 0.5 < post[2]
    assert threshold_gmm(s, seed) == thr  # deterministic under a seed


def test_gmm_posterior_matches_a_direct_grid_search():
    s = bimodal(n_normal=600, n_anomalous=200, gap=5.0, seed=4)
    thr, info = threshold_gmm(s, 0, return_info=True)
    (w0, w1), (m0, m1), (s0, s1) = info["weights"], info["means"], info["stds"]
    x = np.linspace(m0, m1, 200001)
    dens = lambda w, m, sd: w * np.exp(-0.5 * ((x - m) / sd) ** 2) / sd  # noqa: E731
    post = dens(w1, m1, s1) / (dens(w0, m0, s0) + dens(w1, m1, s1))
    assert thr == pytest.approx(x[np.argmin(np.abs(post - 0.5))], abs=2 * (m1 - m0) / 200000)


@pytest.mark.parametrize("scores", [np.random.default_rng(5).normal(size=1000), np.full(50, 3.0)],
                         ids=["unimodal", "constant"])
def test_gmm_without_separation_warns_and_falls_back(scores):
    with pytest.warns(ThresholdFallbackWarning, match="does not separate.*contamination"):
        thr, info = threshold_gmm(scores, 0, contamination=0.2, return_info=True)
    assert thr == pytest.approx(np.percentile(scores, 80)) and info["fallback"] == "contamination"


# -- choose_threshold ---------------------------------------------------------------------------
def test_choose_threshold_dispatches_to_each_rule():
    train = bimodal(seed=6)
    rng = np.random.default_rng(7)
    y = (rng.random(200) < 0.3).astype(int)
    val = rng.normal(size=200) + 4 * y
    from vaelab.detect.conformal import conformal_threshold

    expect = {"contamination": threshold_contamination(train, 0.05), "mad": threshold_mad(train, 2.5),
              "iqr": threshold_iqr(train, 2.0), "gmm": threshold_gmm(train, 3), "f1": threshold_f1(val, y)[0],
              "conformal": conformal_threshold(train, 0.05)}
    assert set(expect) == set(THRESHOLD_RULES)
    for rule, value in expect.items():
        thr, info = choose_threshold(rule, train, val, y, contamination=0.05, seed=3, mad_k=2.5, iqr_k=2.0,
                                     held_out=rule == "conformal")
        assert thr == pytest.approx(value, abs=1e-12), rule
        assert info["rule"] == rule and info["fallback"] is None
    _, info = choose_threshold("f1", train, val, y)
    assert set(info) >= {"precision", "recall", "f1"}


def test_choose_threshold_errors_name_the_fix():
    with pytest.raises(ConfigError, match="unknown threshold rule 'otsu'.*contamination, conformal, f1, mad, iqr, gmm"):
        choose_threshold("otsu", np.arange(10.0))
    with pytest.raises(ConfigError, match="needs a labelled validation set.*val_labels"):
        choose_threshold("f1", np.arange(10.0), val_scores=np.arange(5.0))
    with pytest.raises(ConfigError, match="unknown threshold rule"):
        choose_threshold(["f1"], np.arange(10.0))


def test_choose_threshold_f1_falls_back_on_the_training_scores():
    train = np.random.default_rng(8).normal(size=400)
    with pytest.warns(ThresholdFallbackWarning, match="no anomaly"):
        thr, info = choose_threshold("f1", train, np.arange(20.0), np.zeros(20), contamination=0.1)
    assert thr == pytest.approx(np.percentile(train, 90)) and info["fallback"] == "contamination"


# -- predict_proba ------------------------------------------------------------------------------
def test_predict_proba_linear_is_min_max_scaling():
    rng = np.random.default_rng(9)
    train, test = rng.normal(size=300), rng.normal(scale=2.0, size=100)
    p = predict_proba(train, test, "linear")
    direct = np.clip((test - train.min()) / (train.max() - train.min()), 0, 1)
    assert p.shape == (100, 2)
    np.testing.assert_allclose(p[:, 1], direct, atol=1e-12)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    assert p[:, 1].min() == 0.0 and p[:, 1].max() == 1.0  # clipped: scale 2 leaves the training range


def test_predict_proba_unify_is_the_gaussian_erf():
    rng = np.random.default_rng(10)
    train, test = rng.gamma(2.0, size=300), rng.gamma(2.0, size=100)
    mu, sd = train.mean(), math.sqrt(((train - train.mean()) ** 2).mean())
    direct = np.array([max(0.0, math.erf((t - mu) / (sd * math.sqrt(2)))) for t in test])
    p = predict_proba(train, test, method="unify")
    np.testing.assert_allclose(p[:, 1], direct, atol=1e-12)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    assert (p[test <= mu, 1] == 0).all() and (p[test > mu, 1] > 0).all()


def test_predict_proba_of_constant_training_scores_is_a_step():
    p = predict_proba(np.full(10, 2.0), np.array([1.0, 2.0, 3.0]), "unify")
    np.testing.assert_array_equal(p[:, 1], [0, 0, 1])
    np.testing.assert_array_equal(predict_proba(np.full(10, 2.0), np.array([1.0, 2.0, 3.0]))[:, 1], [0, 0, 1])


def test_predict_proba_unknown_method():
    with pytest.raises(ConfigError, match="unknown probability method 'softmax'.*linear, unify"):
        predict_proba(np.arange(5.0), np.arange(5.0), "softmax")


# -- predict_confidence -------------------------------------------------------------------------
def test_predict_confidence_matches_the_exceed_formula():
    rng = np.random.default_rng(11)
    train, test = rng.normal(size=253), rng.normal(scale=1.5, size=80)  # n * c = 25.3
    c = 0.1
    conf = predict_confidence(train, test, c)
    thr = np.percentile(train, 90)
    n = len(train)
    for t, got in zip(test, conf):
        p = (1 + np.count_nonzero(train <= t)) / (2 + n)
        outlier = 1 - binom.cdf(n - int(n * c), n, p)
        assert got == pytest.approx(outlier if t > thr else 1 - outlier, abs=1e-9)


def test_predict_confidence_on_the_training_scores_counts_ties():
    """Scored on the training set itself (test = train, as PyOD's labels_), each score counts itself."""
    train = np.round(np.random.default_rng(14).normal(size=200), 1)
    n, c = len(train), 0.1
    p = np.array([(1 + np.count_nonzero(train <= t)) / (2 + n) for t in train])
    outlier = 1 - binom.cdf(n - int(n * c), n, p)
    direct = np.where(train > np.percentile(train, 90), outlier, 1 - outlier)
    np.testing.assert_allclose(predict_confidence(train, train, c), direct, atol=1e-9)


def test_predict_confidence_bounds_and_monotonicity():
    rng = np.random.default_rng(12)
    train = rng.normal(size=1000)
    test = np.sort(rng.normal(scale=2.0, size=400))
    thr = threshold_contamination(train, 0.1)
    conf = predict_confidence(train, test, 0.1)
    assert ((0 <= conf) & (conf <= 1)).all()
    flagged = test > thr
    assert (np.diff(conf[flagged]) >= -1e-12).all()  # more anomalous: more sure it is an outlier
    assert (np.diff(conf[~flagged]) <= 1e-12).all()  # more normal: more sure it is normal
    extremes = predict_confidence(train, np.array([-100.0, 100.0]), 0.1)
    assert (extremes > 0.999).all()
    near = predict_confidence(train, np.array([thr + 1e-9]), 0.1)[0]
    assert near < 0.9  # a sample at the threshold is a coin toss, not a sure call
    # an explicit threshold moves the prediction, and so the side the confidence is taken from
    one = predict_confidence(train, np.array([0.0]), 0.1, threshold=-1.0)[0]
    assert one == pytest.approx(1 - predict_confidence(train, np.array([0.0]), 0.1)[0])


# -- PyOD as an independent reference (skipped when it is not installed) -------------------------
def test_against_pyod():
    require_module("pyod")
    from pyod.models.knn import KNN

    rng = np.random.default_rng(13)
    X, X_test = rng.normal(size=(300, 3)), rng.normal(scale=1.5, size=(120, 3))
    det = KNN(contamination=0.1).fit(X)
    train, test = det.decision_scores_, det.decision_function(X_test)
    assert threshold_contamination(train, 0.1) == pytest.approx(det.threshold_)
    for method in ("linear", "unify"):
        np.testing.assert_allclose(predict_proba(train, test, method), det.predict_proba(X_test, method), atol=1e-9)
    np.testing.assert_allclose(predict_confidence(train, test, 0.1), det.predict_confidence(X_test), atol=1e-9)
